//! Which listener a request arrived on: its cloud, the base URL it is known by (the cloud's
//! authority and API base at once) and its address, and the `Host` the client named.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::HOST;

/// One listener of the simulator, as its requests see it.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    /// The cloud it serves ([`super::PUBLIC_CLOUD`] or a [`super::SimCloud`]'s name).
    pub(crate) cloud: Arc<str>,
    /// `http://ip:port` (or `https://localhost:port`): authority, API base and token issuer.
    pub(crate) base: Arc<str>,
    /// The address it listens on.
    pub(crate) local: SocketAddr,
}

impl Site {
    /// Whether `iss` is an issuer of this listener's authority (`{base}/{tid}/...`).
    pub(crate) fn issued(&self, iss: &str) -> bool {
        iss.strip_prefix(&*self.base)
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// The host the client named: HTTP/1's `Host`, else HTTP/2's `:authority`; empty when neither.
pub(crate) fn host_of<B>(req: &http::Request<B>) -> String {
    req.headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default()
}
