//! `[listen]` and `[admin]` as typed settings: the listeners' addresses, client TLS, and what a
//! client connection may cost the proxy.
//!
//! One file per config section (split out of `mod.rs`, which had grown past 500 lines), so a
//! section's types read together; their defaults are in `defaults.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub addr: SocketAddr,
    /// Operator's explicit opt-in to a non-loopback listener without inbound authentication.
    pub allow_unauthenticated: bool,
    /// `[listen.tls]`: HTTPS for clients, and mTLS with `client_ca`.
    pub tls: Option<ServerTlsConfig>,
    /// Request hardening limits (all `[listen]` keys).
    pub limits: ListenLimits,
    /// `shutdown_grace`: how long in-flight requests and streams may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// `public_url`: the proxy's base URL as clients reach it (`https://defender.soc.example`),
    /// for paging links when it sits behind another proxy; without it links use the scheme of
    /// the listener and the request's `Host`. No trailing slash.
    pub public_url: Option<String>,
}

/// `[listen.tls]`. Paths only: the files are read when the TLS config is built (at start and on
/// every reload), so rotated certificates are picked up without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA that client certificates must chain to; when set, clients without one are refused at
    /// the handshake.
    pub client_ca: Option<PathBuf>,
}

/// What a client connection may cost the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenLimits {
    /// `max_header_bytes`: request line plus headers; larger is 431 (HTTP/1.1).
    pub max_header_bytes: usize,
    /// `header_timeout`: time to send the request headers; slower connections are closed.
    pub header_timeout: Duration,
    /// `idle_timeout`: a keep-alive connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// `max_connections`: open client connections at most.
    pub max_connections: usize,
    /// `on_max_connections`: what happens to connections beyond `max_connections`.
    pub on_max_connections: ConnectionOverflow,
    /// `max_body_bytes`: request bodies larger than this are 413; `None` (configured as 0): no limit.
    pub max_body_bytes: Option<u64>,
    /// `body_idle_timeout`: longest silence between two pieces of a request body; then 408.
    pub body_idle_timeout: Duration,
    /// `h2_max_concurrent_streams`.
    pub h2_max_concurrent_streams: u32,
    /// `h2_max_header_list_size`.
    pub h2_max_header_list_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionOverflow {
    /// Accept and close at once.
    Refuse,
    /// Leave them in the kernel's accept queue until a connection closes.
    Queue,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub addr: SocketAddr,
    /// `key_sha256`: SHA-256 of the admin key, which `/tenants` writes (and, off loopback, every
    /// `/tenants` request) must present as `Authorization: Bearer`. Only the hash is held.
    pub key_sha256: Option<[u8; 32]>,
    /// `allow_unauthenticated`: off loopback without `key_sha256`, serve the probes and
    /// `/metrics` anyway (the admin API then answers 401 to everyone).
    pub allow_unauthenticated: bool,
}

impl AdminConfig {
    /// The admin listener on `addr` without a key: loopback only, or for tests.
    pub fn on(addr: SocketAddr) -> Self {
        AdminConfig {
            addr,
            key_sha256: None,
            allow_unauthenticated: false,
        }
    }
}

/// `[onboarding]`: the listener a customer's browser comes back to after admin consent.
#[derive(Clone)]
pub struct OnboardingConfig {
    pub addr: SocketAddr,
    /// `redirect_uri`: the URL of `/consent/callback` as the customer's browser reaches it; a
    /// Web redirect URI of every app a link is made for.
    pub redirect_uri: String,
    /// `state_key`: the HMAC key that signs consent `state`s.
    pub state_key: secrecy::SecretString,
    /// `[onboarding.tls]`: HTTPS on the onboarding listener.
    pub tls: Option<ServerTlsConfig>,
}

impl std::fmt::Debug for OnboardingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnboardingConfig")
            .field("addr", &self.addr)
            .field("redirect_uri", &self.redirect_uri)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}
