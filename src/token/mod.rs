//! The token broker: one Entra ID token per (tenant, scope), shared by every request that needs
//! it, refreshed in the background before it expires.
//!
//! - [`TokenBroker`] owns the token endpoint client and hands out one [`TokenSlot`] per
//!   (tenant, scope); routing snapshots keep the slots, so the hot path never touches a map.
//!   Every slot asks the broker's one shared source cell, which [`TokenBroker::apply`]
//!   swaps on a reload (a rotated secret, a new certificate, another token file).
//! - `access.rs`: [`AccessToken`], and `accept`, the checks a fetched token passes first.
//! - `source.rs`: the `TokenSource` trait (what issues tokens) and one bounded attempt at it.
//! - `slot.rs`: the per-slot cache: single flight, refresh-ahead, usable deadline, backoff and
//!   failure memory. It talks to a `TokenSource`, so its timing is tested with a fake one.
//!   [`TokenSlot::status`] is its read-only view for the tenant status.
//! - `entra.rs`: the `TokenSource` that asks Entra ID (v2 or v1 endpoint).
//! - `credential.rs`: client secret, certificate -> signed client assertion, or workload identity
//!   token file -> its content as the assertion.
//! - `claims.rs`: the token's `tid`, `roles`, `exp`, read without verification.
//! - `error.rs`: [`TokenError`], safe to show clients.
//! - `classify.rs`: its [`ErrorClass`] (how the broker reacts) and the AADSTS codes known.

mod access;
mod brokers;
mod claims;
mod classify;
mod credential;
mod entra;
mod error;
mod slot;
mod source;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

pub(crate) use access::AccessToken;
pub(crate) use access::{accept, Accepted};
pub(crate) use brokers::TokenBrokers;
pub(crate) use classify::{aadsts_meaning, ErrorClass};
pub(crate) use error::{InvalidResponse, TokenError, TokenInitError};
pub(crate) use slot::{SlotState, TokenSlot};
pub(crate) use source::{fetch_attempt, FetchFuture, FetchedToken, SharedSource, TokenSource};

use crate::config::{AppConfig, CloudConfig, CloudPreset, TokenEndpointVersion, UpstreamConfig};
use crate::sync::LockExt;

/// Upper bound for one token request, whatever the API's (much longer) response timeout is; also
/// the longest a request waits for a token (see `TokenSource::attempt_timeout`).
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Hands out token slots and one-off tokens. Cheap to clone.
#[derive(Clone)]
pub(crate) struct TokenBroker {
    inner: Arc<BrokerInner>,
}

struct BrokerInner {
    source: SharedSource,
    /// Who the tokens are issued to, as last configured; `None` for a scripted source (tests).
    /// Only read and written by `reconfigure`, which holds the lock across the swap, so two
    /// reloads cannot interleave.
    identity: Mutex<Option<Identity>>,
    /// Looked up only when routing snapshots are built, never per request, so a plain mutex.
    slots: Mutex<HashMap<(String, String), Arc<TokenSlot>>>,
}

/// What makes a cached token belong to a configuration: a token issued to another app, by
/// another authority or cloud, or from the other endpoint version (whose audience form differs),
/// is no token of the new one. The credential is not part of it: a rotated secret still
/// authenticates the same app, so its tokens stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    client_id: String,
    authority: String,
    cloud: CloudPreset,
    token_endpoint: TokenEndpointVersion,
}

impl Identity {
    fn of(app: &AppConfig, cloud: &CloudConfig) -> Self {
        Identity {
            client_id: app.client_id.to_ascii_lowercase(),
            authority: cloud.authority.clone(),
            cloud: cloud.cloud,
            token_endpoint: cloud.token_endpoint,
        }
    }
}

impl fmt::Debug for TokenBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slots = self.inner.slots.lock().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("TokenBroker")
            .field("source", &self.inner.source.load())
            .field("slots", &slots)
            .finish()
    }
}

impl TokenBroker {
    pub(crate) fn with_source(source: Arc<dyn TokenSource>) -> Self {
        TokenBroker {
            inner: Arc::new(BrokerInner {
                source: Arc::new(ArcSwap::from_pointee(source)),
                identity: Mutex::new(None),
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A reload: from now on every slot's next token request (refresh or first fetch) uses the
    /// prepared app credential, cloud endpoint and trust roots and upstream timeouts. Current
    /// tokens keep being served, so a rotated secret takes effect at the next token request;
    /// failures remembered from the old credential are forgotten, so a fixed one is tried at
    /// once. When the client id, authority, cloud or endpoint version changed, the cached tokens
    /// belong to another app or cloud and are dropped. What can fail (a bad key, a bad CA file)
    /// failed in [`Prepared::new`], before anything changed.
    pub(crate) fn apply(&self, prepared: Prepared) {
        let Prepared { source, identity } = prepared;
        let (client_id, authority, cloud) = (
            identity.client_id.clone(),
            identity.authority.clone(),
            identity.cloud,
        );
        let dropped = self.swap_source(source, Some(identity));
        tracing::info!(
            client_id = %client_id,
            authority = %authority,
            cloud = %cloud,
            tokens_dropped = dropped,
            "token broker reconfigured"
        );
    }

    /// A broker asking Entra ID as the prepared app on its cloud's authority, over the shared
    /// outbound TLS configuration.
    pub(crate) fn from_prepared(prepared: Prepared) -> Self {
        let broker = Self::with_source(prepared.source);
        *broker.identity() = Some(prepared.identity);
        broker
    }

    /// Store `source` for every slot's next token request and forget remembered failures; when
    /// `identity` differs from the current one, reset every slot too. Returns whether tokens
    /// were dropped.
    pub(crate) fn swap_source(
        &self,
        source: Arc<dyn TokenSource>,
        identity: Option<Identity>,
    ) -> bool {
        let mut current = self.identity();
        let changed = *current != identity;
        // Stored before the slots are touched: a request that starts after a slot was reset
        // must already find the new source.
        self.inner.source.store(Arc::new(source));
        *current = identity;
        let slots = self.slots();
        for slot in &slots {
            if changed {
                slot.reset();
            } else {
                slot.forget_failures();
            }
        }
        changed
    }

    fn identity(&self) -> std::sync::MutexGuard<'_, Option<Identity>> {
        self.inner.identity.locked()
    }

    /// The slot for (`tenant_id`, `scope`): created on the first call, the same `Arc` afterwards,
    /// so a reload keeps the cached tokens of unchanged tenants. Call it when building routing
    /// snapshots, not per request.
    pub(crate) fn slot(&self, tenant_id: &str, scope: &str) -> Arc<TokenSlot> {
        let mut slots = self.inner.slots.locked();
        slots
            .entry((tenant_id.to_owned(), scope.to_owned()))
            .or_insert_with(|| TokenSlot::new(tenant_id, scope, self.inner.source.clone()))
            .clone()
    }

    /// Every slot, for metrics.
    pub(crate) fn slots(&self) -> Vec<Arc<TokenSlot>> {
        self.inner.slots.locked().values().cloned().collect()
    }

    /// Forget the slots nobody but the broker holds any more (tenants removed by a reload), so
    /// their tokens and refresh timers go away. Returns how many were dropped.
    pub(crate) fn prune_unused(&self) -> usize {
        let mut slots = self.inner.slots.locked();
        let before = slots.len();
        slots.retain(|_, slot| Arc::strong_count(slot) > 1);
        before - slots.len()
    }

    /// One token request now, bypassing the cache and without retries (for `check`). The token
    /// is checked like a cached one (`tid`, lifetime).
    pub(crate) async fn fetch_once(
        &self,
        tenant_id: &str,
        scope: &str,
    ) -> Result<AccessToken, TokenError> {
        let requested_at = Instant::now();
        let source = self.inner.source.load_full();
        let fetched = fetch_attempt(&**source, tenant_id, scope).await?;
        accept(fetched, tenant_id, requested_at).map(|a| a.token)
    }
}

/// A broker's source and identity for an app on a cloud, built (and so checked) before anything
/// running changes: see [`TokenBroker::apply`].
pub(crate) struct Prepared {
    source: Arc<dyn TokenSource>,
    identity: Identity,
}

impl Prepared {
    pub(crate) fn new(
        app: &AppConfig,
        cloud: &CloudConfig,
        upstream: &UpstreamConfig,
    ) -> Result<Self, TokenInitError> {
        Ok(Prepared {
            source: entra_source(app, cloud, upstream)?,
            identity: Identity::of(app, cloud),
        })
    }
}

/// The Entra ID client for `app` on `cloud`, over the shared outbound TLS configuration. The
/// credential is prepared here (a certificate's key parsed once), so a bad one fails now.
fn entra_source(
    app: &AppConfig,
    cloud: &CloudConfig,
    upstream: &UpstreamConfig,
) -> Result<Arc<dyn TokenSource>, TokenInitError> {
    let tls = crate::tls::client_config(cloud.ca.as_deref().as_slice())?;
    let connector = crate::tls::https_connector(tls, upstream);
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    Ok(Arc::new(entra::EntraClient {
        http,
        cloud: cloud.clone(),
        client_id: app.client_id.clone(),
        credential: credential::PreparedCredential::new(&app.credential)?,
        timeout: upstream.response_timeout.min(TOKEN_REQUEST_TIMEOUT),
    }))
}
