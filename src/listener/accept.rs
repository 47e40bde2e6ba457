//! The accept loop of one listener: the connection limit (wait in the kernel's backlog, or
//! accept and close), one task per connection inside its span, and the drain at shutdown.
//!
//! Apart from the per-connection machinery (`connection.rs`): this runs once per listener, and
//! what it decides (whether a connection gets a task at all) is logged with the peer by hand,
//! since a refused connection has no task and no span.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument as _;

use super::connection::{self, Accepted, Builders, OpenConnection, Setup};
use super::ListenOptions;
use crate::body::ResponseBody;
use crate::config::{ConnectionOverflow, ListenLimits};
use crate::conn::ConnInfo;

/// Accept connections and serve each with `handler` until `stop` flips; then drain.
pub(crate) async fn accept_loop<H, F>(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    options: ListenOptions,
    handler: H,
) where
    H: Fn(http::Request<Incoming>, Arc<ConnInfo>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = http::Response<ResponseBody>> + Send + 'static,
{
    let limits = &options.limits;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let builders = Arc::new(Builders::new(limits));
    // Asked once: only a wildcard listener needs each connection's own address (one
    // `getsockname`).
    let bound = listener.local_addr().ok();

    loop {
        let (stream, peer, permit) = match next(&listener, &mut stop, &permits, limits).await {
            Next::Connection(stream, peer, permit) => (stream, peer, permit),
            Next::Again => continue,
            Next::Stop => break,
        };
        let _ = stream.set_nodelay(true);
        let local = match bound {
            Some(addr) if !addr.ip().is_unspecified() => addr,
            _ => stream.local_addr().unwrap_or(peer),
        };
        let accepted = Accepted {
            stream,
            peer,
            local,
            permit,
            open: OpenConnection::new(options.open.clone()),
        };
        let setup = Setup {
            builders: builders.clone(),
            tls: options.tls.clone(),
            handler: handler.clone(),
            handshake_timeout: limits.header_timeout,
            idle: limits.idle_timeout,
        };
        // Every line the connection logs (handshake, idle close, errors, and the requests'
        // own) names its peer through this span. Debug level: at the default `info` the span
        // is disabled, costs next to nothing per poll and leaves the log lines as they were.
        let span = tracing::debug_span!("conn", %peer);
        tokio::spawn(connection::serve(accepted, setup, stop.clone()).instrument(span));
    }
    drop(listener);
    drain(&permits, &options).await;
}

/// What the next turn of the accept loop does.
enum Next {
    Connection(TcpStream, SocketAddr, OwnedSemaphorePermit),
    /// Nothing to serve this turn (an accept error, a refused connection).
    Again,
    Stop,
}

/// The next connection with its permit: in queue mode the permit first (the kernel's backlog
/// holds the rest); in refuse mode accepted, then closed at once when no permit is free.
async fn next(
    listener: &TcpListener,
    stop: &mut watch::Receiver<bool>,
    permits: &Arc<Semaphore>,
    limits: &ListenLimits,
) -> Next {
    let permit = match limits.on_max_connections {
        // Wait for a free place before accepting: the kernel's backlog holds the rest.
        ConnectionOverflow::Queue => tokio::select! {
            _ = stop.changed() => return Next::Stop,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => Some(p),
                Err(_) => return Next::Stop,
            },
        },
        ConnectionOverflow::Refuse => None,
    };
    let (stream, peer) = tokio::select! {
        _ = stop.changed() => return Next::Stop,
        accepted = listener.accept() => match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Next::Again;
            }
        },
    };
    let permit = match permit {
        Some(p) => p,
        None => match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tracing::warn!(%peer, max = limits.max_connections, "connection limit reached; refused");
                drop(stream);
                return Next::Again;
            }
        },
    };
    Next::Connection(stream, peer, permit)
}

/// Every connection holds a permit: all permits back means every connection is closed. Bounded
/// by the grace period.
async fn drain(permits: &Semaphore, options: &ListenOptions) {
    let all = u32::try_from(options.limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(options.grace, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}
