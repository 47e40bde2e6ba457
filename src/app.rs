//! The one start path: [`App::build`] makes the shared state from a [`Config`] (token broker,
//! metrics, the data listener's TLS acceptor, the first [`Snapshot`], the reloader), and
//! [`App::run`] serves already-bound listeners until a shutdown future resolves, then drains.
//! `serve --config`, `serve --dev` and the tests' harness all start the proxy this way ([`run`]
//! is the two in one), so a warning or a task that only one of them had cannot hide.
//!
//! The listeners are taken already bound, so tests bind port 0 and the binary binds the
//! configured addresses ([`bind`]). On shutdown the listeners stop accepting, `/readyz` turns
//! 503, open connections get a bounded grace period to finish, then the admin listener stops
//! and the audit log and the trace spans (`[telemetry]`, within 5 s) are flushed.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::Admin;
use crate::config::{Config, ListenLimits};
use crate::inbound::{self, TlsAcceptor};
use crate::listener::{accept_loop, ListenOptions};
use crate::metrics::Metrics;
use crate::onboarding::Onboarding;
use crate::proxy::Proxy;
use crate::reload::{ReloadError, Reloader};
use crate::snapshot::{self, BuildError, Shared, Snapshot};
use crate::telemetry::{Telemetry, TelemetryError};
use crate::token::TokenBrokers;

/// How often `[reload] watch` looks at the watched files.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The bound sockets the proxy serves.
#[derive(Debug)]
pub struct Listeners {
    pub data: TcpListener,
    pub admin: TcpListener,
    /// `[onboarding] addr`: the consent callback's listener, when onboarding is configured.
    pub onboarding: Option<TcpListener>,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config could not be made into a proxy (TLS files, keys, the audit file, Redis URL).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// `[telemetry]`: the trace exporter could not be made.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
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
    let onboarding = match &config.onboarding {
        Some(onboarding) => Some(bind(onboarding.addr).await?),
        None => None,
    };
    Ok(Listeners {
        data: bind(config.listen.addr).await?,
        admin: bind(config.admin.addr).await?,
        onboarding,
    })
}

/// Build the proxy from `config` and run it on `listeners` until `shutdown` resolves, then
/// drain. With `file` (the file `config` was read from) it reloads on SIGHUP and, with
/// `[reload] watch`, when the file or one it names changes.
pub async fn run(
    config: &Config,
    file: Option<PathBuf>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    App::build(config, file)?.run(listeners, shutdown).await;
    Ok(())
}

/// The proxy's state, built and not yet serving (cheap to clone: tests keep one to look at the
/// running state and to reload).
#[derive(Debug, Clone)]
pub struct App {
    proxy: Arc<Proxy>,
    /// How the data listener serves connections (limits, TLS acceptor); read once, at start.
    listen: ListenOptions,
    /// With a config file: the one reloader SIGHUP, the watcher and [`App::reload`] share.
    reloader: Option<Arc<Reloader>>,
    /// `[reload] watch`, as started.
    watch: bool,
    /// `[onboarding]`: the consent callback's listener, built (its TLS files read) at start.
    onboarding: Option<Onboarding>,
    /// `[telemetry]`: the trace pipeline, flushed when the proxy stops.
    telemetry: Option<Telemetry>,
}

impl App {
    /// Everything a validated config makes, its warnings logged first, its trace pipeline
    /// started when `[telemetry]` asks for one (see [`App::telemetry`]). `file`: see [`run`].
    pub fn build(config: &Config, file: Option<PathBuf>) -> Result<App, StartError> {
        let telemetry = Telemetry::start(config)?;
        Self::build_with(config, file, telemetry)
    }

    /// [`App::build`] with a trace pipeline already started (`main` starts it first, to put its
    /// layer in the subscriber before anything is logged).
    pub fn build_with(
        config: &Config,
        file: Option<PathBuf>,
        telemetry: Option<Telemetry>,
    ) -> Result<App, StartError> {
        snapshot::log_config_warnings(config);
        let broker = TokenBrokers::new(config).map_err(BuildError::from)?;
        let mut metrics = Metrics::default();
        if let Some(telemetry) = &telemetry {
            metrics.spans = telemetry.counts().clone();
        }
        let metrics = Arc::new(metrics);
        let tls = match &config.listen.tls {
            Some(tls) => Some(Arc::new(TlsAcceptor::new(
                inbound::tls::server_config(tls).map_err(BuildError::from)?,
            ))),
            None => None,
        };
        let shared = Shared {
            broker: &broker,
            metrics: &metrics,
        };
        let snapshot = Snapshot::build(config, shared, None)?;
        let listen = ListenOptions {
            limits: config.listen.limits.clone(),
            tls: tls.clone(),
            grace: config.listen.shutdown_grace,
            open: metrics.connections.clone(),
        };
        let proxy = Arc::new(Proxy {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            broker,
            config: ArcSwap::from_pointee(config.clone()),
        });
        let reloader = file.map(|file| Reloader::new(proxy.clone(), tls, file));
        let onboarding = Onboarding::new(config)?;
        Ok(App {
            proxy,
            listen,
            reloader,
            watch: config.reload.watch,
            onboarding,
            telemetry,
        })
    }

    /// The trace pipeline, when `[telemetry]` is on: its [`Telemetry::layer`] belongs in the
    /// process's subscriber (`main` puts it there; a test installs its own).
    pub fn telemetry(&self) -> Option<&Telemetry> {
        self.telemetry.as_ref()
    }

    /// The state requests are served from.
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Reload the config file now, as SIGHUP does (after any reload already running); `None`
    /// when the proxy was not started from a file.
    pub async fn reload(&self) -> Option<Result<(), ReloadError>> {
        Some(self.reloader.as_ref()?.reload().await)
    }

    /// Serve `listeners` until `shutdown` resolves, then drain; reloads run meanwhile (see
    /// [`run`]).
    pub async fn run(self, listeners: Listeners, shutdown: impl Future<Output = ()> + Send) {
        // SIGHUP and the watcher share one reloader, so their reloads run one at a time.
        #[cfg(unix)]
        let sighup = self
            .reloader
            .clone()
            .map(|reloader| tokio::spawn(crate::reload::on_sighup(reloader)));
        let telemetry = self.telemetry.clone();
        let watcher = match (&self.reloader, self.watch) {
            (Some(reloader), true) => Some(tokio::spawn(
                crate::reload::watch(reloader.clone(), WATCH_EVERY).await,
            )),
            _ => None,
        };
        self.serve(listeners, shutdown).await;
        #[cfg(unix)]
        if let Some(sighup) = sighup {
            sighup.abort();
        }
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        if let Some(telemetry) = telemetry {
            telemetry.shutdown().await;
        }
    }

    async fn serve(self, listeners: Listeners, shutdown: impl Future<Output = ()> + Send) {
        let proxy = self.proxy;
        let ready = Arc::new(AtomicBool::new(false));
        let admin = Admin {
            proxy: proxy.clone(),
            ready: ready.clone(),
            reloader: self.reloader.clone(),
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
            grace: self.listen.grace,
            open: proxy.metrics.connections.clone(),
        };
        let admin_task = tokio::spawn(accept_loop(
            listeners.admin,
            admin_stop_rx,
            admin_options,
            move |req, _conn| {
                let admin = admin.clone();
                async move { admin.handle(req).await }
            },
        ));
        // Ready before "listening" is logged: both sockets are bound, so connections queue.
        ready.store(true, Ordering::Release);
        let data = listeners.data;
        if let Ok(addr) = data.local_addr() {
            tracing::info!(%addr, tls = self.listen.tls.is_some(), "listening");
        }
        let data_proxy = proxy.clone();
        // Consent onboarding: its own listener, stopped and drained with the data listener.
        let onboarding_task = Onboarding::start(
            self.onboarding,
            listeners.onboarding,
            (proxy.clone(), self.reloader.clone()),
            stop_rx.clone(),
            self.listen.grace,
        );
        let data_task = tokio::spawn(accept_loop(data, stop_rx, self.listen, move |req, conn| {
            let proxy = data_proxy.clone();
            async move { proxy.handle(req, conn).await }
        }));

        shutdown.await;
        tracing::info!("shutting down: no new connections, draining open ones");
        ready.store(false, Ordering::Release);
        let _ = stop_tx.send(true);
        let _ = data_task.await;
        if let Some(onboarding_task) = onboarding_task {
            let _ = onboarding_task.await;
        }
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
}
