//! Pauses after an upstream 429: reading the API's `Retry-After` (seconds or an HTTP date) and
//! holding "this class is paused until t" where the hot path reads it without a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// Pause when the API sends 429 without a usable `Retry-After`.
pub(crate) const DEFAULT_PAUSE: Duration = Duration::from_secs(10);
/// Longest pause we honour: a bogus header must not silence a tenant for a day.
pub(crate) const MAX_PAUSE: Duration = Duration::from_secs(300);
/// Shortest pause: a 429 with `Retry-After: 0` still means "slow down".
pub(crate) const MIN_PAUSE: Duration = Duration::from_secs(1);

/// How long to pause for a `Retry-After` header value (delta-seconds or HTTP date, RFC 9110).
pub(crate) fn pause_for(retry_after: Option<&http::HeaderValue>) -> Duration {
    let parsed = retry_after
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|v| match v.parse::<u64>() {
            Ok(secs) => Some(Duration::from_secs(secs.min(MAX_PAUSE.as_secs()))),
            Err(_) => httpdate::parse_http_date(v).ok().map(|at| {
                // A date in the past means "now": the minimum pause.
                at.duration_since(SystemTime::now()).unwrap_or_default()
            }),
        });
    parsed.unwrap_or(DEFAULT_PAUSE).clamp(MIN_PAUSE, MAX_PAUSE)
}

/// "Paused until": milliseconds since the limiter's base instant, 0 for never paused. An atomic
/// so that every request can check it before its GCRA decision without a lock.
#[derive(Debug, Default)]
pub(crate) struct Pause {
    until_ms: AtomicU64,
}

impl Pause {
    /// Extends the pause to `until` (never shortens it: a later 429 may say less than an earlier).
    pub(crate) fn extend(&self, base: Instant, until: Instant) {
        // Rounded down: the pause may end < 1 ms early (the 429 reached us later than the API
        // sent it anyway), and `Retry-After: 30` is answered with 30 s left, not 31 after the
        // client-facing round-up.
        let ms = until.saturating_duration_since(base).as_millis();
        self.until_ms
            .fetch_max(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Time left of the pause, `None` when not paused.
    pub(crate) fn remaining(&self, base: Instant, now: Instant) -> Option<Duration> {
        let until_ms = self.until_ms.load(Ordering::Relaxed);
        if until_ms == 0 {
            return None;
        }
        let until = base + Duration::from_millis(until_ms);
        let left = until.saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let secs = |s: &str| pause_for(Some(&HeaderValue::from_str(s).unwrap()));
        assert_eq!(secs("2"), Duration::from_secs(2));
        assert_eq!(secs(" 7 "), Duration::from_secs(7));
        assert_eq!(secs("0"), MIN_PAUSE);
        assert_eq!(secs("86400"), MAX_PAUSE);
        assert_eq!(secs("soon"), DEFAULT_PAUSE);
        assert_eq!(secs("-3"), DEFAULT_PAUSE);
        assert_eq!(pause_for(None), DEFAULT_PAUSE);
        let in_30s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let d = secs(&in_30s);
        // HTTP dates have whole seconds.
        assert!(
            d > Duration::from_secs(28) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(30));
        assert_eq!(secs(&past), MIN_PAUSE);
        let non_utf8 = HeaderValue::from_bytes(b"\xff").unwrap();
        assert_eq!(pause_for(Some(&non_utf8)), DEFAULT_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn pause_extends_and_expires() {
        let base = Instant::now();
        let pause = Pause::default();
        assert_eq!(pause.remaining(base, Instant::now()), None);
        pause.extend(base, Instant::now() + Duration::from_secs(5));
        pause.extend(base, Instant::now() + Duration::from_secs(2));
        assert_eq!(
            pause.remaining(base, Instant::now()),
            Some(Duration::from_secs(5))
        );
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert_eq!(
            pause.remaining(base, Instant::now()),
            Some(Duration::from_millis(1))
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(pause.remaining(base, Instant::now()), None);
    }
}
