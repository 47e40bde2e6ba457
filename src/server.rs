//! Listeners, connection serving and shutdown.
//!
//! `run()` takes already-bound listeners and a shutdown future, so tests bind port 0, and the
//! binary binds the configured addresses. On shutdown the listeners stop accepting, `/readyz`
//! turns 503, and open connections get a bounded grace period to finish.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::Admin;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::{ApiBase, Proxy};
use crate::ratelimit::{RateLimitInitError, RateLimiter};
use crate::routing::{RouteTable, Tenant};
use crate::tls::TlsError;
use crate::token::{TokenBroker, TokenInitError};
use crate::upstream::Upstream;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open connections may finish after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The two bound sockets the proxy serves.
#[derive(Debug)]
pub struct Listeners {
    pub data: TcpListener,
    pub admin: TcpListener,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Token(#[from] TokenInitError),
    #[error(transparent)]
    RateLimit(#[from] RateLimitInitError),
    #[error("cloud.api has no scheme or host")]
    ApiUrl,
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Bind the configured addresses.
pub async fn bind(config: &Config) -> Result<Listeners, StartError> {
    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    Ok(Listeners {
        data: bind(config.listen.addr).await?,
        admin: bind(config.admin.addr).await?,
    })
}

/// The tenants' route table. Token slots, limiters and counters come from registries keyed by
/// tenant, so a rebuilt table (reload) keeps the state of tenants that did not change.
pub fn route_table(
    config: &Config,
    broker: &TokenBroker,
    limiter: &RateLimiter,
    metrics: &Metrics,
) -> RouteTable {
    let tenants = config
        .tenants
        .iter()
        .map(|t| {
            Arc::new(Tenant {
                name: Arc::from(t.name.as_str()),
                id: Arc::from(t.id.as_str()),
                token: broker.slot(&t.id, &config.cloud.scope),
                limits: limiter.tenant(&t.id, &t.rate_limit),
                metrics: metrics.tenant(&t.name),
            })
        })
        .collect();
    RouteTable::new(
        tenants,
        config.routing.tenant_header.clone(),
        config.routing.default_tenant.as_deref(),
    )
}

/// Build the shared proxy state from a validated config.
pub fn build_proxy(config: &Config) -> Result<Arc<Proxy>, StartError> {
    let broker = TokenBroker::new(&config.app, &config.cloud, &config.upstream)?;
    let limiter = RateLimiter::new(&config.rate_limit)?;
    let metrics = Arc::new(Metrics::default());
    let api = ApiBase::from_uri(&config.cloud.api).ok_or(StartError::ApiUrl)?;
    Ok(Arc::new(Proxy {
        routes: ArcSwap::from_pointee(route_table(config, &broker, &limiter, &metrics)),
        upstream: Upstream::new(config)?,
        api,
        metrics,
        limiter,
    }))
}

/// Run the proxy on `listeners` until `shutdown` resolves, then drain.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    if config.insecure_listener() {
        tracing::warn!(
            addr = %config.listen.addr,
            "listening off loopback without inbound authentication (allow_unauthenticated = true): \
             anyone who can reach this address acts as the app in every configured tenant"
        );
    }
    let proxy = build_proxy(&config)?;
    serve(proxy, listeners, shutdown).await;
    Ok(())
}

/// Serve an already built proxy (tests use this to keep a handle on its state).
pub async fn serve(
    proxy: Arc<Proxy>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) {
    let ready = Arc::new(AtomicBool::new(false));
    let admin = Admin {
        proxy: proxy.clone(),
        ready: ready.clone(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);

    if let Ok(addr) = listeners.admin.local_addr() {
        tracing::info!(%addr, "admin listening");
    }
    let admin_task = tokio::spawn(accept_loop(listeners.admin, stop_rx.clone(), move |req| {
        let admin = admin.clone();
        async move { Ok::<_, Infallible>(admin.handle(&req)) }
    }));
    let data = listeners.data;
    if let Ok(addr) = data.local_addr() {
        tracing::info!(%addr, "listening");
    }
    ready.store(true, Ordering::Release);
    let data_task = tokio::spawn(accept_loop(data, stop_rx, move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(req).await) }
    }));

    shutdown.await;
    tracing::info!("shutting down: no new connections, draining open ones");
    ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    let _ = data_task.await;
    let _ = admin_task.await;
}

/// Accept connections and serve each with `handler` (HTTP/1.1, or HTTP/2 with prior knowledge),
/// until `stop` flips; then give open connections [`SHUTDOWN_GRACE`] to finish.
async fn accept_loop<H, F>(listener: TcpListener, mut stop: watch::Receiver<bool>, handler: H)
where
    H: Fn(http::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<http::Response<crate::body::ResponseBody>, Infallible>>
        + Send
        + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();

    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service_fn(handler))
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}
