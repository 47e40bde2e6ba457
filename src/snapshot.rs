//! What one config makes of the request path, built in one place ([`Snapshot::build`]) at start
//! and on every reload, and swapped whole: a request loads it once and sees one consistent set
//! of tenants, APIs, clients, limits, upstream, sharing and audit log.
//!
//! A reload passes the running snapshot as `previous`, and keeps from it what must survive
//! (the limiter's state, the upstream pool, the open audit file) when the new config leaves
//! their settings alone; token slots and tenant limiters come from registries keyed by tenant,
//! so rebuilt tenants keep theirs either way.

use std::sync::Arc;

use crate::api::{ApiBase, ApiTarget};
use crate::config::{Config, LimitBackend, MetricsConfig};
use crate::hunting::HuntingRoutes;
use crate::inbound::{self, AuditLog, ServerTlsError};
use crate::metrics::Metrics;
use crate::ratelimit::{RateLimitInitError, RateLimiter};
use crate::rewrite::LinkBase;
use crate::routing::RouteTable;
use crate::share::Sharing;
use crate::tenant::Tenant;
use crate::tls::TlsError;
use crate::token::{TokenBroker, TokenInitError};
use crate::upstream::Upstream;

/// The name of `[cloud]`'s API (labels, logs); no `[[api]]` may take it.
const DEFAULT_API: &str = "default";

/// What one config makes of the request path, swapped whole on reload: a request loads it once
/// and sees one consistent set of tenants, clients, limits and upstream.
#[derive(Debug)]
pub struct Snapshot {
    pub routes: RouteTable,
    /// Clients, CORS and request limits.
    pub inbound: inbound::Policy,
    pub upstream: Upstream,
    /// Index 0: `[cloud]`'s API; then each `[[api]]` in config order. Every tenant holds each
    /// of them in its own [`TenantApi`] (with its token), in this order.
    pub apis: Vec<Arc<ApiTarget>>,
    /// Scheme of links back to the proxy (`https` with `[listen.tls]`).
    pub link_scheme: &'static str,
    /// `[listen] public_url`: the base of links back to the proxy when it sits behind another.
    pub public_url: Option<Box<str>>,
    pub audit: Option<AuditLog>,
    /// Builds the tenants' limiters; also read for its metrics.
    pub limiter: RateLimiter,
    /// The cache and the coalescing flights (see [`crate::share`]).
    pub share: Sharing,
    /// `[metrics]`: read by requests (which histograms to feed) and by `/metrics`.
    pub metrics: MetricsConfig,
    /// `[advanced_hunting]`: which legacy hunting requests go through Graph.
    pub(crate) hunting: HuntingRoutes,
}

/// Why a config could not be made into a running proxy (at start, or on reload: then the
/// running one stays).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
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
}

/// What outlives every snapshot: made once at start, shared by all the snapshots built after.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shared<'a> {
    /// Token slots by (tenant, scope).
    pub(crate) broker: &'a TokenBroker,
    /// The counters, by tenant and API.
    pub(crate) metrics: &'a Metrics,
}

/// The running snapshot a reload replaces, and the config it was built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Previous<'a> {
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) config: &'a Config,
}

impl Snapshot {
    /// Everything `config` makes, reusing what `previous` (on reload) has and the new config
    /// does not change. On reload it also gives the token broker the new app credentials and
    /// cloud: the last fallible step, so a build that fails leaves nothing changed but that.
    pub(crate) fn build(
        config: &Config,
        shared: Shared<'_>,
        previous: Option<Previous<'_>>,
    ) -> Result<Snapshot, BuildError> {
        let limiter = match previous {
            Some(p) if same_limiter(p.config, config) => p.snapshot.limiter.clone(),
            Some(_) => {
                tracing::info!("rate-limit routes or backend changed: limiter state starts afresh");
                RateLimiter::new(&config.rate_limit)?
            }
            None => RateLimiter::new(&config.rate_limit)?,
        };
        // The pool is keyed by host, so a changed API URL needs no new client; trust roots and
        // the connect timeout do. The pool (and its open connections) survives unless the
        // connector itself changes.
        let upstream = match previous {
            Some(p)
                if p.config.cloud.ca == config.cloud.ca
                    && p.config.upstream.connect_timeout == config.upstream.connect_timeout =>
            {
                p.snapshot.upstream.with_timeouts(&config.upstream)
            }
            _ => Upstream::new(config)?,
        };
        let audit = match previous {
            Some(p) if p.config.audit == config.audit => p.snapshot.audit.clone(),
            _ => config
                .audit
                .as_ref()
                .map(AuditLog::open)
                .transpose()
                .map_err(BuildError::Audit)?,
        };
        let apis = api_targets(config, shared.metrics).ok_or(BuildError::ApiUrl)?;
        if previous.is_some() {
            shared
                .broker
                .reconfigure(&config.app, &config.cloud, &config.upstream)?;
        }
        Ok(Snapshot {
            routes: route_table(config, &apis, shared.broker, &limiter, shared.metrics),
            inbound: inbound::Policy::from_config(config),
            upstream,
            apis,
            // Whether the listener speaks TLS is fixed until a restart (see `reload`).
            link_scheme: previous.map_or(
                if config.listen.tls.is_some() {
                    "https"
                } else {
                    "http"
                },
                |p| p.snapshot.link_scheme,
            ),
            public_url: config.listen.public_url.as_deref().map(Box::from),
            audit,
            limiter,
            share: Sharing::new(&config.cache),
            metrics: config.metrics,
            hunting: HuntingRoutes::new(&config.hunting, &config.apis),
        })
    }
}

fn same_limiter(old: &Config, new: &Config) -> bool {
    let backend_same = match (&old.rate_limit.backend, &new.rate_limit.backend) {
        (LimitBackend::Local, LimitBackend::Local) => true,
        // The password is compared as a secret (see `RedisBackendConfig`'s `PartialEq`).
        (LimitBackend::Redis(a), LimitBackend::Redis(b)) => a == b,
        _ => false,
    };
    backend_same && old.rate_limit.routes == new.rate_limit.routes
}

/// The tenants' route table. Token slots, limiters and counters come from registries keyed by
/// tenant, so a rebuilt table (reload) keeps the state of tenants that did not change.
pub(crate) fn route_table(
    config: &Config,
    apis: &[Arc<ApiTarget>],
    broker: &TokenBroker,
    limiter: &RateLimiter,
    metrics: &Metrics,
) -> RouteTable {
    let tenants = config
        .tenants
        .iter()
        .map(|t| Arc::new(Tenant::new(t, apis, broker, limiter, metrics)))
        .collect();
    RouteTable::new(
        tenants,
        config.routing.tenant_header.clone(),
        config.routing.default_tenant.as_deref(),
    )
}

/// The APIs a config names: `[cloud]`'s first, then each `[[api]]`.
pub(crate) fn api_targets(config: &Config, metrics: &Metrics) -> Option<Vec<Arc<ApiTarget>>> {
    let target = |name: &str, prefix: Option<&str>, uri: &http::Uri, scope: &str| {
        let base = ApiBase::from_uri(uri)?;
        let links = LinkBase::new(&format!("{}://{}", base.scheme, base.authority));
        Some(Arc::new(ApiTarget {
            name: Arc::from(name),
            prefix: prefix.map(Box::from),
            base,
            links,
            latency: metrics.api(name),
            scope: Box::from(scope),
        }))
    };
    std::iter::once(target(
        DEFAULT_API,
        None,
        &config.cloud.api,
        &config.cloud.scope,
    ))
    .chain(
        config
            .apis
            .iter()
            .map(|a| target(&a.name, Some(&a.prefix), &a.url, &a.scope)),
    )
    .collect()
}

/// The start-time warnings of a config: an unauthenticated listener off loopback, and the
/// config's own findings. Logged at start (`app`, which every start path goes through, so no
/// path can start without them) and on every reload.
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
