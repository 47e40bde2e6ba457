//! The in-process decision for one route class: governor GCRA limiters for the minute and hour
//! windows, on a clock that reads tokio's time so that paused-time tests drive the limiters, the
//! queue's sleeps and the pauses from one clock. Their state is governor's own atomic, kept
//! where the tenant status can read it (`TatState`).

use std::num::NonZeroU64;
use std::ops::Add;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{NotKeyed, StateStore};

use super::gcra::{ClassParams, WindowLimit};

/// `tokio::time::Instant` as a governor clock reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TokioInstant(tokio::time::Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;

    fn add(self, other: Nanos) -> Self {
        Self(self.0 + Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(
            self.0
                .checked_sub(Duration::from(duration))
                .unwrap_or(self.0),
        )
    }
}

/// Governor clock backed by `tokio::time::Instant::now()` (paused and advanced in tests).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(tokio::time::Instant::now())
    }
}

/// Governor's `InMemoryState` (the theoretical arrival time, TAT, as nanoseconds since the
/// limiter's start, 0 before the first cell; replaced by compare-and-swap), but readable: governor
/// owns its state store and shows none of it, and the status shows how much of a window is
/// used. Shared with [`Limiter::tat`], hence the `Arc` (one more pointer per decision).
#[derive(Debug, Default)]
struct TatState(Arc<AtomicU64>);

impl StateStore for TatState {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, _key: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // The same loop as governor's `InMemoryState::measure_and_replace_one`.
        let mut prev = self.0.load(Ordering::Acquire);
        loop {
            let (result, new) = f(NonZeroU64::new(prev).map(|n| Nanos::from(n.get())))?;
            match self.0.compare_exchange_weak(
                prev,
                new.into(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(result),
                Err(next) => prev = next,
            }
        }
    }
}

type Gcra = governor::RateLimiter<NotKeyed, TatState, TokioClock, NoOpMiddleware<TokioInstant>>;

/// One window's limiter and what it limits (for the client's message).
#[derive(Debug)]
struct Limiter {
    gcra: Gcra,
    limit: WindowLimit,
    /// The state `gcra` decides on, read by [`Limiter::used`].
    tat: Arc<AtomicU64>,
    /// When the limiter started (read just before governor reads its own): the origin of the
    /// TAT.
    start: tokio::time::Instant,
    /// The emission interval `T`.
    period: Duration,
}

impl Limiter {
    /// Cells not yet drained: `ceil((TAT - now) / T)`, at most the limit.
    fn used(&self, now: tokio::time::Instant) -> u32 {
        let tat = self.start + Duration::from_nanos(self.tat.load(Ordering::Relaxed));
        let ahead = tat.saturating_duration_since(now).as_nanos();
        let period = self.period.as_nanos().max(1);
        u32::try_from(ahead.div_ceil(period))
            .unwrap_or(u32::MAX)
            .min(self.limit.max)
    }
}

/// The minute and hour limiters of one route class.
///
/// Governor cannot test a cell without taking it, so when the first window checked admits and
/// the second refuses, a cell of the first is spent for nothing. To keep that rare, the window
/// that refused last is checked first next time: when the hour window binds (sustained use), it
/// refuses before any minute cell is taken; when the minute window binds (bursts), the hour
/// window's scarcer cells are not touched. A cell lost in the remaining flips only makes the
/// limiter stricter, never looser.
#[derive(Debug)]
pub(crate) struct LocalWindows {
    windows: [Option<Limiter>; 2],
    /// Index of the window to check first (the one that refused last).
    first: AtomicU8,
}

/// A refusal: how long until the refusing window has a slot, and its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) wait: Duration,
    pub(crate) limit: WindowLimit,
}

impl LocalWindows {
    pub(crate) fn new(params: &ClassParams) -> Self {
        let windows = params.map(|p| {
            p.map(|p| {
                let state = TatState::default();
                let tat = Arc::clone(&state.0);
                let start = tokio::time::Instant::now();
                Limiter {
                    gcra: governor::RateLimiter::new(p.quota(), state, TokioClock),
                    limit: p.limit,
                    tat,
                    start,
                    period: p.period,
                }
            })
        });
        Self {
            windows,
            first: AtomicU8::new(0),
        }
    }

    /// Takes a slot in every window, or says how long until the refusing window has one.
    pub(crate) fn check(&self) -> Result<(), Refusal> {
        let first = usize::from(self.first.load(Ordering::Relaxed) & 1);
        for i in [first, 1 - first] {
            let Some(window) = &self.windows[i] else {
                continue;
            };
            if let Err(not_until) = window.gcra.check() {
                if i != first {
                    self.first.store(i as u8, Ordering::Relaxed);
                }
                return Err(Refusal {
                    wait: not_until.wait_time_from(TokioClock.now()),
                    limit: window.limit,
                });
            }
        }
        Ok(())
    }

    /// Per window (`[minute, hour]`, `None` where not limited), its limit and how much of it is
    /// used now: the GCRA cells not yet drained, `ceil((TAT - now) / T)`. An estimate of "requests
    /// in the trailing window": `limit - used` requests would pass within one window from now,
    /// and `used` never exceeds the burst (the stretched interval of `gcra.rs` paces the rest).
    pub(crate) fn used(&self) -> [Option<(WindowLimit, u32)>; 2] {
        let now = tokio::time::Instant::now();
        [0, 1].map(|i| self.windows[i].as_ref().map(|w| (w.limit, w.used(now))))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Windows;
    use crate::ratelimit::gcra::{derive, Window};
    use std::num::NonZeroU32;

    #[tokio::test(start_paused = true)]
    async fn binding_window_is_checked_first() {
        // 1000/min (burst 100, T = 67 ms) and 20/h (burst 19, T = 1 h): the hour window binds.
        let params = derive(
            &Windows {
                per_minute: NonZeroU32::new(1000),
                per_hour: NonZeroU32::new(20),
                burst: None,
            },
            NonZeroU32::MIN,
        );
        let local = LocalWindows::new(&params);
        for _ in 0..19 {
            local.check().unwrap();
        }
        // This refusal costs a minute cell (the minute window was checked first) ...
        assert_eq!(local.check().unwrap_err().limit.window, Window::Hour);
        // ... but from now on the hour window refuses first: were the minute window checked
        // first, its remaining 80 cells would be burnt and it would refuse after 80 checks.
        for _ in 0..1000 {
            assert_eq!(local.check().unwrap_err().limit.window, Window::Hour);
        }
    }
}
