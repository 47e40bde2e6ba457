//! Inbound security: everything about the clients that call the proxy, as opposed to the
//! upstream it calls.
//!
//! - [`tls`]: the HTTPS listener's rustls config (mTLS with `client_ca`), swappable on reload,
//!   and the [`tls::PeerIdentity`] a verified client certificate names.
//! - [`auth`]: `[[client]]` entries: who is calling (API key or certificate identity, keys
//!   compared in constant time) and whether it may use a tenant and method.
//! - [`cors`]: preflight answers and response headers for browser dashboards.
//! - [`audit`]: one JSON line per request, written off the hot path.
//! - [`certs`]: `certs dev`, a throwaway CA with server and client certificates.
//!
//! Each piece is a plain value built from the typed config; the server and the proxy decide
//! where in a request's life each one is applied.

pub mod audit;
pub mod auth;
pub mod certs;
pub mod cors;
pub mod tls;

pub use audit::{AuditEntry, AuditLog};
pub use auth::{AuthError, Client, Clients, Forbidden};
pub use cors::{Cors, ForeignOrigin};
pub use tls::{PeerIdentity, ServerTlsError, TlsAcceptor};

use crate::config::Config;

/// The inbound rules a request is checked against, built from one config and swapped whole on
/// reload (so a request sees one consistent set).
#[derive(Debug)]
pub struct Policy {
    pub clients: Clients,
    pub cors: Cors,
    /// Larger request header blocks are 431.
    pub max_header_bytes: usize,
    /// Larger request bodies are 413.
    pub max_body_bytes: Option<u64>,
    /// A request body silent this long is 408.
    pub body_idle_timeout: std::time::Duration,
}

impl Policy {
    pub fn from_config(config: &Config) -> Self {
        Policy {
            clients: Clients::new(&config.clients),
            cors: Cors::new(&config.cors).with_tenant_header(&config.routing.tenant_header),
            max_header_bytes: config.listen.limits.max_header_bytes,
            max_body_bytes: config.listen.limits.max_body_bytes,
            body_idle_timeout: config.listen.limits.body_idle_timeout,
        }
    }
}
