//! Hot reload: a new config replaces the running one atomically, or not at all.
//!
//! A reload builds a complete new [`Snapshot`] next to the running one (reusing what did not
//! change: token slots, tenant limiters, the upstream connection pool, the audit file), then
//! swaps it in with one store. Requests in flight keep the snapshot they loaded; connections are
//! never touched. What a running listener cannot change (addresses, whether it speaks TLS, its
//! connection limits) is kept and logged as needing a restart. TLS certificates are re-read on
//! every reload, so rotated files take effect for new handshakes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{self, Config, LimitBackend};
use crate::inbound::{self, AuditLog};
use crate::proxy::{Proxy, Snapshot};
use crate::ratelimit::RateLimiter;
use crate::server::{route_table, StartError};
use crate::upstream::Upstream;

/// Why a reload did not take effect (the running config stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new config is invalid:\n{0}")]
    Invalid(#[from] config::ConfigErrors),
    /// The same failures that would stop a start (TLS files, keys, the audit file, Redis URL).
    #[error(transparent)]
    Build(#[from] StartError),
}

/// Read `path`, validate it, and apply it; logs and counts the result either way.
pub fn reload_file(proxy: &Proxy, path: &Path) -> Result<(), ReloadError> {
    let result = config::load_file(path)
        .map_err(ReloadError::from)
        .and_then(|new| apply(proxy, new));
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

/// Replace the running config with `new` (already validated).
pub fn apply(proxy: &Proxy, new: Config) -> Result<(), ReloadError> {
    let old = proxy.config.load_full();
    let current = proxy.snapshot.load_full();
    warn_restart_only(&old, &new);
    crate::server::log_config_warnings(&new);

    // Build everything first; nothing is swapped until all of it succeeded.
    let limiter = if same_limiter(&old, &new) {
        current.limiter.clone()
    } else {
        tracing::info!("rate-limit routes or backend changed: limiter state starts afresh");
        RateLimiter::new(&new.rate_limit).map_err(StartError::from)?
    };
    // The pool is keyed by host, so a changed API URL needs no new client; trust roots and
    // timeouts do.
    // The pool (and its open connections) survives unless the connector itself changes.
    let upstream = if old.cloud.ca == new.cloud.ca
        && old.upstream.connect_timeout == new.upstream.connect_timeout
    {
        current.upstream.with_timeouts(&new.upstream)
    } else {
        Upstream::new(&new).map_err(StartError::from)?
    };
    let audit = if old.audit == new.audit {
        current.audit.clone()
    } else {
        new.audit
            .as_ref()
            .map(AuditLog::open)
            .transpose()
            .map_err(StartError::Audit)?
    };
    let tls = match (&proxy.listen.tls, &new.listen.tls) {
        (Some(_), Some(tls)) => Some(inbound::tls::server_config(tls).map_err(StartError::from)?),
        _ => None,
    };
    let apis = crate::server::api_targets(&new, &proxy.metrics).ok_or(StartError::ApiUrl)?;
    proxy
        .broker
        .reconfigure(&new.app, &new.cloud, &new.upstream)
        .map_err(StartError::from)?;

    let snapshot = Snapshot {
        routes: route_table(&new, &proxy.broker, &limiter, &proxy.metrics),
        inbound: inbound::Policy::from_config(&new),
        upstream,
        apis,
        link_scheme: current.link_scheme,
        public_url: new.listen.public_url.as_deref().map(Box::from),
        audit,
        limiter: limiter.clone(),
        share: crate::share::Sharing::new(&new.cache),
        metrics: new.metrics,
    };
    proxy.snapshot.store(Arc::new(snapshot));
    if let (Some(acceptor), Some(tls)) = (&proxy.listen.tls, tls) {
        acceptor.swap(tls);
    }
    // Forget the state of tenants that are gone.
    let ids: std::collections::HashSet<&str> = new.tenants.iter().map(|t| t.id.as_str()).collect();
    limiter.retain_tenants(|id| ids.contains(id));
    proxy.broker.prune_unused();
    proxy.config.store(Arc::new(new));
    Ok(())
}

fn same_limiter(old: &Config, new: &Config) -> bool {
    let backend_same = match (&old.rate_limit.backend, &new.rate_limit.backend) {
        (LimitBackend::Local, LimitBackend::Local) => true,
        (LimitBackend::Redis(a), LimitBackend::Redis(b)) => {
            use secrecy::ExposeSecret as _;
            a.url == b.url
                && a.on_error == b.on_error
                && a.replicas == b.replicas
                && a.password.as_ref().map(|p| p.expose_secret().to_owned())
                    == b.password.as_ref().map(|p| p.expose_secret().to_owned())
        }
        _ => false,
    };
    backend_same && old.rate_limit.routes == new.rate_limit.routes
}

/// Settings a running listener cannot take over.
fn warn_restart_only(old: &Config, new: &Config) {
    let mut changed = Vec::new();
    if old.listen.addr != new.listen.addr {
        changed.push("listen.addr");
    }
    if old.admin.addr != new.admin.addr {
        changed.push("admin.addr");
    }
    if old.listen.tls.is_some() != new.listen.tls.is_some() {
        changed.push("listen.tls (on/off)");
    }
    if old.listen.limits != new.listen.limits {
        changed.push("listen limits");
    }
    if !changed.is_empty() {
        tracing::warn!(settings = ?changed, "these settings take effect only after a restart");
    }
}

/// Reload on every SIGHUP until the process ends. The handler is installed here, before the
/// returned future is spawned: a SIGHUP sent once the proxy listens never meets the default
/// action (which would end the process).
#[cfg(unix)]
pub fn on_sighup(proxy: Arc<Proxy>, path: PathBuf) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let hangups = signal(SignalKind::hangup());
    async move {
        let Ok(mut hangups) = hangups else {
            tracing::warn!("cannot listen for SIGHUP; reload by restarting");
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            let _ = reload_file(&proxy, &path);
        }
    }
}

/// `[reload] watch`: reload when the config file, or a file it names, changes (polled: cheap,
/// and it works for Kubernetes ConfigMap and Secret volumes, whose files are swapped by symlink).
///
/// The first fingerprint is taken here, before the returned future is spawned: a change made
/// once the proxy is listening (the earliest anyone can know it runs) is never mistaken for
/// the starting state.
pub fn watch(
    proxy: Arc<Proxy>,
    path: PathBuf,
    every: Duration,
) -> impl std::future::Future<Output = ()> {
    let seen = fingerprint(&proxy, &path);
    watch_from(proxy, path, every, seen)
}

async fn watch_from(
    proxy: Arc<Proxy>,
    path: PathBuf,
    every: Duration,
    mut seen: Vec<Option<(SystemTime, u64)>>,
) {
    loop {
        tokio::time::sleep(every).await;
        let now = fingerprint(&proxy, &path);
        if now != seen {
            tracing::info!("watched files changed: reloading the config");
            let _ = reload_file(&proxy, &path);
            seen = fingerprint(&proxy, &path);
        }
    }
}

/// Modification times (following symlinks) and sizes of the config and the files it names.
fn fingerprint(proxy: &Proxy, path: &Path) -> Vec<Option<(SystemTime, u64)>> {
    let config = proxy.config.load();
    std::iter::once(path.to_path_buf())
        .chain(config.watched_files.iter().cloned())
        .map(|p| {
            std::fs::metadata(&p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}
