//! The token broker: one Entra ID token per (tenant, scope), shared by every request that needs
//! it, refreshed in the background before it expires.
//!
//! - [`TokenBroker`] owns the token endpoint client and hands out one [`TokenSlot`] per
//!   (tenant, scope); routing snapshots keep the slots, so the hot path never touches a map.
//!   Every slot asks the broker's one shared source cell, which [`TokenBroker::reconfigure`]
//!   swaps on a reload (a rotated secret, a new certificate, another token file).
//! - `slot.rs`: the per-slot cache: single flight, refresh-ahead, usable deadline, backoff and
//!   failure memory. It talks to a `TokenSource`, so its timing is tested with a fake one.
//! - `entra.rs`: the `TokenSource` that asks Entra ID (v2 or v1 endpoint).
//! - `credential.rs`: client secret, certificate -> signed client assertion, or workload identity
//!   token file -> its content as the assertion.
//! - `claims.rs`: the token's `tid`, `roles`, `exp`, read without verification.
//! - `error.rs`: [`TokenError`], safe to show clients.
//! - `classify.rs`: its [`ErrorClass`] (how the broker reacts) and the AADSTS codes known.

mod claims;
mod classify;
mod credential;
mod entra;
mod error;
mod slot;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

pub use claims::ClaimsError;
pub use classify::{aadsts_meaning, ErrorClass};
pub use error::{CredentialError, InvalidResponse, TokenError, TokenInitError};
pub use slot::{TokenSlot, TokenStats};

use crate::config::{AppConfig, CloudConfig, CloudPreset, TokenEndpointVersion, UpstreamConfig};

/// Upper bound for one token request, whatever the API's (much longer) response timeout is; also
/// the longest a request waits for a token (see `TokenSource::attempt_timeout`).
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest lifetime believed (Entra issues at most about a day).
const MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// A bearer token for one tenant, ready to be put in a request.
pub struct AccessToken {
    /// `Bearer <jwt>`, marked sensitive, built once so the hot path clones cheap `Bytes`.
    authorization: HeaderValue,
    expires_at: Instant,
    tid: String,
    roles: Vec<String>,
    audience: Option<String>,
    /// The token's last 4 characters: enough to tell tokens apart in logs, useless to an attacker.
    fingerprint: String,
}

impl AccessToken {
    /// The `Authorization` header value, `Bearer <jwt>`, marked sensitive.
    pub fn authorization(&self) -> &HeaderValue {
        &self.authorization
    }

    /// When Entra says the token expires (the broker stops handing it out somewhat earlier).
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// The application permissions (`roles` claim); empty when none were granted.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// The tenant that issued the token (`tid` claim); equals the slot's tenant id.
    pub fn tid(&self) -> &str {
        &self.tid
    }

    /// The token's audience (`aud` claim), when present.
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The token's last 4 characters, for logs.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("fingerprint", &format_args!("…{}", self.fingerprint))
            .field("tid", &self.tid)
            .field("roles", &self.roles)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What a [`TokenSource`] got from the token endpoint, before any check.
pub(crate) struct FetchedToken {
    pub(crate) access_token: SecretString,
    pub(crate) expires_in: Option<Duration>,
    /// Entra's hint when to refresh (long-lived tokens).
    pub(crate) refresh_in: Option<Duration>,
}

/// A boxed future, so sources can sit behind `dyn` (token requests are rare; the box is free).
pub(crate) type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<FetchedToken, TokenError>> + Send + 'a>>;

/// Something that issues tokens: Entra ID in production, a script in tests.
pub(crate) trait TokenSource: Send + Sync + fmt::Debug + 'static {
    /// One token request, no retries. Unbounded in time: callers go through [`fetch_attempt`],
    /// which applies [`TokenSource::attempt_timeout`].
    fn fetch<'a>(&'a self, tenant_id: &'a str, scope: &'a str) -> FetchFuture<'a>;

    /// The longest one request may take. Also the longest a caller waits for a token: when the
    /// endpoint is silent, the slot's retries go on in the background without the caller.
    fn attempt_timeout(&self) -> Duration;
}

/// One token request to `source`, given up after its [`TokenSource::attempt_timeout`].
pub(crate) async fn fetch_attempt(
    source: &dyn TokenSource,
    tenant_id: &str,
    scope: &str,
) -> Result<FetchedToken, TokenError> {
    let limit = source.attempt_timeout();
    match tokio::time::timeout(limit, source.fetch(tenant_id, scope)).await {
        Ok(result) => result,
        Err(_) => Err(TokenError::Timeout {
            tenant_id: tenant_id.to_owned(),
            after: limit,
        }),
    }
}

/// The source cell shared by a broker and all its slots: a reload stores a new source, and every
/// token request from then on asks it.
pub(crate) type SharedSource = Arc<ArcSwap<Arc<dyn TokenSource>>>;

/// A fetched token that passed the checks, with what the slot needs to schedule its refresh.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) token: AccessToken,
    pub(crate) issued_at: Instant,
    pub(crate) lifetime: Duration,
    pub(crate) refresh_in: Option<Duration>,
}

/// Check a fetched token (readable JWT, `tid` equal to the tenant, a lifetime) and build the
/// [`AccessToken`]. `requested_at` is when the request was sent: counting the lifetime from there
/// errs on the safe side.
pub(crate) fn accept(
    fetched: FetchedToken,
    tenant_id: &str,
    requested_at: Instant,
) -> Result<Accepted, TokenError> {
    let invalid = |reason| TokenError::InvalidResponse {
        tenant_id: tenant_id.to_owned(),
        reason,
    };
    let raw = fetched.access_token.expose_secret();
    // First, so that everything below (the header, the fingerprint, any log) only ever meets
    // base64url and dots.
    if !claims::is_base64url_jwt(raw) {
        return Err(invalid(InvalidResponse::NotBase64url));
    }
    let claims = claims::decode(raw).map_err(|e| invalid(e.into()))?;
    let tid = claims.tid.unwrap_or_default();
    if !tid.eq_ignore_ascii_case(tenant_id) {
        return Err(TokenError::TenantMismatch {
            expected: tenant_id.to_owned(),
            got: tid,
        });
    }
    let lifetime = match (fetched.expires_in, claims.exp) {
        (Some(d), _) => d,
        (None, Some(exp)) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Duration::from_secs(exp.saturating_sub(now))
        }
        (None, None) => Duration::ZERO,
    };
    // Bounded so that instant arithmetic can never overflow, whatever the endpoint says.
    let lifetime = lifetime.min(MAX_LIFETIME);
    if lifetime.is_zero() {
        return Err(invalid(InvalidResponse::Lifetime));
    }
    // Cannot fail after the alphabet check; kept so that a future change to that check cannot
    // put an invalid header on the wire. (`HeaderValue` itself accepts obs-text, bytes >= 0x80.)
    let mut authorization = HeaderValue::try_from(format!("Bearer {raw}"))
        .map_err(|_| invalid(InvalidResponse::HeaderValue))?;
    authorization.set_sensitive(true);
    // Counted in characters, not sliced at a byte index: a slice off a character boundary
    // panics, and the panic message quotes the token.
    let fingerprint = claims::last_chars(raw, 4);
    let token = AccessToken {
        authorization,
        expires_at: requested_at + lifetime,
        tid,
        roles: claims.roles,
        audience: claims.aud,
        fingerprint,
    };
    Ok(Accepted {
        token,
        issued_at: requested_at,
        lifetime,
        refresh_in: fetched.refresh_in.map(|d| d.min(lifetime)),
    })
}

/// Hands out token slots and one-off tokens. Cheap to clone.
#[derive(Clone)]
pub struct TokenBroker {
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
    /// A broker asking Entra ID as `app`, on `cloud`'s authority, over the shared outbound TLS
    /// configuration. The credential is prepared here (a certificate's key parsed once).
    pub fn new(
        app: &AppConfig,
        cloud: &CloudConfig,
        upstream: &UpstreamConfig,
    ) -> Result<Self, TokenInitError> {
        let source = entra_source(app, cloud, upstream)?;
        let broker = Self::with_source(source);
        *broker.identity() = Some(Identity::of(app, cloud));
        Ok(broker)
    }

    pub(crate) fn with_source(source: Arc<dyn TokenSource>) -> Self {
        TokenBroker {
            inner: Arc::new(BrokerInner {
                source: Arc::new(ArcSwap::from_pointee(source)),
                identity: Mutex::new(None),
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A reload: from now on every slot's next token request (refresh or first fetch) uses
    /// `app`'s credential, `cloud`'s endpoint and trust roots and `upstream`'s timeouts. Current
    /// tokens keep being served, so a rotated secret takes effect at the next token request;
    /// failures remembered from the old credential are forgotten, so a fixed one is tried at
    /// once. When the client id, authority, cloud or endpoint version changed, the cached tokens
    /// belong to another app or cloud and are dropped.
    ///
    /// Everything that can fail (a bad key, a bad CA file) is checked before anything changes: on
    /// an error the broker runs on as before.
    pub fn reconfigure(
        &self,
        app: &AppConfig,
        cloud: &CloudConfig,
        upstream: &UpstreamConfig,
    ) -> Result<(), TokenInitError> {
        let source = entra_source(app, cloud, upstream)?;
        let dropped = self.swap_source(source, Some(Identity::of(app, cloud)));
        tracing::info!(
            client_id = %app.client_id,
            authority = %cloud.authority,
            cloud = %cloud.cloud,
            tokens_dropped = dropped,
            "token broker reconfigured"
        );
        Ok(())
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
        self.inner
            .identity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The slot for (`tenant_id`, `scope`): created on the first call, the same `Arc` afterwards,
    /// so a reload keeps the cached tokens of unchanged tenants. Call it when building routing
    /// snapshots, not per request.
    pub fn slot(&self, tenant_id: &str, scope: &str) -> Arc<TokenSlot> {
        let mut slots = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slots
            .entry((tenant_id.to_owned(), scope.to_owned()))
            .or_insert_with(|| TokenSlot::new(tenant_id, scope, self.inner.source.clone()))
            .clone()
    }

    /// Every slot, for metrics.
    pub fn slots(&self) -> Vec<Arc<TokenSlot>> {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Forget the slots nobody but the broker holds any more (tenants removed by a reload), so
    /// their tokens and refresh timers go away. Returns how many were dropped.
    pub fn prune_unused(&self) -> usize {
        let mut slots = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let before = slots.len();
        slots.retain(|_, slot| Arc::strong_count(slot) > 1);
        before - slots.len()
    }

    /// One token request now, bypassing the cache and without retries (for `check`). The token
    /// is checked like a cached one (`tid`, lifetime).
    pub async fn fetch_once(
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

/// The Entra ID client for `app` on `cloud`, over the shared outbound TLS configuration. The
/// credential is prepared here (a certificate's key parsed once), so a bad one fails now.
fn entra_source(
    app: &AppConfig,
    cloud: &CloudConfig,
    upstream: &UpstreamConfig,
) -> Result<Arc<dyn TokenSource>, TokenInitError> {
    let tls = crate::tls::client_config(cloud.ca.as_deref())?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use claims::tests::fake_jwt;

    fn fetched(payload: serde_json::Value, expires_in: Option<u64>) -> FetchedToken {
        FetchedToken {
            access_token: SecretString::from(fake_jwt(&payload)),
            expires_in: expires_in.map(Duration::from_secs),
            refresh_in: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn accept_checks_tid_case_insensitively() {
        let now = Instant::now();
        let a = accept(
            fetched(
                serde_json::json!({"tid": "ABCD", "roles": ["R"]}),
                Some(3600),
            ),
            "abcd",
            now,
        )
        .unwrap();
        assert_eq!(a.token.expires_at(), now + Duration::from_secs(3600));
        assert_eq!(a.token.roles(), ["R".to_string()]);
        assert!(a.token.authorization().is_sensitive());
        assert_eq!(a.token.fingerprint().len(), 4);
        let debug = format!("{:?}", a.token);
        assert!(
            !debug.contains(a.token.authorization().to_str().unwrap()),
            "{debug}"
        );

        let err = accept(
            fetched(serde_json::json!({"tid": "other"}), Some(3600)),
            "abcd",
            now,
        )
        .unwrap_err();
        assert!(matches!(err, TokenError::TenantMismatch { ref got, .. } if got == "other"));
        let err = accept(fetched(serde_json::json!({}), Some(3600)), "abcd", now).unwrap_err();
        assert!(matches!(err, TokenError::TenantMismatch { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn accept_refuses_tokens_that_are_not_base64url_jwts() {
        let jwt = fake_jwt(&serde_json::json!({"tid": "t"}));
        // Multi-byte characters at the end (the fingerprint's 4 characters would cut `€`), in
        // the payload, spaces, tabs, padding, standard base64, DEL, an empty segment.
        for suffix in ["€ab", "é", "€", " x", "\tx", "==", "+/", "\u{7f}", "."] {
            let bad = FetchedToken {
                access_token: SecretString::from(format!("{jwt}{suffix}")),
                expires_in: Some(Duration::from_secs(3600)),
                refresh_in: None,
            };
            let err = accept(bad, "t", Instant::now()).unwrap_err();
            assert!(
                matches!(
                    err,
                    TokenError::InvalidResponse {
                        reason: InvalidResponse::NotBase64url,
                        ..
                    }
                ),
                "{suffix:?}: {err:?}"
            );
            let shown = format!("{err} {err:?}");
            let header = jwt.split('.').next().unwrap();
            assert!(!shown.contains(header), "{shown}");
        }
        let in_payload = jwt.replacen('.', ".é", 1);
        let err = accept(
            FetchedToken {
                access_token: SecretString::from(in_payload),
                expires_in: Some(Duration::from_secs(3600)),
                refresh_in: None,
            },
            "t",
            Instant::now(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("base64url"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn lifetime_falls_back_to_exp_claim() {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1000;
        let a = accept(
            fetched(serde_json::json!({"tid": "t", "exp": exp}), None),
            "t",
            Instant::now(),
        )
        .unwrap();
        assert!(a.lifetime > Duration::from_secs(990) && a.lifetime <= Duration::from_secs(1000));
        let err = accept(
            fetched(serde_json::json!({"tid": "t"}), None),
            "t",
            Instant::now(),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            TokenError::InvalidResponse {
                reason: InvalidResponse::Lifetime,
                ..
            }
        ));
    }
}
