//! Why a request was not admitted, in words a client can act on, and the one error building the
//! limiter can have.

use std::time::Duration;

use super::gcra::WindowLimit;

/// A request the limiter did not admit: answer `429` with code `RateLimited` and
/// `Retry-After: {retry_after()}`. `Display` is the message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimited {
    /// Reject mode, over a limit.
    #[error("tenant rate limit reached ({limit}); retry after {} s", secs(*retry_after))]
    OverLimit {
        /// Time until the refusing window has a slot.
        retry_after: Duration,
        /// The limit that refused.
        limit: WindowLimit,
    },
    /// Queue mode, `max_queue` requests already waiting.
    #[error("too many requests are waiting for this tenant ({max_queue} queued); retry after {} s", secs(*retry_after))]
    QueueFull {
        /// Estimated time until the queue drains.
        retry_after: Duration,
        /// The configured bound.
        max_queue: usize,
    },
    /// Queue mode, the slot would come (or came) later than `max_wait`.
    #[error("the tenant's rate limit queue is longer than the {} s this request may wait; retry after {} s", max_wait.as_secs(), secs(*retry_after))]
    WaitTooLong {
        /// Time until a slot (estimated when the request gave up behind others).
        retry_after: Duration,
        /// The configured bound.
        max_wait: Duration,
    },
    /// The API answered 429 for this tenant (and route class); paused until then.
    #[error("the Defender API throttled this tenant; retry after {} s", secs(*retry_after))]
    Paused {
        /// Time left of the pause.
        retry_after: Duration,
    },
    /// The shared backend (Redis) is unreachable and `on_backend_error = "reject"`.
    #[error("the rate limit backend is unavailable; retry after {} s", secs(*retry_after))]
    BackendUnavailable {
        /// A short back-off.
        retry_after: Duration,
    },
}

impl RateLimited {
    /// `Retry-After` for the response: whole seconds, rounded up, at least 1 s.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs(secs(self.raw_retry_after()))
    }

    /// The `reason` label of `defender_proxy_ratelimit_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            RateLimited::OverLimit { .. } => "over_limit",
            RateLimited::QueueFull { .. } => "queue_full",
            RateLimited::WaitTooLong { .. } => "wait_too_long",
            RateLimited::Paused { .. } => "paused",
            RateLimited::BackendUnavailable { .. } => "backend_unavailable",
        }
    }

    fn raw_retry_after(&self) -> Duration {
        match self {
            RateLimited::OverLimit { retry_after, .. }
            | RateLimited::QueueFull { retry_after, .. }
            | RateLimited::WaitTooLong { retry_after, .. }
            | RateLimited::Paused { retry_after }
            | RateLimited::BackendUnavailable { retry_after } => *retry_after,
        }
    }
}

/// Whole seconds, rounded up, at least 1.
fn secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

/// The limiter could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitInitError {
    /// `rate_limit.backend` is not a URL the Redis client accepts.
    #[error("rate_limit.backend: invalid Redis URL {url}: {source}")]
    RedisUrl {
        /// The URL with any credentials removed.
        url: String,
        /// What the client said.
        source: redis::RedisError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{Window, WindowLimit};

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let limit = WindowLimit {
            max: 50,
            window: Window::Minute,
        };
        let e = |ms| RateLimited::OverLimit {
            retry_after: Duration::from_millis(ms),
            limit,
        };
        assert_eq!(e(0).retry_after(), Duration::from_secs(1));
        assert_eq!(e(1).retry_after(), Duration::from_secs(1));
        assert_eq!(e(1000).retry_after(), Duration::from_secs(1));
        assert_eq!(e(1001).retry_after(), Duration::from_secs(2));
        assert_eq!(
            e(1_333).to_string(),
            "tenant rate limit reached (50 per minute); retry after 2 s"
        );
        assert_eq!(e(1).reason(), "over_limit");
    }
}
