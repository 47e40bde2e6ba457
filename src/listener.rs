//! Client connections: accept (optionally TLS/mTLS, under a handshake deadline), the connection
//! limit, HTTP/1.1 and HTTP/2 options, idle connections, and draining on shutdown.
//!
//! Every connection holds a permit of one semaphore sized `max_connections`; draining is then
//! "wait until every permit is back", bounded by the grace period.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::body::ResponseBody;
use crate::config::{ConnectionOverflow, ListenLimits};
use crate::inbound::tls::{PeerIdentity, TlsAcceptor};
use crate::sniff::LengthSniffer;

/// What the proxy knows about the connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The verified client certificate's names (mTLS), if one was presented.
    pub identity: Option<PeerIdentity>,
    /// Milliseconds after `epoch` when the last request started (idle detection).
    last_request: AtomicU64,
    epoch: Instant,
    /// Set by the [`LengthSniffer`] when an HTTP/1 header block carried two lengths.
    ambiguous_length: Arc<AtomicBool>,
}

impl ConnInfo {
    fn new(peer: SocketAddr, identity: Option<PeerIdentity>) -> Self {
        ConnInfo {
            peer,
            identity,
            last_request: AtomicU64::new(0),
            epoch: Instant::now(),
            ambiguous_length: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A request on this connection carried both `Content-Length` and `Transfer-Encoding`.
    pub fn ambiguous_length(&self) -> bool {
        self.ambiguous_length.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        self.last_request
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_deadline(&self, idle: Duration) -> Instant {
        self.epoch + Duration::from_millis(self.last_request.load(Ordering::Relaxed)) + idle
    }
}

/// How one listener serves its connections.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    pub limits: ListenLimits,
    pub tls: Option<Arc<TlsAcceptor>>,
    /// How long open connections may finish after shutdown starts.
    pub grace: Duration,
    /// Gauge of open connections, shared with `/metrics`.
    pub open: Arc<AtomicU64>,
}

/// Counts a connection as open while it lives.
struct OpenConnection(Arc<AtomicU64>);

impl OpenConnection {
    fn new(gauge: Arc<AtomicU64>) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        OpenConnection(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accept connections and serve each with `handler` until `stop` flips; then drain.
pub async fn accept_loop<H, F>(
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Slowloris: the whole header block within this, also between keep-alive requests.
        .header_read_timeout(limits.header_timeout)
        // hyper answers a bare 431 past its buffer; the proxy's own (JSON) check is below it.
        .max_buf_size((limits.max_header_bytes * 2).max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.h2_max_header_list_size);
    let builder = Arc::new(builder);

    loop {
        let permit = match limits.on_max_connections {
            // Wait for a free place before accepting: the kernel's backlog holds the rest.
            ConnectionOverflow::Queue => tokio::select! {
                _ = stop.changed() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => Some(p),
                    Err(_) => break,
                },
            },
            ConnectionOverflow::Refuse => None,
        };
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
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
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let builder = builder.clone();
        let stop = stop.clone();
        let tls = options.tls.clone();
        let open = OpenConnection::new(options.open.clone());
        let (handshake_timeout, idle) = (limits.header_timeout, limits.idle_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            match tls {
                None => {
                    let info = Arc::new(ConnInfo::new(peer, None));
                    serve_connection(&builder, stream, info, handler, stop, idle).await;
                }
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok((tls_stream, identity))) => {
                            let info = Arc::new(ConnInfo::new(peer, identity));
                            serve_connection(&builder, tls_stream, info, handler, stop, idle).await;
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    // Every connection holds a permit: all permits back means every connection is closed.
    let all = u32::try_from(options.limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(options.grace, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}

/// Serve one connection until it ends, shutting it down gracefully (in-flight responses finish)
/// when the proxy stops or when no request started for `idle`.
async fn serve_connection<I, H, F>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    info: Arc<ConnInfo>,
    handler: H,
    mut stop: watch::Receiver<bool>,
    idle: Duration,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(http::Request<Incoming>, Arc<ConnInfo>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = http::Response<ResponseBody>> + Send + 'static,
{
    let peer = info.peer;
    let io = LengthSniffer::new(io, info.ambiguous_length.clone());
    let service_info = info.clone();
    let service = service_fn(move |request| {
        service_info.touch();
        let response = handler(request, service_info.clone());
        async move { Ok::<_, Infallible>(response.await) }
    });
    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
    let mut shutting_down = false;
    loop {
        let idle_at = info.idle_deadline(idle);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !shutting_down => {
                conn.as_mut().graceful_shutdown();
                shutting_down = true;
            }
            _ = tokio::time::sleep_until(idle_at), if !shutting_down => {
                if Instant::now() >= info.idle_deadline(idle) {
                    tracing::debug!(%peer, "idle connection closed");
                    conn.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
            }
        }
    }
}
