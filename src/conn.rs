//! What the proxy knows about one client connection: who (peer, mTLS identity), where it
//! connected to, and two flags its layers set for each other. A leaf: the connection layer
//! (`listener`, `sniff`) fills it in, the hot path (`proxy`) reads it, and neither imports the
//! other for it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::inbound::tls::PeerIdentity;

/// What the proxy knows about the connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The address the client connected to: the base of paging links for a request that named
    /// no host (HTTP/1.0 without `Host`) when `public_url` is unset.
    pub local: SocketAddr,
    /// The verified client certificate's names (mTLS), if one was presented.
    pub identity: Option<PeerIdentity>,
    /// A request started since the idle watch last looked.
    active: AtomicBool,
    /// Set by the `sniff::LengthSniffer` when an HTTP/1 header block carried two lengths.
    pub(crate) ambiguous_length: AtomicBool,
}

impl ConnInfo {
    pub(crate) fn new(peer: SocketAddr, local: SocketAddr, identity: Option<PeerIdentity>) -> Self {
        ConnInfo {
            peer,
            local,
            identity,
            active: AtomicBool::new(false),
            ambiguous_length: AtomicBool::new(false),
        }
    }

    /// A request on this connection carried both `Content-Length` and `Transfer-Encoding`.
    pub fn ambiguous_length(&self) -> bool {
        self.ambiguous_length.load(Ordering::Relaxed)
    }

    /// A request starts: a store, no clock read.
    pub(crate) fn touch(&self) {
        self.active.store(true, Ordering::Relaxed);
    }

    /// Whether a request started since the last call.
    pub(crate) fn take_active(&self) -> bool {
        self.active.swap(false, Ordering::Relaxed)
    }
}
