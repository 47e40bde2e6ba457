//! Client connections: accept (optionally TLS/mTLS, under a handshake deadline), the connection
//! limit, HTTP/1.1 and HTTP/2 options, idle connections, and draining on shutdown.
//!
//! Every connection holds a permit of one semaphore sized `max_connections`; draining is then
//! "wait until every permit is back", bounded by the grace period.
//!
//! # Layout
//! - `accept.rs`: the accept loop: the connection limit (queue or refuse), the per-connection
//!   task in its span (`conn`, with the peer address, so the connection's log lines carry it),
//!   and the drain.
//! - `connection.rs`: one connection: the TLS handshake, telling HTTP/2 from HTTP/1, hyper's
//!   connection of that version, the idle watch and the graceful shutdown.
//! - `head.rs`: an HTTP/1 request head copied out of hyper's read buffer.
//!
//! # Why not hyper-util's `auto::Builder`
//! Measured in commit e48c246 (1,000 concurrent connections, `benches/README.md`): `auto` tells
//! the versions apart by reading the first bytes and replaying them (its `Rewind`), which made
//! hyper's first read return those 24 bytes and every connection's read buffer grow from 8 to
//! 16 KiB. Here the `LengthSniffer` (`sniff.rs`), which reads below hyper anyway, keeps the first
//! bytes in a 24-byte array and hands them to hyper with whatever else arrived, and `Conn` starts
//! hyper's `http1` connection inline or its (rarer, larger) `http2` one boxed. And the service
//! wraps the handler's future as it is (`ConnService`, `Infallibly`): the `service_fn` async
//! block used with `auto` stored the handler's future twice (hyper's per-connection slot 8,352 ->
//! 4,176 bytes). Peak heap at 1,000 connections went 92.8 -> 72.8 MB with that commit.

mod accept;
mod connection;
mod head;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ListenLimits;
use crate::inbound::tls::TlsAcceptor;

pub(crate) use accept::accept_loop;

/// How one listener serves its connections.
#[derive(Debug, Clone)]
pub(crate) struct ListenOptions {
    pub limits: ListenLimits,
    pub tls: Option<Arc<TlsAcceptor>>,
    /// How long open connections may finish after shutdown starts.
    pub grace: Duration,
    /// Gauge of open connections, shared with `/metrics`.
    pub open: Arc<AtomicU64>,
}
