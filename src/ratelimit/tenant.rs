//! One tenant's limiter: its route classes, each with its limits, its pause after an upstream
//! 429 and its FIFO queue; and `admit`, the decision a request waits for.
//!
//! Queue mode: a request admitted at once takes the fast path (one decision, no queue). Otherwise
//! it joins the class's FIFO: a one-permit `Semaphore` (tokio's is fair) whose holder, the head,
//! waits for its slot and passes the permit on once admitted. A slot is only taken at the moment
//! of admission, so a client that goes away (its future dropped) loses nothing and takes
//! nothing: its permit or its place in line goes to the next request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::gcra::ClassParams;
use super::local::LocalWindows;
use super::metrics::TenantStats;
use super::pause::{pause_for, Pause};
use super::redis_backend::{RedisClass, Unavailable};
use super::verdict::Verdict;
use super::{Backend, RateLimited, RouteClass, RouteTable, Shared};
use crate::config::{LimitMode, LimitPolicy, OnBackendError};

/// Retry-After when the backend is unreachable and `on_backend_error = "reject"`.
const BACKEND_RETRY: Duration = Duration::from_secs(1);

/// A request the limiter let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Time spent waiting for the slot (zero when admitted at once).
    pub waited: Duration,
}

/// One route class of one tenant.
#[derive(Debug)]
pub(crate) struct ClassState {
    /// The decision with the local backend; with Redis, the fallback (limits / replicas).
    pub(super) local: LocalWindows,
    /// Keys and arguments for the Redis backend (`None` with the local backend).
    redis: Option<RedisClass>,
    pause: Pause,
    /// Requests in the queue, the head included: the `max_queue` bound, the gauge, and the
    /// fast path's "nobody is waiting" test.
    waiting: AtomicUsize,
    /// The FIFO: its one permit is held by the head of the queue.
    turn: Semaphore,
    /// Longest emission interval of the class: the pace at which the queue drains, for estimates.
    pace: Duration,
    /// The class's limits (with Redis, the shared ones, not the fallback's share), for the status.
    pub(super) params: ClassParams,
}

impl ClassState {
    pub(crate) fn new(params: ClassParams, local: &ClassParams, redis: Option<RedisClass>) -> Self {
        let pace = params.iter().flatten().map(|p| p.period).max();
        Self {
            local: LocalWindows::new(local),
            redis,
            pause: Pause::default(),
            waiting: AtomicUsize::new(0),
            turn: Semaphore::new(1),
            pace: pace.unwrap_or(Duration::ZERO),
            params,
        }
    }
}

/// The rate limiter of one tenant: get it from [`super::RateLimiter::tenant`].
pub struct TenantLimiter {
    pub(crate) tenant_id: Box<str>,
    pub(crate) policy: LimitPolicy,
    /// Class 0: the tenant's own policy.
    pub(crate) default: ClassState,
    /// Class i (from 1): `[[rate_limit.route]]` number i.
    pub(crate) route_classes: Box<[ClassState]>,
    pub(crate) routes: Arc<RouteTable>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stats: TenantStats,
}

impl std::fmt::Debug for TenantLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantLimiter")
            .field("tenant_id", &self.tenant_id)
            .field("policy", &self.policy)
            .field("route_classes", &self.route_classes.len())
            .finish_non_exhaustive()
    }
}

/// Takes a request out of the queue count however it leaves (admitted, refused, or dropped).
struct InQueue<'a>(&'a AtomicUsize);

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl TenantLimiter {
    /// The route class of an upstream path (with or without its query): the longest
    /// `[[rate_limit.route]]` prefix that matches on whole segments, ASCII case-insensitively;
    /// 0 (the tenant's own limits) when none does.
    pub fn class_of(&self, upstream_path: &str) -> RouteClass {
        self.routes.class_of(upstream_path)
    }

    /// Waits for (queue mode) or checks (reject mode) a slot in the class's limits. Cancel-safe:
    /// dropping the future leaves the queue without taking a slot (with Redis, a future dropped
    /// during the backend call itself, at most 250 ms, may have taken one).
    pub async fn admit(&self, class: RouteClass) -> Result<Admission, RateLimited> {
        let c = self.class(class);
        let result = match self.policy.mode {
            LimitMode::Reject => self.admit_or_reject(c).await,
            LimitMode::Queue => self.admit_queued(c).await,
        };
        match &result {
            Ok(admission) => self.stats.admitted(admission.waited),
            Err(why) => self.stats.rejected(why),
        }
        result
    }

    /// The API answered 429 for a request of `class`: pause the class until its `Retry-After`
    /// (seconds or HTTP date; 10 s when absent or unreadable; 1 s to 5 min). Other classes and
    /// tenants go on. With Redis, the pause is shared with the other replicas too.
    pub fn upstream_throttled(&self, class: RouteClass, retry_after: Option<&http::HeaderValue>) {
        self.hold(class, pause_for(retry_after));
    }

    /// The API refused requests of `class` for `pause` (a 429, or a quota told otherwise: Graph's
    /// hunting CPU quota): pause the class that long, shared with the other replicas with Redis.
    pub fn hold(&self, class: RouteClass, pause: Duration) {
        let c = self.class(class);
        c.pause.extend(self.shared.base, Instant::now() + pause);
        self.stats.upstream_429();
        if let (Backend::Redis(_), Some(redis_class), Ok(rt)) = (
            &self.shared.backend,
            &c.redis,
            tokio::runtime::Handle::try_current(),
        ) {
            let shared = Arc::clone(&self.shared);
            let key: Box<str> = redis_class.pause_key().into();
            rt.spawn(async move {
                if let Backend::Redis(redis) = &shared.backend {
                    redis.pause(&key, pause).await;
                }
            });
        }
    }

    /// Time left of the longest pause over the classes (for the metrics gauge).
    pub fn paused_remaining(&self) -> Duration {
        let now = Instant::now();
        self.classes()
            .filter_map(|c| c.pause.remaining(self.shared.base, now))
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Requests waiting in the tenant's queues (all classes).
    pub fn queue_length(&self) -> usize {
        self.classes()
            .map(|c| c.waiting.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn stats(&self) -> &TenantStats {
        &self.stats
    }

    fn class(&self, class: RouteClass) -> &ClassState {
        // A class from another configuration (after a reload) gets the tenant's own limits.
        usize::from(class.0)
            .checked_sub(1)
            .and_then(|i| self.route_classes.get(i))
            .unwrap_or(&self.default)
    }

    /// Class 0, then the route classes in order.
    pub(super) fn classes(&self) -> impl Iterator<Item = &ClassState> {
        std::iter::once(&self.default).chain(self.route_classes.iter())
    }

    async fn admit_or_reject(&self, c: &ClassState) -> Result<Admission, RateLimited> {
        match self.decide(c).await? {
            Verdict::Admit => Ok(Admission {
                waited: Duration::ZERO,
            }),
            Verdict::OverLimit(refusal) => Err(RateLimited::OverLimit {
                retry_after: refusal.wait,
                limit: refusal.limit,
            }),
            Verdict::Paused(left) => Err(RateLimited::Paused { retry_after: left }),
        }
    }

    async fn admit_queued(&self, c: &ClassState) -> Result<Admission, RateLimited> {
        let start = Instant::now();
        if c.waiting.load(Ordering::Acquire) == 0 && self.decide(c).await? == Verdict::Admit {
            return Ok(Admission {
                waited: Duration::ZERO,
            });
        }
        let ahead = c.waiting.fetch_add(1, Ordering::AcqRel);
        let _in_queue = InQueue(&c.waiting);
        if ahead >= self.policy.max_queue {
            return Err(RateLimited::QueueFull {
                retry_after: self.estimate(c, ahead),
                max_queue: self.policy.max_queue,
            });
        }
        self.stats.queued();
        let deadline = start + self.policy.max_wait;
        match tokio::time::timeout_at(deadline, self.wait_turn(c, start, deadline)).await {
            Ok(result) => result,
            // Still behind others at the deadline.
            Err(_) => Err(RateLimited::WaitTooLong {
                retry_after: self.estimate(c, c.waiting.load(Ordering::Relaxed)),
                max_wait: self.policy.max_wait,
            }),
        }
    }

    /// In the queue: wait to be the head, then for the slot.
    async fn wait_turn(
        &self,
        c: &ClassState,
        start: Instant,
        deadline: Instant,
    ) -> Result<Admission, RateLimited> {
        // The semaphore is never closed; should that change, refuse rather than skip the queue.
        let Ok(_head) = c.turn.acquire().await else {
            return Err(RateLimited::BackendUnavailable {
                retry_after: BACKEND_RETRY,
            });
        };
        loop {
            let verdict = self.decide(c).await?;
            let now = Instant::now();
            let (wait, give_up) = match verdict {
                Verdict::Admit => {
                    return Ok(Admission {
                        waited: now.saturating_duration_since(start),
                    })
                }
                Verdict::OverLimit(refusal) => (
                    refusal.wait,
                    RateLimited::WaitTooLong {
                        retry_after: refusal.wait,
                        max_wait: self.policy.max_wait,
                    },
                ),
                Verdict::Paused(left) => (left, RateLimited::Paused { retry_after: left }),
            };
            // Known now that the slot comes too late: say so now instead of sleeping in vain.
            if now + wait > deadline {
                return Err(give_up);
            }
            // At least 1 ms so that a zero wait from a racing decision cannot spin.
            tokio::time::sleep_until(now + wait.max(Duration::from_millis(1))).await;
        }
    }

    /// One decision: the pause first (no backend call while paused), then the backend.
    async fn decide(&self, c: &ClassState) -> Result<Verdict, RateLimited> {
        let base = self.shared.base;
        if let Some(left) = c.pause.remaining(base, Instant::now()) {
            return Ok(Verdict::Paused(left));
        }
        let (Backend::Redis(redis), Some(redis_class)) = (&self.shared.backend, &c.redis) else {
            return Ok(local(c));
        };
        match redis.decide(redis_class).await {
            Ok(verdict) => {
                if let Verdict::Paused(left) = verdict {
                    // Another replica saw the 429: remember it here too, sparing Redis calls.
                    c.pause.extend(base, Instant::now() + left);
                }
                Ok(verdict)
            }
            Err(Unavailable::Skipped | Unavailable::Failed) => match redis.on_error {
                OnBackendError::Local => {
                    self.shared
                        .fallback_decisions
                        .fetch_add(1, Ordering::Relaxed);
                    Ok(local(c))
                }
                OnBackendError::Reject => Err(RateLimited::BackendUnavailable {
                    retry_after: BACKEND_RETRY,
                }),
            },
        }
    }

    /// When the queue is likely to have room again: the requests ahead at the class's pace plus
    /// any pause, at most `max_wait` (by then every request now queued has left).
    fn estimate(&self, c: &ClassState, ahead: usize) -> Duration {
        let ahead = u32::try_from(ahead).unwrap_or(u32::MAX).saturating_add(1);
        let pause = c.pause.remaining(self.shared.base, Instant::now());
        (c.pace.saturating_mul(ahead) + pause.unwrap_or_default()).min(self.policy.max_wait)
    }
}

fn local(c: &ClassState) -> Verdict {
    match c.local.check() {
        Ok(()) => Verdict::Admit,
        Err(refusal) => Verdict::OverLimit(refusal),
    }
}
