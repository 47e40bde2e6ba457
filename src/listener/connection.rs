//! One client connection: the TLS handshake, telling HTTP/2 from HTTP/1, hyper's connection of
//! that version with the handler as its service, the idle watch, and the graceful shutdown when
//! the proxy stops.
//!
//! Apart from the accept loop (`accept.rs`): this is what runs inside each connection's task,
//! sized and polled per connection, so its memory and wake-up costs are kept in one place (see
//! the module doc of `listener` on why it does not use hyper-util's `auto::Builder`).

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::head;
use crate::body::ResponseBody;
use crate::config::ListenLimits;
use crate::conn::ConnInfo;
use crate::inbound::tls::TlsAcceptor;
use crate::sniff::LengthSniffer;
use crate::sync::LockExt;

/// Counts a connection as open while it lives.
pub(super) struct OpenConnection(Arc<AtomicU64>);

impl OpenConnection {
    pub(super) fn new(gauge: Arc<AtomicU64>) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        OpenConnection(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection just accepted, with what it holds while it lives.
pub(super) struct Accepted {
    pub(super) stream: TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) local: SocketAddr,
    /// Its place under `max_connections`; back when the connection ends (the drain waits for it).
    pub(super) permit: OwnedSemaphorePermit,
    pub(super) open: OpenConnection,
}

/// What every connection of one listener is served with.
pub(super) struct Setup<H> {
    pub(super) builders: Arc<Builders>,
    pub(super) tls: Option<Arc<TlsAcceptor>>,
    pub(super) handler: H,
    pub(super) handshake_timeout: Duration,
    pub(super) idle: Duration,
}

/// One connection's task: the TLS handshake when the listener has TLS, then the connection.
/// Runs inside the connection's span (see `accept.rs`), which carries the peer address.
pub(super) async fn serve<H, F>(accepted: Accepted, setup: Setup<H>, stop: watch::Receiver<bool>)
where
    H: Fn(http::Request<Incoming>, Arc<ConnInfo>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = http::Response<ResponseBody>> + Send + 'static,
{
    let Accepted {
        stream,
        peer,
        local,
        permit,
        open,
    } = accepted;
    let _permit = permit;
    let _open = open;
    let Setup {
        builders,
        tls,
        handler,
        handshake_timeout,
        idle,
    } = setup;
    match tls {
        None => {
            let info = Arc::new(ConnInfo::new(peer, local, None));
            serve_connection(builders, stream, info, handler, stop, idle).await;
        }
        // Boxed: a plain connection's task does not carry the TLS state's size.
        Some(acceptor) => {
            Box::pin(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok((tls_stream, identity))) => {
                        let info = Arc::new(ConnInfo::new(peer, local, identity));
                        serve_connection(builders, tls_stream, info, handler, stop, idle).await;
                    }
                    Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            })
            .await
        }
    }
}

/// The HTTP/1 and HTTP/2 settings of one listener.
pub(super) struct Builders {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl Builders {
    pub(super) fn new(limits: &ListenLimits) -> Self {
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
        Builders { h1, h2 }
    }
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
            head::own_head(&mut request);
        }
        Infallibly {
            inner: (self.handler)(request, self.info.clone()),
        }
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
        let mut task = self.task.locked();
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
        let task = self.task.locked();
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
                    tracing::debug!("idle connection closed");
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
        tracing::debug!(error = %err, "connection ended with an error");
    }
}
