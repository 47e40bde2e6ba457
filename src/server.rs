//! Listeners, connection serving and shutdown.
//!
//! `run()` takes already-bound listeners and a shutdown future, so tests bind port 0, and the
//! binary binds the configured addresses. On shutdown the listeners stop accepting, `/readyz`
//! turns 503, and open connections get a bounded grace period to finish.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::Admin;
use crate::config::Config;
use crate::config::ListenLimits;
use crate::inbound::{self, AuditLog, ServerTlsError, TlsAcceptor};
use crate::listener::{accept_loop, ListenOptions};
use crate::metrics::Metrics;
use crate::proxy::{ApiBase, ApiTarget, Proxy, Snapshot};
use crate::ratelimit::{RateLimitInitError, RateLimiter};
use crate::rewrite::LinkBase;
use crate::routing::RouteTable;
use crate::tenant::Tenant;
use crate::tls::TlsError;
use crate::token::{TokenBroker, TokenInitError};
use crate::upstream::Upstream;

/// How often `[reload] watch` looks at the watched files.
const WATCH_EVERY: Duration = Duration::from_secs(2);

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
    #[error(transparent)]
    ServerTls(#[from] ServerTlsError),
    #[error("cannot open the audit log: {0}")]
    Audit(#[source] std::io::Error),
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

/// The name of `[cloud]`'s API (labels, logs); no `[[api]]` may take it.
const DEFAULT_API: &str = "default";

/// The tenants' route table. Token slots, limiters and counters come from registries keyed by
/// tenant, so a rebuilt table (reload) keeps the state of tenants that did not change.
pub fn route_table(
    config: &Config,
    broker: &TokenBroker,
    limiter: &RateLimiter,
    metrics: &Metrics,
) -> RouteTable {
    // (name, scope) of each API, in the order of `api_targets`; the names are shared by all
    // tenants' counters.
    let apis: Vec<(Arc<str>, &str)> =
        std::iter::once((Arc::from(DEFAULT_API), &*config.cloud.scope))
            .chain(
                config
                    .apis
                    .iter()
                    .map(|a| (Arc::from(a.name.as_str()), a.scope.as_str())),
            )
            .collect();
    let tenants = config
        .tenants
        .iter()
        .map(|t| Arc::new(Tenant::new(t, &apis, broker, limiter, metrics)))
        .collect();
    RouteTable::new(
        tenants,
        config.routing.tenant_header.clone(),
        config.routing.default_tenant.as_deref(),
    )
}

/// The APIs a config names: `[cloud]`'s first, then each `[[api]]`.
pub fn api_targets(config: &Config, metrics: &Metrics) -> Option<Vec<ApiTarget>> {
    let target = |name: &str, prefix: Option<&str>, uri: &http::Uri| {
        let base = ApiBase::from_uri(uri)?;
        let links = LinkBase::new(&format!("{}://{}", base.scheme, base.authority));
        Some(ApiTarget {
            name: Arc::from(name),
            prefix: prefix.map(Box::from),
            base,
            links,
            latency: metrics.api(name),
        })
    };
    std::iter::once(target(DEFAULT_API, None, &config.cloud.api))
        .chain(
            config
                .apis
                .iter()
                .map(|a| target(&a.name, Some(&a.prefix), &a.url)),
        )
        .collect()
}

/// The start-time warnings of a config: an unauthenticated listener off loopback, and the
/// config's own findings. Logged by [`build_proxy`], which every start path (`serve --config`,
/// `serve --dev`, the tests' harness) goes through, so no path can start without them.
pub(crate) fn log_config_warnings(config: &Config) {
    if config.insecure_listener() {
        tracing::warn!(
            addr = %config.listen.addr,
            "listening off loopback without inbound authentication (allow_unauthenticated = true): \
             anyone who can reach this address acts as the app in every configured tenant"
        );
    }
    for warning in &config.warnings {
        tracing::warn!("config: {warning}");
    }
}

/// Build the shared proxy state from a validated config, logging its warnings first.
pub fn build_proxy(config: &Config) -> Result<Arc<Proxy>, StartError> {
    log_config_warnings(config);
    let broker = TokenBroker::new(&config.app, &config.cloud, &config.upstream)?;
    let limiter = RateLimiter::new(&config.rate_limit)?;
    let metrics = Arc::new(Metrics::default());
    let tls = match &config.listen.tls {
        Some(tls) => Some(Arc::new(TlsAcceptor::new(inbound::tls::server_config(
            tls,
        )?))),
        None => None,
    };
    let audit = match &config.audit {
        Some(target) => Some(AuditLog::open(target).map_err(StartError::Audit)?),
        None => None,
    };
    let snapshot = Snapshot {
        routes: route_table(config, &broker, &limiter, &metrics),
        inbound: inbound::Policy::from_config(config),
        upstream: Upstream::new(config)?,
        apis: api_targets(config, &metrics).ok_or(StartError::ApiUrl)?,
        public_url: config.listen.public_url.as_deref().map(Box::from),
        link_scheme: if config.listen.tls.is_some() {
            "https"
        } else {
            "http"
        },
        audit,
        limiter,
        share: crate::share::Sharing::new(&config.cache),
        metrics: config.metrics,
    };
    let listen = ListenOptions {
        limits: config.listen.limits.clone(),
        tls,
        grace: config.listen.shutdown_grace,
        open: metrics.connections.clone(),
    };
    Ok(Arc::new(Proxy {
        snapshot: ArcSwap::from_pointee(snapshot),
        metrics,
        listen,
        broker,
        config: ArcSwap::from_pointee(config.clone()),
    }))
}

/// Run the proxy on `listeners` until `shutdown` resolves, then drain.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    let proxy = build_proxy(&config)?;
    serve(proxy, listeners, shutdown).await;
    Ok(())
}

/// Run the proxy from a config file: as [`run`], plus reload on SIGHUP and, with
/// `[reload] watch`, when the config or a file it names changes.
pub async fn run_from_file(
    path: std::path::PathBuf,
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    let proxy = build_proxy(&config)?;
    // SIGHUP and the watcher share one reloader, so their reloads run one at a time.
    let reloader = crate::reload::Reloader::new(proxy.clone(), path);
    #[cfg(unix)]
    let sighup = tokio::spawn(crate::reload::on_sighup(reloader.clone()));
    let watcher = if config.reload.watch {
        Some(tokio::spawn(
            crate::reload::watch(reloader, WATCH_EVERY).await,
        ))
    } else {
        None
    };
    serve(proxy, listeners, shutdown).await;
    #[cfg(unix)]
    sighup.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
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
    // The admin listener outlives the data listener's drain, so probes see /readyz turn 503.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);

    if let Ok(addr) = listeners.admin.local_addr() {
        tracing::info!(%addr, "admin listening");
    }
    // The admin port takes few, plain connections.
    let admin_options = ListenOptions {
        limits: ListenLimits {
            max_connections: 64,
            ..ListenLimits::default()
        },
        tls: None,
        grace: proxy.listen.grace,
        open: proxy.metrics.connections.clone(),
    };
    let admin_task = tokio::spawn(accept_loop(
        listeners.admin,
        admin_stop_rx,
        admin_options,
        move |req, _conn| {
            let response = admin.handle(&req);
            async move { response }
        },
    ));
    // Ready before "listening" is logged: both sockets are bound, so connections queue.
    ready.store(true, Ordering::Release);
    let data = listeners.data;
    if let Ok(addr) = data.local_addr() {
        tracing::info!(%addr, tls = proxy.listen.tls.is_some(), "listening");
    }
    let options = proxy.listen.clone();
    let data_proxy = proxy.clone();
    let data_task = tokio::spawn(accept_loop(data, stop_rx, options, move |req, conn| {
        let proxy = data_proxy.clone();
        async move { proxy.handle(req, conn).await }
    }));

    shutdown.await;
    tracing::info!("shutting down: no new connections, draining open ones");
    ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    let _ = data_task.await;
    let _ = admin_stop_tx.send(true);
    let _ = admin_task.await;
    if let Some(audit) = &proxy.snapshot.load().audit {
        if tokio::time::timeout(Duration::from_secs(5), audit.flush())
            .await
            .is_err()
        {
            tracing::warn!("audit log not flushed within 5 s");
        }
    }
}
