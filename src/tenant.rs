//! The runtime tenant: one configured customer tenant as the hot path sees it, owning what it
//! uses per API (token slot, request counters), its limits and its counters. Made by the
//! snapshot from the config; the state inside (token slots, limiters, counters) comes from
//! registries keyed by tenant, so a tenant rebuilt on reload keeps it.

use std::borrow::Cow;
use std::sync::Arc;

use crate::api::ApiTarget;
use crate::config::{TenantConfig, TenantSource};
use crate::metrics::{Metrics, StatusCounts, TenantMetrics, WarningCounts};
use crate::ratelimit::{RateLimiter, TenantLimiter};
use crate::token::{TokenBroker, TokenSlot};

/// One configured tenant as the hot path sees it.
#[derive(Debug)]
pub struct Tenant {
    pub name: Arc<str>,
    /// Lower-case tenant id (the token's `tid`).
    pub id: Arc<str>,
    /// The app its tokens are issued to and the cloud it lives in, by config name (`default`
    /// for `[app]` and `[cloud]`): for logs, metrics and `check`.
    pub app: Arc<str>,
    pub cloud: Arc<str>,
    /// The file it is written in (the admin API changes only the tenants file's).
    pub source: TenantSource,
    /// Token cache and request counters, one per API (index 0: `[cloud]`'s, then each
    /// `[[api]]` in order, as the snapshot's API targets).
    pub apis: Box<[TenantApi]>,
    /// This tenant's rate limits (per route class), queue and upstream pauses.
    pub limits: Arc<TenantLimiter>,
    /// This tenant's request counters.
    pub metrics: Arc<TenantMetrics>,
}

/// Which app and cloud profile a tenant uses, by config name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Profile<'a> {
    pub(crate) app: &'a str,
    pub(crate) cloud: &'a str,
}

/// One API as one tenant uses it.
#[derive(Debug)]
pub struct TenantApi {
    /// Where it is and how its links are spelled (shared by every tenant).
    pub target: Arc<ApiTarget>,
    /// The token for the API's scope (APIs with the same scope share one slot).
    pub token: Arc<TokenSlot>,
    /// This tenant's responses on this API, by status.
    pub requests: Arc<StatusCounts>,
    /// The API's own warnings on this tenant's responses (throttle headers, `Retry-After`,
    /// partial answers).
    pub warnings: Arc<WarningCounts>,
}

impl Tenant {
    /// `config`'s tenant with one [`TenantApi`] per API of `apis` (its cloud's), in their order,
    /// each with a token slot of `broker` (its app's on its cloud's authority).
    pub(crate) fn new(
        config: &TenantConfig,
        profile: Profile<'_>,
        apis: &[Arc<ApiTarget>],
        broker: &TokenBroker,
        limiter: &RateLimiter,
        metrics: &Metrics,
    ) -> Tenant {
        let metrics = metrics.tenant(&config.name);
        Tenant {
            name: Arc::from(config.name.as_str()),
            id: Arc::from(config.id.as_str()),
            app: Arc::from(profile.app),
            cloud: Arc::from(profile.cloud),
            source: config.source,
            apis: apis
                .iter()
                .map(|target| {
                    let counters = metrics.api(&target.name);
                    TenantApi {
                        token: broker.slot(&config.id, &target.scope),
                        requests: counters.requests,
                        warnings: counters.warnings,
                        target: target.clone(),
                    }
                })
                .collect(),
            limits: limiter.tenant(&config.id, &config.rate_limit),
            metrics,
        }
    }
}

/// Which of `apis` (a tenant's own, `[cloud]`'s first) a path selects, and the path to send it:
/// an `[[api]]` whose prefix starts the path, else the default API with the path unchanged.
pub(crate) fn select_api<'a>(apis: &[TenantApi], path: &'a str) -> (usize, Cow<'a, str>) {
    for (i, api) in apis.iter().enumerate().skip(1) {
        if let Some(rest) = api.target.strip(path) {
            let rest = if rest.is_empty() {
                Cow::Borrowed("/")
            } else if rest.starts_with('?') {
                Cow::Owned(format!("/{rest}"))
            } else {
                Cow::Borrowed(rest)
            };
            return (i, rest);
        }
    }
    (0, Cow::Borrowed(path))
}
