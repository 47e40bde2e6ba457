//! What one config makes of the request path, built in one place ([`Snapshot::build`]) at start
//! and on every reload, and swapped whole: a request loads it once and sees one consistent set
//! of tenants, APIs, clients, limits, upstream, sharing and audit log.
//!
//! A reload passes the running snapshot as `previous`, and keeps from it what must survive
//! (the limiter's state, the upstream pool, the open audit file) when the new config leaves
//! their settings alone; token slots and tenant limiters come from registries keyed by tenant,
//! so rebuilt tenants keep theirs either way.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::{ApiBase, ApiTarget};
use crate::config::{Config, LimitBackend, MetricsConfig, DEFAULT_PROFILE};
use crate::hunting::HuntingRoutes;
use crate::inbound::{self, AuditLog, ServerTlsError};
use crate::metrics::Metrics;
use crate::ratelimit::{RateLimitInitError, RateLimiter};
use crate::rewrite::LinkBase;
use crate::routing::RouteTable;
use crate::share::Sharing;
use crate::tenant::{Profile, Tenant};
use crate::tls::TlsError;
use crate::token::{TokenBrokers, TokenInitError};
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
    /// Never with a validated config: the brokers are made for every tenant's app and cloud.
    #[error("no token broker for app `{0}` in cloud `{1}`")]
    NoBroker(String, String),
}

/// What outlives every snapshot: made once at start, shared by all the snapshots built after.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shared<'a> {
    /// Token brokers by (app, cloud), their slots by (tenant, scope).
    pub(crate) broker: &'a TokenBrokers,
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
                if p.config.ca_files() == config.ca_files()
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
            shared.broker.reconfigure(config)?;
        }
        Ok(Snapshot {
            routes: route_table(config, &apis, shared.broker, &limiter, shared.metrics)?,
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

/// The tenants' route table: each tenant with its app's and cloud's token broker and its
/// cloud's hosts of every API. Token slots, limiters and counters come from registries keyed by
/// tenant, so a rebuilt table (reload) keeps the state of tenants that did not change. `apis` is
/// `[cloud]`'s list ([`api_targets`]); the other clouds' lists are made here.
pub(crate) fn route_table(
    config: &Config,
    apis: &[Arc<ApiTarget>],
    brokers: &TokenBrokers,
    limiter: &RateLimiter,
    metrics: &Metrics,
) -> Result<RouteTable, BuildError> {
    let mut by_cloud: BTreeMap<&str, Vec<Arc<ApiTarget>>> = BTreeMap::new();
    by_cloud.insert(DEFAULT_PROFILE, apis.to_vec());
    let mut tenants = Vec::with_capacity(config.tenants.len());
    for tenant in &config.tenants {
        let (app, _) = config.app_of(tenant);
        let (cloud, _) = config.cloud_of(tenant);
        if !by_cloud.contains_key(cloud) {
            let targets = cloud_targets(config, cloud, metrics).ok_or(BuildError::ApiUrl)?;
            by_cloud.insert(cloud, targets);
        }
        let broker = brokers
            .of(app, cloud)
            .ok_or_else(|| BuildError::NoBroker(app.to_owned(), cloud.to_owned()))?;
        let apis = &by_cloud[cloud];
        let profile = Profile { app, cloud };
        tenants.push(Arc::new(Tenant::new(
            tenant, profile, apis, &broker, limiter, metrics,
        )));
    }
    Ok(RouteTable::new(
        tenants,
        config.routing.tenant_header.clone(),
        config.routing.default_tenant.as_deref(),
    ))
}

/// The APIs a config names, where `[cloud]` has them: `[cloud]`'s first, then each `[[api]]`.
pub(crate) fn api_targets(config: &Config, metrics: &Metrics) -> Option<Vec<Arc<ApiTarget>>> {
    cloud_targets(config, DEFAULT_PROFILE, metrics)
}

/// The same APIs, in the same order (a tenant's API index means the same API in every cloud),
/// where cloud profile `cloud` has them (`default`: `[cloud]`). `None` when one has no URL there,
/// which validation rules out for every profile a tenant uses.
fn cloud_targets(config: &Config, cloud: &str, metrics: &Metrics) -> Option<Vec<Arc<ApiTarget>>> {
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
    let default = config.cloud_named(cloud).unwrap_or(&config.cloud);
    std::iter::once(target(DEFAULT_API, None, &default.api, &default.scope))
        .chain(config.apis.iter().map(|a| {
            let (url, scope) = a.endpoint(Some(cloud))?;
            target(&a.name, Some(&a.prefix), url, scope)
        }))
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
