//! The `rate_limit` of a tenant status: per window of every route class its limit and use, the
//! queue, the pause. From `TenantLimiter::usage`, which says what `used` means per backend.

use serde::Serialize;
use tokio::time::Instant;

use super::Time;
use crate::ratelimit::{TenantLimiter, Window};

/// The tenant's limits, now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RateLimitStatus {
    /// `local` or `redis`: what `used` is read from.
    pub(crate) backend: &'static str,
    /// The tenant's own minute and hour windows (class `default`), then each route class's.
    pub(crate) windows: Vec<WindowStatus>,
    /// Requests waiting for their slot (all classes).
    pub(crate) queued: usize,
    /// Until when a class is paused after the API's 429 (the longest); `null` when none is.
    pub(crate) paused_until: Option<Time>,
}

/// One window of one route class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct WindowStatus {
    /// `default`, or the `[[rate_limit.route]]` prefix.
    pub(crate) class: String,
    /// `minute` or `hour`.
    pub(crate) window: &'static str,
    /// Requests allowed per window.
    pub(crate) limit: u32,
    /// How many of them are used now: an estimate with the local backend (GCRA cells not yet
    /// drained), `null` with Redis.
    pub(crate) used: Option<u32>,
}

impl RateLimitStatus {
    pub(crate) fn of(limiter: &TenantLimiter) -> RateLimitStatus {
        let usage = limiter.usage();
        let windows = usage.windows.iter().map(|w| WindowStatus {
            class: w.class.to_owned(),
            window: match w.limit.window {
                Window::Minute => "minute",
                Window::Hour => "hour",
            },
            limit: w.limit.max,
            used: w.used,
        });
        RateLimitStatus {
            backend: usage.backend,
            windows: windows.collect(),
            queued: usage.queued,
            paused_until: usage.paused_for.map(|d| Time::of(Instant::now() + d)),
        }
    }
}
