//! Hot reload: a new config replaces the running one atomically, or not at all.
//!
//! A reload builds a complete new [`Snapshot`] next to the running one (reusing what did not
//! change: token slots, tenant limiters, the upstream connection pool, the audit file), then
//! swaps it in with one store. Requests in flight keep the snapshot they loaded; connections are
//! never touched. What a running listener cannot change (addresses, whether it speaks TLS, its
//! connection limits and timeouts: [`RestartOnly`]) is kept and logged as needing a restart.
//! TLS certificates are re-read on every reload, so rotated files take effect for new
//! handshakes.
//!
//! Every reload, whoever asks (SIGHUP, `[reload] watch`), goes through one [`Reloader`]: one
//! async lock is held across the whole of it (read, build, swap), so two reloads never
//! interleave their stores, and a reload asked for while one runs starts when that one ends, on
//! the file as it is then. The work runs on tokio's blocking pool: it reads files (the config,
//! the secrets, keys and certificates it names) that may be slow (a network volume, a FIFO), and
//! on a runtime worker it would stall every request meanwhile (with `--workers 1`, all of them).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::config::{self, Config};
use crate::inbound::{self, TlsAcceptor};
use crate::proxy::Proxy;
use crate::snapshot::{self, BuildError, Previous, Shared, Snapshot};
use crate::sync::LockExt;

/// Why a reload did not take effect (the running config stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new config is invalid:\n{0}")]
    Invalid(#[from] config::ConfigErrors),
    /// The same failures that would stop a start (TLS files, keys, the audit file, Redis URL).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The reload's task panicked (a bug); what it had not swapped in yet stays as it was.
    #[error("the reload stopped with a panic")]
    Panicked,
}

/// The one entry point of reloads. See the module docs.
#[derive(Debug)]
pub(crate) struct Reloader {
    proxy: Arc<Proxy>,
    /// The data listener's TLS acceptor, whose certificates each reload re-reads.
    tls: Option<Arc<TlsAcceptor>>,
    path: PathBuf,
    /// Held from before the file is read until after the last store: reloads run one at a time.
    lock: Arc<Mutex<()>>,
    /// Reloads waiting for the running one to end (logged; tests wait on it).
    queued: AtomicUsize,
    /// What the listeners run with until a restart, whatever reloads say.
    started: Arc<RestartOnly>,
    /// The watched files as the running config last read them: the watcher reloads when they
    /// differ. A change of the tenants file sets it after writing, so the proxy's own write
    /// does not make its watcher reload the same files again.
    seen: Arc<std::sync::Mutex<Fingerprint>>,
}

impl Reloader {
    /// Made when the listeners start, from the config they start with.
    pub(crate) fn new(
        proxy: Arc<Proxy>,
        tls: Option<Arc<TlsAcceptor>>,
        path: PathBuf,
    ) -> Arc<Self> {
        let started = Arc::new(RestartOnly::of(&proxy.config.load()));
        Arc::new(Reloader {
            started,
            proxy,
            tls,
            path,
            lock: Arc::new(Mutex::new(())),
            queued: AtomicUsize::new(0),
            seen: Arc::default(),
        })
    }

    /// Read the config file, validate it, and apply it, after any reload already running;
    /// logs and counts the result either way.
    pub(crate) async fn reload(&self) -> Result<(), ReloadError> {
        let work = self
            .exclusive(|locked| reload_file(locked.proxy, locked.tls, locked.started, locked.path))
            .await;
        work.unwrap_or_else(|| {
            self.proxy.metrics.record_reload(false);
            tracing::error!(config = %self.path.display(), "config reload panicked; what it had not swapped in stays");
            Err(ReloadError::Panicked)
        })
    }

    /// Run `work` on the blocking pool under the reload lock, with what it needs to apply a
    /// config ([`Locked`]). Reloads and the tenants file's changes both go through here, so
    /// none of them interleaves with another. `None` when `work` panicked.
    pub(crate) async fn exclusive<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Locked<'_>) -> T + Send + 'static,
    ) -> Option<T> {
        let guard = self.wait_turn().await;
        let proxy = self.proxy.clone();
        let tls = self.tls.clone();
        let path = self.path.clone();
        let started = self.started.clone();
        let seen = self.seen.clone();
        // The guard moves into the blocking task: if this future is dropped (shutdown) the
        // work still ends before the next one starts.
        let task = tokio::task::spawn_blocking(move || {
            let _turn = guard;
            work(&Locked {
                proxy: &proxy,
                tls: tls.as_deref(),
                started: &started,
                path: &path,
                seen: &seen,
            })
        });
        task.await.ok()
    }

    /// The lock, at once or after the running reload.
    async fn wait_turn(&self) -> OwnedMutexGuard<()> {
        if let Ok(guard) = self.lock.clone().try_lock_owned() {
            return guard;
        }
        tracing::info!("a config reload is running; this one starts when it ends");
        let _queued = Queued::new(&self.queued);
        self.lock.clone().lock_owned().await
    }

    /// Reloads waiting for their turn.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// The current fingerprint of the config and the files it names, taken on the blocking pool.
    async fn fingerprint(&self) -> Fingerprint {
        let files = watched(&self.path, &self.proxy);
        tokio::task::spawn_blocking(move || fingerprint(&files))
            .await
            .unwrap_or_default()
    }

    /// Take the watched files' fingerprint now as the one the running config read.
    async fn remember_files(&self) {
        let now = self.fingerprint().await;
        *self.seen.locked() = now;
    }

    fn seen(&self) -> Fingerprint {
        self.seen.locked().clone()
    }
}

/// What a change running under the reload lock ([`Reloader::exclusive`]) may use.
pub(crate) struct Locked<'a> {
    pub(crate) proxy: &'a Proxy,
    tls: Option<&'a TlsAcceptor>,
    started: &'a RestartOnly,
    /// The config file.
    pub(crate) path: &'a Path,
    seen: &'a std::sync::Mutex<Fingerprint>,
}

impl Locked<'_> {
    /// Replace the running config with `new` (already validated), as a reload does; logs and
    /// counts it like one.
    pub(crate) fn apply(&self, new: Config) -> Result<(), ReloadError> {
        let result = apply(self.proxy, self.tls, self.started, new);
        self.proxy.metrics.record_reload(result.is_ok());
        if result.is_ok() {
            // What was just written and applied is no news to the watcher.
            *self.seen.locked() = fingerprint(&watched(self.path, self.proxy));
        }
        result
    }
}

/// Counts one reload as waiting while it lives (also when its future is dropped while waiting).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Queued(count)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Read `path`, validate it, and apply it; logs and counts the result either way. Blocking (file
/// reads): only [`Reloader::reload`] calls it, on the blocking pool, under the reload lock.
fn reload_file(
    proxy: &Proxy,
    tls: Option<&TlsAcceptor>,
    started: &RestartOnly,
    path: &Path,
) -> Result<(), ReloadError> {
    let result = config::load_file(path)
        .map_err(ReloadError::from)
        .and_then(|new| apply(proxy, tls, started, new));
    proxy.metrics.record_reload(result.is_ok());
    match &result {
        Ok(()) => {
            let tenants = proxy.config.load().tenants.len();
            tracing::info!(config = %path.display(), tenants, "config reloaded");
        }
        Err(err) => {
            tracing::error!(config = %path.display(), error = %err, "config reload failed; the running config stays")
        }
    }
    result
}

/// Replace the running config with `new` (already validated): build everything first, and
/// swap nothing until all of it succeeded.
fn apply(
    proxy: &Proxy,
    acceptor: Option<&TlsAcceptor>,
    started: &RestartOnly,
    new: Config,
) -> Result<(), ReloadError> {
    let old = proxy.config.load_full();
    let current = proxy.snapshot.load_full();
    let restart = started.changed(&new);
    if !restart.is_empty() {
        tracing::warn!(settings = ?restart, "these settings take effect only after a restart");
    }
    snapshot::log_config_warnings(&new);

    // New certificates only for a listener that speaks TLS (turning it on or off is restart-only).
    let tls = match (acceptor, &new.listen.tls) {
        (Some(_), Some(tls)) => Some(inbound::tls::server_config(tls).map_err(BuildError::from)?),
        _ => None,
    };
    let shared = Shared {
        broker: &proxy.broker,
        metrics: &proxy.metrics,
    };
    let previous = Previous {
        snapshot: &current,
        config: &old,
    };
    let snapshot = Snapshot::build(&new, shared, Some(previous))?;
    let limiter = snapshot.limiter.clone();
    proxy.snapshot.store(Arc::new(snapshot));
    if let (Some(acceptor), Some(tls)) = (acceptor, tls) {
        acceptor.swap(tls);
    }
    // Forget the state of tenants that are gone.
    let ids: std::collections::HashSet<&str> = new.tenants.iter().map(|t| t.id.as_str()).collect();
    limiter.retain_tenants(|id| ids.contains(id));
    proxy.broker.prune_unused();
    proxy.config.store(Arc::new(new));
    Ok(())
}

/// What the running listeners and tasks were started with and keep until a restart: the
/// sockets, whether the data listener speaks TLS, everything `listener::accept_loop` reads once
/// (the connection cap and what happens past it, the header and idle timeouts, the HTTP/2
/// limits, hyper's HTTP/1 read buffer, the drain's grace period), and whether the watcher runs.
///
/// Compared with each new config (not with the previous one): a reload that left a change
/// pending still names it, and one that goes back to the running value no longer does.
/// Everything else takes effect at once, `max_body_bytes`, `body_idle_timeout` and the proxy's
/// own `max_header_bytes` check among them: requests read them from the snapshot's
/// `inbound::Policy`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RestartOnly {
    listen_addr: std::net::SocketAddr,
    admin_addr: std::net::SocketAddr,
    /// `[onboarding]`'s listener: its address and whether it speaks TLS (its files are read
    /// once, at start).
    onboarding: Option<(std::net::SocketAddr, Option<config::ServerTlsConfig>)>,
    tls: bool,
    limits: config::ListenLimits,
    shutdown_grace: Duration,
    watch: bool,
    /// The trace pipeline and the subscriber layer feeding it are made once, at start.
    telemetry: Option<config::TelemetryConfig>,
}

impl RestartOnly {
    pub(crate) fn of(config: &Config) -> Self {
        RestartOnly {
            listen_addr: config.listen.addr,
            admin_addr: config.admin.addr,
            onboarding: onboarding_listener(config),
            tls: config.listen.tls.is_some(),
            limits: config.listen.limits.clone(),
            shutdown_grace: config.listen.shutdown_grace,
            watch: config.reload.watch,
            telemetry: config.telemetry.clone(),
        }
    }

    /// The settings `new` changes that keep their running value until a restart.
    pub(crate) fn changed(&self, new: &Config) -> Vec<&'static str> {
        let (old, new_limits) = (&self.limits, &new.listen.limits);
        [
            (self.listen_addr != new.listen.addr, "listen.addr"),
            (self.admin_addr != new.admin.addr, "admin.addr"),
            (
                self.onboarding != onboarding_listener(new),
                "onboarding (addr, tls)",
            ),
            (self.tls != new.listen.tls.is_some(), "listen.tls (on/off)"),
            (
                old.max_connections != new_limits.max_connections,
                "listen.max_connections",
            ),
            (
                old.on_max_connections != new_limits.on_max_connections,
                "listen.on_max_connections",
            ),
            (
                old.header_timeout != new_limits.header_timeout,
                "listen.header_timeout",
            ),
            (
                old.idle_timeout != new_limits.idle_timeout,
                "listen.idle_timeout",
            ),
            (
                old.h2_max_concurrent_streams != new_limits.h2_max_concurrent_streams,
                "listen.h2_max_concurrent_streams",
            ),
            (
                old.h2_max_header_list_size != new_limits.h2_max_header_list_size,
                "listen.h2_max_header_list_size",
            ),
            // Lowered, it takes effect at once (the proxy's own check); raised, hyper's HTTP/1
            // read buffer (sized from it at start) may still refuse the larger header blocks.
            (
                new_limits.max_header_bytes > old.max_header_bytes,
                "listen.max_header_bytes (raised)",
            ),
            (
                self.shutdown_grace != new.listen.shutdown_grace,
                "listen.shutdown_grace",
            ),
            (self.watch != new.reload.watch, "reload.watch"),
            (self.telemetry != new.telemetry, "telemetry"),
        ]
        .into_iter()
        .filter_map(|(changed, name)| changed.then_some(name))
        .collect()
    }
}

fn onboarding_listener(
    config: &Config,
) -> Option<(std::net::SocketAddr, Option<config::ServerTlsConfig>)> {
    let onboarding = config.onboarding.as_ref()?;
    Some((onboarding.addr, onboarding.tls.clone()))
}

/// Reload on every SIGHUP until the process ends. The handler is installed here, before the
/// returned future is spawned: a SIGHUP sent once the proxy listens never meets the default
/// action (which would end the process). SIGHUPs that arrive during a reload make one more.
#[cfg(unix)]
pub(crate) fn on_sighup(reloader: Arc<Reloader>) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let hangups = signal(SignalKind::hangup());
    async move {
        let Ok(mut hangups) = hangups else {
            tracing::warn!("cannot listen for SIGHUP; reload by restarting");
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            let _ = reloader.reload().await;
        }
    }
}

/// `[reload] watch`: reload when the config file, or a file it names, changes (polled: cheap,
/// and it works for Kubernetes ConfigMap and Secret volumes, whose files are swapped by symlink).
///
/// The first fingerprint is taken before this returns, so before the returned future is
/// spawned: a change made once the proxy is listening (the earliest anyone can know it runs) is
/// never mistaken for the starting state.
pub(crate) async fn watch(
    reloader: Arc<Reloader>,
    every: Duration,
) -> impl std::future::Future<Output = ()> {
    reloader.remember_files().await;
    watch_from(reloader, every)
}

async fn watch_from(reloader: Arc<Reloader>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let now = reloader.fingerprint().await;
        if now != reloader.seen() {
            tracing::info!("watched files changed: reloading the config");
            let _ = reloader.reload().await;
            reloader.remember_files().await;
        }
    }
}

/// The config file and the files it names.
fn watched(path: &Path, proxy: &Proxy) -> Vec<PathBuf> {
    std::iter::once(path.to_path_buf())
        .chain(proxy.config.load().watched_files.iter().cloned())
        .collect()
}

/// Modification times (following symlinks) and sizes of the config and the files it names.
type Fingerprint = Vec<Option<(SystemTime, u64)>>;

/// Blocking: `stat`s every file.
fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    files
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

#[cfg(test)]
mod tests;
