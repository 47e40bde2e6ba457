//! Consent onboarding (`[onboarding]`): a customer is added by its admin's consent, not by a
//! hand edit. `consent-url --new NAME` prints an admin-consent link whose signed `state` names
//! the tenant to be; Entra ID sends the admin back to `GET /consent/callback` on a listener of
//! its own (optionally TLS, nothing else served there), which proves the consent with a token
//! for the tenant and only then writes it to `[tenants] file`.
//!
//! # Layout
//! - `state.rs`: the signed, expiring state.
//! - `link.rs`: the consent links `consent-url` prints.
//! - `callback.rs`: the callback's steps; `page.rs`: its answers (HTML pages);
//!   `limit.rs`: its per-client limit.
//!
//! Here: the listener, started by [`crate::app`] beside the admin listener.

mod callback;
mod limit;
pub mod link;
mod page;
mod state;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, ListenLimits};
use crate::inbound::{self, TlsAcceptor};
use crate::listener::{accept_loop, ListenOptions};
use crate::proxy::Proxy;
use crate::reload::Reloader;
use crate::snapshot::BuildError;

pub use link::{consent_links, new_tenant_link, tenant_links, LinkError, Wanted};

/// Connections at once: a few browsers coming back from consent.
const MAX_CONNECTIONS: usize = 256;

/// The onboarding listener as built from the config, not yet serving.
#[derive(Debug, Clone)]
pub(crate) struct Onboarding {
    /// From `[onboarding.tls]`, read at start (a restart picks up a new certificate).
    tls: Option<Arc<TlsAcceptor>>,
}

impl Onboarding {
    /// `None` without `[onboarding]`; fails on unusable TLS files, before anything listens.
    pub(crate) fn new(config: &Config) -> Result<Option<Self>, BuildError> {
        let Some(onboarding) = &config.onboarding else {
            return Ok(None);
        };
        let tls = match &onboarding.tls {
            Some(tls) => Some(Arc::new(TlsAcceptor::new(inbound::tls::server_config(
                tls,
            )?))),
            None => None,
        };
        Ok(Some(Onboarding { tls }))
    }

    /// Serve the callback on `listener` until `stop` flips, then drain within `grace`; the
    /// task, or `None` when onboarding is not configured (or, with a warning, not bound).
    pub(crate) fn start(
        onboarding: Option<Self>,
        listener: Option<TcpListener>,
        (proxy, reloader): (Arc<Proxy>, Option<Arc<Reloader>>),
        stop: watch::Receiver<bool>,
        grace: Duration,
    ) -> Option<JoinHandle<()>> {
        match (onboarding, listener) {
            (Some(onboarding), Some(listener)) => {
                Some(onboarding.spawn(listener, proxy, reloader, stop, grace))
            }
            (Some(_), None) => {
                tracing::warn!("[onboarding] is configured but no listener was bound for it");
                None
            }
            (None, _) => None,
        }
    }

    fn spawn(
        self,
        listener: TcpListener,
        proxy: Arc<Proxy>,
        reloader: Option<Arc<Reloader>>,
        stop: watch::Receiver<bool>,
        grace: Duration,
    ) -> JoinHandle<()> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, tls = self.tls.is_some(), "onboarding listening");
        }
        let options = ListenOptions {
            limits: ListenLimits {
                max_connections: MAX_CONNECTIONS,
                ..ListenLimits::default()
            },
            tls: self.tls,
            grace,
            open: proxy.metrics.connections.clone(),
        };
        let callback = Arc::new(callback::Callback {
            proxy,
            reloader,
            limit: limit::ClientLimit::new(limit::PER_MINUTE, limit::MAX_CLIENTS),
        });
        tokio::spawn(accept_loop(listener, stop, options, move |req, conn| {
            let callback = callback.clone();
            async move { callback.answer(&req, conn.peer.ip()).await.response() }
        }))
    }
}
