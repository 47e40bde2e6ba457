//! Per-tenant rate limiting that keeps every customer tenant inside Defender's limits.
//!
//! Each tenant has route classes (class 0: its own policy; then one per `[[rate_limit.route]]`),
//! each limited by two GCRA windows (per minute, per hour; see `gcra.rs` for why the parameters
//! hold for any window alignment), with a FIFO queue or immediate rejection, and a pause after the
//! API's own 429. State lives in this process ([`LimitBackend::Local`], on governor) or in Redis,
//! shared by replicas (one Lua script per decision, falling back per `on_backend_error`).
//!
//! The proxy's use: at configuration time `RateLimiter::new(&config.rate_limit)` and, per tenant,
//! `limiter.tenant(&t.id, &t.rate_limit)`; per request `t.admit(t.class_of(path)).await` before
//! sending upstream (`Err` -> 429 with `Retry-After`), and `t.upstream_throttled(class, header)`
//! when the API answers 429.
//!
//! # Layout
//! - `gcra`: window parameters; `local`: the governor decision; `redis_backend`: the shared one.
//! - `tenant`: [`TenantLimiter`], classes, pause, queue; `pause`: `Retry-After` and pauses;
//!   `verdict`: what one decision said (either backend's).
//! - `error`: [`RateLimited`]; [`metrics`]: counters and their rendering; `testkit`: redis-server
//!   for tests; `usage`: limits and their use, for the tenant status.

mod error;
mod gcra;
mod local;
pub mod metrics;
mod pause;
mod redis_backend;
mod tenant;
#[doc(hidden)]
pub mod testkit;
mod usage;
mod verdict;

#[cfg(test)]
mod redis_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

pub use error::{RateLimitInitError, RateLimited};
pub use gcra::{Window, WindowLimit};
pub use tenant::{Admission, TenantLimiter};

/// A tenant's route class, as [`TenantLimiter::class_of`] finds it for a path: 0 (the tenant's
/// own limits), then one per `[[rate_limit.route]]` in config order. A type of its own, so it
/// cannot be mistaken for another index (an API's) on its way through the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteClass(pub(crate) u16);

impl RouteClass {
    /// The tenant's own limits: what a path no route matches gets.
    pub const DEFAULT: RouteClass = RouteClass(0);
}

use crate::config::{LimitBackend, LimitPolicy, RateLimitConfig, Windows};
use crate::sync::LockExt;
use redis_backend::{RedisBackend, RedisClass};
use tenant::ClassState;

/// The proxy's rate limiter: builds and keeps one [`TenantLimiter`] per tenant. Cheap to clone
/// (shared state behind an `Arc`).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
}

/// What every tenant limiter of one `RateLimiter` shares.
pub(crate) struct Shared {
    routes: Arc<RouteTable>,
    backend: Backend,
    /// Origin of the pauses' millisecond clock.
    base: Instant,
    fallback_decisions: AtomicU64,
    /// Tenant id -> its limiter, so that asking again with the same policy (a reload that didn't
    /// change the tenant) returns the same limiter and its state.
    tenants: Mutex<HashMap<Box<str>, Arc<TenantLimiter>>>,
}

impl std::fmt::Debug for Shared {
    // Not the tenant map: with thousands of tenants a debug print would be megabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenants = self.tenants.lock().map_or(0, |t| t.len());
        f.debug_struct("Shared")
            .field("backend", &self.backend)
            .field("routes", &self.routes.classes.len())
            .field("tenants", &tenants)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub(crate) enum Backend {
    Local,
    Redis(Box<RedisBackend>),
}

/// Route classes by prefix, longest first.
#[derive(Debug)]
pub(crate) struct RouteTable {
    /// (lower-case prefix without trailing `/`, class index, windows), longest prefix first.
    by_length: Vec<(Box<str>, RouteClass)>,
    /// Windows of class i (from 1) at `[i - 1]`, and the configured prefix (the Redis key part).
    classes: Vec<(Windows, Box<str>)>,
}

impl RouteTable {
    fn new(config: &RateLimitConfig) -> Self {
        let mut by_length: Vec<(Box<str>, RouteClass)> = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let prefix = r.path_prefix.trim_end_matches('/').to_ascii_lowercase();
                // Past u16::MAX routes (no config has them) a route gets the tenant's own limits.
                let class = u16::try_from(i + 1).map_or(RouteClass(u16::MAX), RouteClass);
                (prefix.into(), class)
            })
            .collect();
        // Longest first; for equal prefixes the first configured wins (stable sort).
        by_length.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        let classes = config
            .routes
            .iter()
            .map(|r| (r.windows, r.path_prefix.to_ascii_lowercase().into()))
            .collect();
        Self { by_length, classes }
    }

    fn class_of(&self, path: &str) -> RouteClass {
        // The same whole-segment, case-insensitive rule as API prefixes: one matcher for both.
        self.by_length
            .iter()
            .find(|(prefix, _)| crate::config::strip_api_prefix(prefix, path).is_some())
            .map_or(RouteClass::DEFAULT, |(_, class)| *class)
    }
}

impl RateLimiter {
    /// Builds the limiter from `[rate_limit]`. No I/O: a Redis backend connects on first use.
    pub fn new(config: &RateLimitConfig) -> Result<Self, RateLimitInitError> {
        let backend = match &config.backend {
            LimitBackend::Local => Backend::Local,
            LimitBackend::Redis(redis) => Backend::Redis(Box::new(RedisBackend::new(redis)?)),
        };
        Ok(Self {
            shared: Arc::new(Shared {
                routes: Arc::new(RouteTable::new(config)),
                backend,
                base: Instant::now(),
                fallback_decisions: AtomicU64::new(0),
                tenants: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The limiter of one tenant, with `policy` for class 0 and the route classes of the
    /// configuration given to [`RateLimiter::new`]. The same `Arc` comes back for the same tenant
    /// id and policy, so a reload keeps the state (and queue) of unchanged tenants; a changed
    /// policy starts a fresh limiter (requests already queued on the old one finish there).
    pub fn tenant(&self, tenant_id: &str, policy: &LimitPolicy) -> Arc<TenantLimiter> {
        // A poisoned lock only means another thread panicked while inserting; the map is fine.
        let mut tenants = self.shared.tenants.locked();
        if let Some(existing) = tenants.get(tenant_id) {
            if existing.policy == *policy {
                return Arc::clone(existing);
            }
        }
        let limiter = Arc::new(self.build(tenant_id, policy));
        tenants.insert(tenant_id.into(), Arc::clone(&limiter));
        limiter
    }

    /// Forgets the tenants for which `keep` says false (after a reload removed them), so their
    /// state does not stay in memory. Limiters still in use elsewhere keep working.
    pub fn retain_tenants(&self, keep: impl Fn(&str) -> bool) {
        let mut tenants = self.shared.tenants.locked();
        tenants.retain(|id, _| keep(id));
    }

    /// Failed or timed-out calls to the Redis backend so far (0 with the local backend).
    pub fn backend_errors(&self) -> u64 {
        match &self.shared.backend {
            Backend::Local => 0,
            Backend::Redis(redis) => redis.errors(),
        }
    }

    /// Decisions taken by the local fallback because Redis was unreachable.
    pub fn fallback_decisions(&self) -> u64 {
        self.shared.fallback_decisions.load(Ordering::Relaxed)
    }

    fn build(&self, tenant_id: &str, policy: &LimitPolicy) -> TenantLimiter {
        // With Redis, the local limiters are the fallback: each replica's share of the limits.
        let redis_share = match &self.shared.backend {
            Backend::Local => None,
            Backend::Redis(redis) => Some(redis.replicas),
        };
        let class = |windows: &Windows, name: &str| {
            let params = gcra::derive(windows, NonZeroU32::MIN);
            match redis_share {
                None => ClassState::new(params, &params, None),
                Some(share) => {
                    let fallback = gcra::derive(windows, share);
                    let redis = RedisClass::new(tenant_id, name, params);
                    ClassState::new(params, &fallback, Some(redis))
                }
            }
        };
        let routes = &self.shared.routes;
        TenantLimiter {
            tenant_id: tenant_id.into(),
            policy: policy.clone(),
            default: class(&policy.windows, "default"),
            route_classes: routes
                .classes
                .iter()
                .map(|(windows, prefix)| class(windows, prefix))
                .collect(),
            routes: Arc::clone(routes),
            shared: Arc::clone(&self.shared),
            stats: Default::default(),
        }
    }
}
