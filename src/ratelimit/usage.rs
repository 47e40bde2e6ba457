//! What a tenant's limiter says about itself for the tenant status: per window of every route
//! class its limit and how much of it is used, the queue and the pause. Read-only: no decision,
//! no Redis call.
//!
//! Small on purpose: when exact windows replace the GCRA (issue 17), only how `used` is read
//! changes.

use std::time::Duration;

use super::gcra::WindowLimit;
use super::{Backend, TenantLimiter};

/// One window of one route class, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowUsage<'a> {
    /// `default` for the tenant's own limits (class 0), else the `[[rate_limit.route]]` prefix.
    pub(crate) class: &'a str,
    pub(crate) limit: WindowLimit,
    /// How much of `limit` is used now; `None` with the Redis backend. See
    /// [`TenantLimiter::usage`].
    pub(crate) used: Option<u32>,
}

/// A tenant's limits and their use, now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LimitUsage<'a> {
    /// `local` or `redis`.
    pub(crate) backend: &'static str,
    /// Class 0's minute and hour windows, then each route class's, where limited.
    pub(crate) windows: Vec<WindowUsage<'a>>,
    /// Requests waiting in the tenant's queues (all classes).
    pub(crate) queued: usize,
    /// Time left of the longest pause after an upstream 429 (any class); `None` when not paused.
    pub(crate) paused_for: Option<Duration>,
}

impl TenantLimiter {
    /// The tenant's limits and their use now.
    ///
    /// `used`, local backend: an estimate from the GCRA state, the cells not yet drained
    /// (`ceil((TAT - now) / T)`, see `LocalWindows::used`): of the window's limit, `limit - used`
    /// requests would pass within one window from now. It is at most the burst, not the limit:
    /// the GCRA paces the rest rather than counting them. Redis backend: `None`, as the state is
    /// Redis's, shared by the replicas, and reading it would cost a Redis call per status; the
    /// local fallback only decides during an outage, on its share of the limits, so its view
    /// would mislead. The limits are the configured (shared) ones with either backend.
    ///
    /// A pause another replica set is seen here once a decision of this replica met it.
    pub(crate) fn usage(&self) -> LimitUsage<'_> {
        let local = matches!(self.shared.backend, Backend::Local);
        let names = std::iter::once("default").chain(self.routes.classes.iter().map(|c| &*c.1));
        let mut windows = Vec::new();
        for (class, name) in self.classes().zip(names) {
            let used = class.local.used();
            for (params, used) in class.params.iter().zip(used) {
                if let Some(params) = params {
                    windows.push(WindowUsage {
                        class: name,
                        limit: params.limit,
                        used: used.filter(|_| local).map(|(_, n)| n),
                    });
                }
            }
        }
        let paused = self.paused_remaining();
        LimitUsage {
            backend: if local { "local" } else { "redis" },
            windows,
            queued: self.queue_length(),
            paused_for: (!paused.is_zero()).then_some(paused),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::num::NonZeroU32;

    use super::super::tests::{policy, windows};
    use super::super::{RateLimitConfig, RateLimiter, RouteClass, Window};
    use super::*;
    use crate::config::{LimitBackend, LimitMode, OnBackendError, RedisBackendConfig, RouteLimit};

    fn config(backend: LimitBackend) -> RateLimitConfig {
        RateLimitConfig {
            defaults: policy(windows(50, 1500, 0), LimitMode::Queue, 30, 200),
            routes: vec![RouteLimit {
                path_prefix: "/api/Machines".into(),
                windows: windows(20, 0, 0),
            }],
            backend,
        }
    }

    fn used<'a>(usage: &LimitUsage<'a>) -> Vec<(&'a str, Window, u32, Option<u32>)> {
        let w = usage.windows.iter();
        w.map(|w| (w.class, w.limit.window, w.limit.max, w.used))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn used_counts_admissions_and_drains_at_the_emission_interval() {
        let limiter = RateLimiter::new(&config(LimitBackend::Local)).unwrap();
        // 10/min burst 5 (T = 60 s / 5 = 12 s); 100/h, burst max(5, 10) = 10 (T = 40 s).
        let t = limiter.tenant(
            "t",
            &policy(windows(10, 100, 5), LimitMode::Reject, 30, 200),
        );
        let usage = t.usage();
        assert_eq!(usage.backend, "local");
        assert_eq!(
            used(&usage),
            [
                ("default", Window::Minute, 10, Some(0)),
                ("default", Window::Hour, 100, Some(0)),
                ("/api/machines", Window::Minute, 20, Some(0)),
            ]
        );
        for _ in 0..3 {
            t.admit(RouteClass::DEFAULT).await.unwrap();
        }
        t.admit(RouteClass(1)).await.unwrap();
        let usage = t.usage();
        assert_eq!(
            used(&usage).iter().map(|w| w.3).collect::<Vec<_>>(),
            [Some(3), Some(3), Some(1)]
        );
        assert_eq!((usage.queued, usage.paused_for), (0, None));

        // One minute cell drains every 12 s, an hour cell every 40 s.
        tokio::time::advance(Duration::from_secs(12)).await;
        let usage = t.usage();
        assert_eq!(
            used(&usage).iter().map(|w| w.3).collect::<Vec<_>>(),
            [Some(2), Some(3), Some(0)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn used_stops_at_the_burst_when_refused() {
        let limiter = RateLimiter::new(&config(LimitBackend::Local)).unwrap();
        let t = limiter.tenant("t", &policy(windows(10, 0, 5), LimitMode::Reject, 30, 200));
        for _ in 0..5 {
            t.admit(RouteClass::DEFAULT).await.unwrap();
        }
        t.admit(RouteClass::DEFAULT).await.unwrap_err();
        assert_eq!(t.usage().windows[0].used, Some(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_is_shown_until_it_ends() {
        let limiter = RateLimiter::new(&config(LimitBackend::Local)).unwrap();
        let t = limiter.tenant("t", &policy(windows(10, 0, 5), LimitMode::Reject, 30, 200));
        t.hold(RouteClass(1), Duration::from_secs(30));
        assert_eq!(t.usage().paused_for, Some(Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(t.usage().paused_for, None);
    }

    #[tokio::test(start_paused = true)]
    async fn with_redis_the_limits_are_the_shared_ones_and_used_is_unknown() {
        // No I/O: the backend connects on its first decision, and `usage` makes none.
        let redis = LimitBackend::Redis(RedisBackendConfig {
            url: "redis://127.0.0.1:9".into(),
            password: None,
            on_error: OnBackendError::Local,
            replicas: NonZeroU32::new(2).unwrap(),
        });
        let limiter = RateLimiter::new(&config(redis)).unwrap();
        let t = limiter.tenant(
            "t",
            &policy(windows(10, 100, 5), LimitMode::Reject, 30, 200),
        );
        let usage = t.usage();
        assert_eq!(usage.backend, "redis");
        assert_eq!(
            used(&usage),
            [
                ("default", Window::Minute, 10, None),
                ("default", Window::Hour, 100, None),
                ("/api/machines", Window::Minute, 20, None),
            ]
        );
    }
}
