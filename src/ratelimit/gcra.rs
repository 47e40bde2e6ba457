//! GCRA parameters for Defender's windows: the one place that turns "N per minute / per hour,
//! burst b" into an emission interval and a burst, and the proof (tests) that the result never
//! lets more than N requests through in any interval as long as the window.
//!
//! Defender counts requests in windows whose alignment we cannot see (fixed or sliding, starting
//! anywhere). A plain "N per W" GCRA (interval W/N, burst b) can pass b requests at the end of
//! one window and then N more in the next, i.e. up to N + b - 1 in one W. So the interval is
//! stretched to `T = W / (N - b)`: the burst plus what refills in W is `b + W/T = N`, and in ANY
//! closed interval of length W at most N requests pass, wherever Defender's window starts.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::config::Windows;

/// The length of a limit's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
}

impl Window {
    /// The window's length.
    pub fn length(self) -> Duration {
        match self {
            Window::Minute => Duration::from_secs(60),
            Window::Hour => Duration::from_secs(3600),
        }
    }
}

/// A configured limit, "`max` per `window`", as shown to clients and in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimit {
    /// Requests allowed per window.
    pub max: u32,
    /// The window.
    pub window: Window,
}

impl std::fmt::Display for WindowLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = match self.window {
            Window::Minute => "minute",
            Window::Hour => "hour",
        };
        write!(f, "{} per {per}", self.max)
    }
}

/// GCRA parameters of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowParams {
    pub(crate) limit: WindowLimit,
    /// Requests that may pass back to back after a quiet spell.
    pub(crate) burst: NonZeroU32,
    /// Emission interval `T`: one more request is allowed every `T`.
    pub(crate) period: Duration,
}

impl WindowParams {
    /// The governor quota with exactly these parameters (governor's tolerance is `T * (b - 1)`).
    pub(crate) fn quota(&self) -> governor::Quota {
        // `period` is never zero (it is at least W / N with N <= u32::MAX), so `with_period`
        // cannot refuse it; the fallback only keeps this total.
        governor::Quota::with_period(self.period)
            .unwrap_or_else(|| governor::Quota::per_hour(NonZeroU32::MIN))
            .allow_burst(self.burst)
    }

    /// GCRA tolerance `tau = T * (b - 1)`: how far ahead of now the theoretical arrival time may be.
    pub(crate) fn tolerance(&self) -> Duration {
        self.period * (self.burst.get() - 1)
    }
}

/// The windows of one route class: `[minute, hour]`, `None` where not limited.
pub(crate) type ClassParams = [Option<WindowParams>; 2];

/// Derives both windows' GCRA parameters from the configured limits.
///
/// `share` divides every limit (and a configured burst) for the local fallback of a Redis backend
/// shared by that many replicas. It rounds down (at least 1) so that the replicas together stay
/// inside the limit even while none of them can reach Redis.
///
/// Default burst, when `burst` is not configured: a tenth of the per-minute limit (at least 1); the
/// hour window allows the larger of that and a tenth of the per-hour limit, so a quiet tenant's
/// burst is bounded by the minute window and the hour window only binds in sustained use.
pub(crate) fn derive(windows: &Windows, share: NonZeroU32) -> ClassParams {
    let divide = |n: NonZeroU32| (n.get() / share.get()).max(1);
    let per_minute = windows.per_minute.map(divide);
    let per_hour = windows.per_hour.map(divide);
    let burst = windows.burst.map(divide);

    let minute_burst = burst.unwrap_or_else(|| (per_minute.unwrap_or(0) / 10).max(1));
    let hour_burst = match (burst, per_minute) {
        (Some(b), _) => b.max(per_hour.unwrap_or(0) / 10),
        (None, Some(_)) => minute_burst.max(per_hour.unwrap_or(0) / 10),
        (None, None) => (per_hour.unwrap_or(0) / 10).max(1),
    };
    [
        per_minute.map(|n| params(n, Window::Minute, minute_burst)),
        per_hour.map(|n| params(n, Window::Hour, hour_burst)),
    ]
}

/// `T = W / (N - b)` with `b` clamped to `1..=N-1`, rounded UP to the nanosecond so rounding can
/// only make the limiter stricter. `N = 1`: `b = 1`, `T = W` (one request per window; two requests
/// exactly `W` apart fall into two half-open windows).
fn params(max: u32, window: Window, burst: u32) -> WindowParams {
    let limit = WindowLimit { max, window };
    let w = window.length().as_nanos();
    let (burst, period) = if max <= 1 {
        (1, window.length())
    } else {
        let b = burst.clamp(1, max - 1);
        let nanos = w.div_ceil(u128::from(max - b));
        (
            b,
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)),
        )
    };
    WindowParams {
        limit,
        burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        period,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use governor::RateLimiter;

    fn nz(n: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(n)
    }

    fn windows(m: u32, h: u32, b: u32) -> Windows {
        Windows {
            per_minute: nz(m),
            per_hour: nz(h),
            burst: nz(b),
        }
    }

    #[test]
    fn defaults_follow_the_documented_derivation() {
        let [m, h] = derive(&windows(50, 1500, 0), NonZeroU32::MIN);
        let (m, h) = (m.unwrap(), h.unwrap());
        assert_eq!(m.burst.get(), 5);
        // 60 s / 45, rounded up to the nanosecond.
        assert_eq!(m.period, Duration::from_nanos(1_333_333_334));
        assert_eq!(h.burst.get(), 150);
        assert_eq!(h.period, Duration::from_nanos(2_666_666_667));
        // A burst as large as the limit is clamped so the window can still hold.
        let [m, _] = derive(&windows(10, 0, 10), NonZeroU32::MIN);
        assert_eq!(m.unwrap().burst.get(), 9);
        assert_eq!(m.unwrap().period, Duration::from_secs(60));
        let [m, _] = derive(&windows(1, 0, 5), NonZeroU32::MIN);
        assert_eq!(
            (m.unwrap().burst.get(), m.unwrap().period),
            (1, Duration::from_secs(60))
        );
        // Only an hour window: its own tenth.
        let [m, h] = derive(&windows(0, 100, 0), NonZeroU32::MIN);
        assert!(m.is_none());
        assert_eq!(h.unwrap().burst.get(), 10);
        assert_eq!(derive(&windows(0, 0, 0), NonZeroU32::MIN), [None, None]);
    }

    #[test]
    fn replica_share_rounds_down() {
        let [m, h] = derive(&windows(45, 1500, 7), NonZeroU32::new(2).unwrap());
        assert_eq!(m.unwrap().limit.max, 22);
        assert_eq!(m.unwrap().burst.get(), 3);
        assert_eq!(h.unwrap().limit.max, 750);
        let [m, _] = derive(&windows(3, 0, 0), NonZeroU32::new(5).unwrap());
        assert_eq!(m.unwrap().limit.max, 1);
    }

    /// Greedy clients, with quiet spells now and then so bursts refill, on a fake clock: counts
    /// every admission in every interval of length W that starts at an admission (the busiest
    /// intervals start at one), closed for N >= 2, half-open for N = 1.
    #[test]
    fn never_more_than_n_in_any_window() {
        let mut rng = fastrand::Rng::with_seed(7);
        for (m, h, b) in [
            (50, 1500, 0),
            (45, 0, 0),
            (100, 1500, 0),
            (150, 0, 150),
            (10, 0, 9),
            (2, 0, 0),
            (1, 0, 0),
            (3, 20, 2),
            (0, 1500, 0),
            (50, 300, 50),
        ] {
            let params = derive(&windows(m, h, b), NonZeroU32::MIN);
            let clock = FakeRelativeClock::default();
            let limiters: Vec<_> = params
                .iter()
                .flatten()
                .map(|p| (p, RateLimiter::direct_with_clock(p.quota(), clock.clone())))
                .collect();
            let mut now = Duration::ZERO;
            let mut admitted = Vec::new();
            while now < Duration::from_secs(3 * 3600) {
                let mut wait = Duration::ZERO;
                for (_, l) in &limiters {
                    if let Err(e) = l.check() {
                        wait = e.wait_time_from(governor::clock::Clock::now(&clock));
                        break;
                    }
                }
                if wait.is_zero() {
                    admitted.push(now);
                    if rng.u8(..) < 8 {
                        wait = Duration::from_millis(rng.u64(1..600_000));
                    }
                } else if rng.bool() {
                    wait += Duration::from_millis(rng.u64(0..3_000));
                }
                clock.advance(wait);
                now += wait;
            }
            for (p, _) in &limiters {
                let w = p.limit.window.length();
                let n = p.limit.max as usize;
                for (i, start) in admitted.iter().enumerate() {
                    let in_window = admitted[i..]
                        .iter()
                        .take_while(|t| {
                            if n == 1 {
                                **t < *start + w
                            } else {
                                **t <= *start + w
                            }
                        })
                        .count();
                    assert!(
                        in_window <= n,
                        "{m}/min {h}/h burst {b}: {in_window} in {w:?} from {start:?}"
                    );
                }
            }
            assert!(
                admitted.len() > 3,
                "{m}/{h}: the test admitted almost nothing"
            );
        }
    }
}
