//! Client connections: accept (optionally TLS/mTLS, under a handshake deadline), the connection
//! limit, HTTP/1.1 and HTTP/2 options, idle connections, and draining on shutdown.
//!
//! Every connection holds a permit of one semaphore sized `max_connections`; draining is then
//! "wait until every permit is back", bounded by the grace period.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::body::ResponseBody;
use crate::config::{ConnectionOverflow, ListenLimits};
use crate::conn::ConnInfo;
use crate::inbound::tls::TlsAcceptor;
use crate::sniff::LengthSniffer;

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
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        // Slowloris: the whole header block within this, also between keep-alive requests.
        .header_read_timeout(limits.header_timeout)
        // hyper answers a bare 431 past its buffer; the proxy's own (JSON) check is below it.
        .max_buf_size((limits.max_header_bytes * 2).max(8192))
        .keep_alive(true);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.h2_max_header_list_size);
    let builders = Arc::new(Builders { h1, h2 });
    // Asked once: only a wildcard listener needs each connection's own address (one
    // `getsockname`).
    let bound = listener.local_addr().ok();

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
        let local = match bound {
            Some(addr) if !addr.ip().is_unspecified() => addr,
            _ => stream.local_addr().unwrap_or(peer),
        };
        let handler = handler.clone();
        let builders = builders.clone();
        let stop = stop.clone();
        let tls = options.tls.clone();
        let open = OpenConnection::new(options.open.clone());
        let (handshake_timeout, idle) = (limits.header_timeout, limits.idle_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            match tls {
                None => {
                    let info = Arc::new(ConnInfo::new(peer, local, None));
                    serve_connection(builders, stream, info, handler, stop, idle).await;
                }
                // Boxed: a plain connection's task does not carry the TLS state's size.
                Some(acceptor) => {
                    Box::pin(async move {
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                        {
                            Ok(Ok((tls_stream, identity))) => {
                                let info = Arc::new(ConnInfo::new(peer, local, identity));
                                serve_connection(builders, tls_stream, info, handler, stop, idle)
                                    .await;
                            }
                            Ok(Err(err)) => {
                                tracing::debug!(%peer, error = %err, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    })
                    .await
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

/// The HTTP/1 and HTTP/2 settings of one listener.
struct Builders {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

/// The service of one connection: the handler, told which connection a request came on. Its
/// future is the handler's own, wrapped without a copy (hyper keeps one per connection).
struct ConnService<H> {
    handler: H,
    info: Arc<ConnInfo>,
}

impl<H, F> hyper::service::Service<http::Request<Incoming>> for ConnService<H>
where
    H: Fn(http::Request<Incoming>, Arc<ConnInfo>) -> F,
    F: Future<Output = http::Response<ResponseBody>>,
{
    type Response = http::Response<ResponseBody>;
    type Error = Infallible;
    type Future = Infallibly<F>;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        self.info.touch();
        if request.version() < http::Version::HTTP_2 {
            own_head(&mut request);
        }
        Infallibly {
            inner: (self.handler)(request, self.info.clone()),
        }
    }
}

/// hyper's HTTP/1 request head points into its connection's read buffer (the URI and the header
/// values are slices of it): while the request is in flight that buffer stays allocated, and
/// hyper's next read (it reads on, to notice a client going away) allocates another. Copying the
/// head's few hundred bytes out lets hyper reuse its buffer: 8 KiB less per request in flight.
fn own_head<B>(request: &mut http::Request<B>) {
    let uri = request.uri();
    let origin_form = uri.scheme().is_none() && uri.authority().is_none();
    let path_len = match uri.path_and_query() {
        Some(pq) if origin_form => pq.as_str().len(),
        _ => 0,
    };
    let values_len: usize = request.headers().values().map(|v| v.len()).sum();
    let mut copy = BytesMut::with_capacity(path_len + values_len);
    if let Some(pq) = uri.path_and_query().filter(|_| origin_form) {
        copy.extend_from_slice(pq.as_str().as_bytes());
    }
    for value in request.headers().values() {
        copy.extend_from_slice(value.as_bytes());
    }
    let copy = copy.freeze();
    let owned_uri = if origin_form {
        http::uri::PathAndQuery::from_maybe_shared(copy.slice(..path_len))
            .ok()
            .and_then(|pq| {
                let mut parts = http::uri::Parts::default();
                parts.path_and_query = Some(pq);
                http::Uri::from_parts(parts).ok()
            })
    } else {
        // Absolute or authority form (rare): its own small allocation.
        http::Uri::from_maybe_shared(Bytes::from(uri.to_string())).ok()
    };
    if let Some(owned) = owned_uri {
        *request.uri_mut() = owned;
    }
    let mut at = path_len;
    for value in request.headers_mut().values_mut() {
        let end = at + value.len();
        if let Ok(mut owned) = http::HeaderValue::from_maybe_shared(copy.slice(at..end)) {
            owned.set_sensitive(value.is_sensitive());
            *value = owned;
        }
        at = end;
    }
}

pin_project_lite::pin_project! {
    /// A response future as the `Ok` of a service that never fails.
    struct Infallibly<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for Infallibly<F> {
    type Output = Result<F::Output, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map(Ok)
    }
}

type Io<I> = TokioIo<LengthSniffer<I>>;

pin_project_lite::pin_project! {
    /// One connection: first telling HTTP/2 from HTTP/1, then hyper's connection of that
    /// version. HTTP/1 is inline; the rarer (and larger) HTTP/2 connection is boxed.
    #[project = ConnProj]
    enum Conn<I, S>
    where
        S: hyper::service::HttpService<Incoming>,
    {
        Detect { parts: Option<(LengthSniffer<I>, S, Arc<Builders>)> },
        H1 { #[pin] conn: http1::Connection<Io<I>, S> },
        H2 { conn: Pin<Box<http2::Connection<Io<I>, S, TokioExecutor>>> },
        Closed,
    }
}

impl<I, S> Conn<I, S>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = ResponseBody, Error = Infallible>,
    S::Future: Send + 'static,
{
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ConnError>> {
        loop {
            match self.as_mut().project() {
                ConnProj::Detect { parts } => {
                    let Some((io, _, _)) = parts.as_mut() else {
                        return Poll::Ready(Ok(()));
                    };
                    let h2 = match std::task::ready!(io.poll_detect(cx)) {
                        Ok(h2) => h2,
                        Err(err) => {
                            self.set(Conn::Closed);
                            return Poll::Ready(Err(ConnError::Io(err)));
                        }
                    };
                    let Some((io, service, builders)) = parts.take() else {
                        return Poll::Ready(Ok(()));
                    };
                    let io = TokioIo::new(io);
                    if h2 {
                        let conn = Box::pin(builders.h2.serve_connection(io, service));
                        self.set(Conn::H2 { conn });
                    } else {
                        let conn = builders.h1.serve_connection(io, service);
                        self.set(Conn::H1 { conn });
                    }
                }
                ConnProj::H1 { conn } => return conn.poll(cx).map_err(ConnError::Http),
                ConnProj::H2 { conn } => return conn.as_mut().poll(cx).map_err(ConnError::Http),
                ConnProj::Closed => return Poll::Ready(Ok(())),
            }
        }
    }

    /// In-flight requests finish, then the connection closes; one still being told apart closes
    /// now.
    fn graceful_shutdown(mut self: Pin<&mut Self>) {
        match self.as_mut().project() {
            ConnProj::Detect { .. } => self.set(Conn::Closed),
            ConnProj::H1 { conn } => conn.graceful_shutdown(),
            ConnProj::H2 { conn } => conn.as_mut().graceful_shutdown(),
            ConnProj::Closed => {}
        }
    }
}

#[derive(Debug)]
enum ConnError {
    Io(std::io::Error),
    Http(hyper::Error),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Io(err) => err.fmt(f),
            ConnError::Http(err) => err.fmt(f),
        }
    }
}

/// How many times per `idle_timeout` the idle watch looks: a connection closes between
/// `idle_timeout` and 1.25 × `idle_timeout` after its last request started.
const IDLE_SLICES: u32 = 4;

/// Wakes a connection's task for its stop signal or its idle timer, and notes that it did, so
/// the task's other wakes (its own I/O, nearly all of them) poll only the connection.
#[derive(Default)]
struct Control {
    fired: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Control {
    fn set_task(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if !task.as_ref().is_some_and(|t| t.will_wake(waker)) {
            *task = Some(waker.clone());
        }
    }
}

impl Wake for Control {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

/// Serve one connection until it ends, shutting it down gracefully (in-flight responses finish)
/// when the proxy stops or when no request started for `idle`.
async fn serve_connection<I, H, F>(
    builders: Arc<Builders>,
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
    let io = LengthSniffer::new(io, info.clone());
    let service = ConnService {
        handler,
        info: info.clone(),
    };
    let mut conn = pin!(Conn::Detect {
        parts: Some((io, service, builders)),
    });
    let mut stopped = pin!(async move {
        let _ = stop.changed().await;
    });
    // A coarse idle watch: a timer that re-arms itself every slice, and a flag each request
    // sets; no timer or clock work per request.
    let slice = (idle / IDLE_SLICES).max(Duration::from_millis(1));
    let mut tick = pin!(tokio::time::sleep(slice));
    let mut quiet = 0;
    let control = Arc::new(Control::default());
    let control_waker = Waker::from(control.clone());
    // The first poll registers the stop signal and the timer with `control_waker`.
    control.fired.store(true, Ordering::Relaxed);
    let mut shutting_down = false;
    let result = poll_fn(|cx| {
        if !shutting_down && control.fired.swap(false, Ordering::AcqRel) {
            control.set_task(cx.waker());
            let mut control_cx = Context::from_waker(&control_waker);
            if stopped.as_mut().poll(&mut control_cx).is_ready() {
                conn.as_mut().graceful_shutdown();
                shutting_down = true;
            }
            while !shutting_down && tick.as_mut().poll(&mut control_cx).is_ready() {
                if info.take_active() {
                    quiet = 0;
                } else {
                    quiet += 1;
                }
                if quiet >= IDLE_SLICES {
                    tracing::debug!(%peer, "idle connection closed");
                    conn.as_mut().graceful_shutdown();
                    shutting_down = true;
                } else {
                    tick.as_mut().reset(Instant::now() + slice);
                }
            }
        }
        conn.as_mut().poll(cx)
    })
    .await;
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request whose URI and header values are slices of one buffer, as hyper parses them.
    fn parsed(target: &str, headers: &[(&'static str, &str)]) -> (http::Request<()>, Bytes) {
        let mut raw = target.as_bytes().to_vec();
        for (_, value) in headers {
            raw.extend_from_slice(value.as_bytes());
        }
        let raw = Bytes::from(raw);
        let mut request = http::Request::new(());
        *request.uri_mut() = http::Uri::from_maybe_shared(raw.slice(..target.len())).unwrap();
        let mut at = target.len();
        for (name, value) in headers {
            let slice = raw.slice(at..at + value.len());
            at += value.len();
            let value = http::HeaderValue::from_maybe_shared(slice).unwrap();
            request.headers_mut().append(*name, value);
        }
        (request, raw)
    }

    fn points_into(bytes: &[u8], buffer: &Bytes) -> bool {
        let range = buffer.as_ptr_range();
        range.contains(&bytes.as_ptr())
    }

    #[test]
    fn the_owned_head_is_equal_and_no_longer_points_into_the_read_buffer() {
        let (mut request, raw) = parsed(
            "/contoso/api/alerts?$top=10&$filter=severity%20eq%20'high'",
            &[
                ("host", "proxy.example"),
                ("authorization", "Bearer abc.def"),
                ("accept", "application/json"),
                ("accept", "text/plain"),
                ("x-empty", ""),
            ],
        );
        request
            .headers_mut()
            .get_mut("authorization")
            .unwrap()
            .set_sensitive(true);
        let before = (request.uri().clone(), request.headers().clone());
        assert!(points_into(request.uri().path().as_bytes(), &raw));

        own_head(&mut request);

        assert_eq!(request.uri(), &before.0);
        assert_eq!(request.headers(), &before.1);
        assert!(request.headers()["authorization"].is_sensitive());
        assert_eq!(request.headers().get_all("accept").iter().count(), 2);
        assert!(!points_into(request.uri().path().as_bytes(), &raw));
        for value in request.headers().values().filter(|v| !v.is_empty()) {
            assert!(!points_into(value.as_bytes(), &raw), "{value:?}");
        }
    }

    #[test]
    fn an_absolute_form_target_is_owned_too() {
        let (mut request, raw) = parsed("http://api.example:8080/a/b?c=d", &[("host", "x")]);
        let before = request.uri().clone();
        own_head(&mut request);
        assert_eq!(request.uri(), &before);
        assert!(!points_into(request.uri().path().as_bytes(), &raw));
    }
}
