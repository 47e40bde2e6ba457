//! One (tenant, scope) token: the cache the hot path reads, and the rules for replacing it.
//!
//! - The current token sits in an `ArcSwapOption`: a warm `get()` is one atomic load, no lock,
//!   no await.
//! - At most one token request per slot is in flight. It runs in its own task and publishes its
//!   outcome on a `watch` channel, so callers may give up (client gone) without cancelling it.
//! - A caller waits for a flight at most one attempt's timeout (the source's), not for all its
//!   attempts: a silent token endpoint answers it `TokenError::Pending`, while the flight goes on
//!   retrying in the background and later callers join it, each with the same bound.
//! - Refresh-ahead: a timer task (holding only a `Weak` to the slot) refreshes at Entra's
//!   `refresh_in` or half the lifetime, jittered, if the slot was used since the last fetch.
//!   Requests keep the current token meanwhile; a failed refresh is retried with backoff while
//!   the token lasts.
//! - The usable deadline, `expires_at - min(60 s, lifetime/10)`: past it the token is never
//!   handed out; `get()` waits for a fresh one instead.
//! - A failed request is remembered (60 s, or a few seconds for transient failures), so a burst of
//!   requests for a broken tenant does not become a burst of token requests.
//! - A panic inside a flight is caught and recorded as a failure (`TokenError::Internal`), its
//!   message unread: it may quote the token.
//! - The source is the broker's shared cell, read at the start of every token request, so a
//!   reload that swaps the credential (a rotated secret) takes effect at the next request while
//!   the current token keeps being served. A reload that changes the app's identity bumps the
//!   slot's generation instead: the token goes, and a flight started before is not installed.
//!
//! This file is the cache and the way into a flight; `slot/flight.rs` is the flight itself
//! (retries, install, refresh timers); `slot/status.rs` the read-only view the tenant status
//! shows (valid, refreshing, failing, none).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{AccessToken, SharedSource, TokenError};
use crate::sync::LockExt;
mod flight;
mod status;

pub(crate) use status::SlotState;

/// Attempts within one flight for transient failures.
const MAX_ATTEMPTS: u32 = 4;
/// First backoff step of a flight's retries (full jitter, doubling).
const RETRY_BASE: Duration = Duration::from_millis(200);
/// Longest wait between attempts; a longer `Retry-After` ends the flight instead (callers are
/// waiting) and is remembered.
const RETRY_CAP: Duration = Duration::from_secs(30);
/// First backoff step between failed background refreshes (the token still works meanwhile).
const REFRESH_RETRY_BASE: Duration = Duration::from_secs(2);
/// How long a credential, consent or other non-transient failure is answered from memory.
const FAILURE_MEMORY: Duration = Duration::from_secs(60);
/// How long a transient failure (all attempts spent) is answered from memory.
const TRANSIENT_MEMORY: Duration = Duration::from_secs(5);
/// Longest `Retry-After` believed, so instant arithmetic cannot overflow.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The usable deadline's margin before expiry is `min(this, lifetime / 10)`.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// An upstream that rejects every token (say, a wrong scope) must not turn each request into a
/// token request: tokens are dropped on 401 at most this often.
const INVALIDATE_EVERY: Duration = Duration::from_secs(10);

type Outcome = Result<Arc<AccessToken>, TokenError>;

/// Counters and state of one slot, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenStats {
    /// Token requests that brought a usable token.
    pub refresh_ok: u64,
    /// Token requests that failed (each attempt counts).
    pub refresh_failed: u64,
    /// Time left until the current token expires; `None` without one.
    pub expires_in: Option<Duration>,
}

/// The token of one (tenant, scope). Shared by the routing snapshots that need it.
pub struct TokenSlot {
    tenant_id: String,
    scope: String,
    /// The broker's cell: whatever source it holds when a token request starts is asked.
    source: SharedSource,
    /// Bumped when the cached token is dropped for belonging to another app or cloud; a flight
    /// that started under an older generation hands its outcome to its waiters but does not
    /// install it.
    generation: AtomicU64,
    /// For handing an owning reference to the flight task and a weak one to timers.
    me: Weak<TokenSlot>,
    current: ArcSwapOption<Cached>,
    /// Set by every `get()`, cleared when a token request starts: an idle slot is not refreshed.
    used: AtomicBool,
    /// Never held across an await.
    state: Mutex<State>,
    serial: AtomicU64,
    /// Milliseconds after `epoch` before which requests past `refresh_at` need not ask for a
    /// refresh (one runs, or a failed one is backing off): keeps them off the mutex.
    refresh_gate: AtomicU64,
    epoch: Instant,
    /// When a token was last dropped after an upstream 401; at most one per [`INVALIDATE_EVERY`].
    last_invalidation: Mutex<Option<Instant>>,
    refresh_ok: AtomicU64,
    refresh_failed: AtomicU64,
}

/// The current token and its schedule.
struct Cached {
    token: Arc<AccessToken>,
    /// Tells timers whether the token they were set for is still the current one.
    serial: u64,
    refresh_at: Instant,
    usable_until: Instant,
}

#[derive(Default)]
struct State {
    /// The token request in flight, if any.
    flight: Option<watch::Receiver<Option<Outcome>>>,
    /// The last failure and until when it is answered from memory.
    failure: Option<(TokenError, Instant)>,
    /// The running flight's last failed attempt, for the callers that stop waiting before the
    /// flight ends (their error says what the flight is retrying).
    attempt_failure: Option<TokenError>,
    /// After a failed background refresh: no new one before this.
    next_refresh: Option<Instant>,
    /// Failed background refreshes in a row, for their backoff.
    refresh_failures: u32,
}

impl State {
    /// The flight to join. A flight whose task died without answering (panic, runtime shutdown)
    /// does not count, so the slot recovers.
    fn live_flight(&self) -> Option<watch::Receiver<Option<Outcome>>> {
        let rx = self.flight.as_ref()?;
        let dead = rx.has_changed().is_err() && rx.borrow().is_none();
        (!dead).then(|| rx.clone())
    }
}

enum Next {
    Done(Outcome),
    Wait(watch::Receiver<Option<Outcome>>),
}

impl fmt::Debug for TokenSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSlot")
            .field("tenant_id", &self.tenant_id)
            .field("scope", &self.scope)
            .field(
                "token",
                &self.current.load().as_ref().map(|c| c.token.clone()),
            )
            .finish_non_exhaustive()
    }
}

impl TokenSlot {
    pub(crate) fn new(tenant_id: &str, scope: &str, source: SharedSource) -> Arc<Self> {
        Arc::new_cyclic(|me| TokenSlot {
            tenant_id: tenant_id.to_owned(),
            scope: scope.to_owned(),
            source,
            generation: AtomicU64::new(0),
            me: me.clone(),
            current: ArcSwapOption::empty(),
            used: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            serial: AtomicU64::new(0),
            refresh_gate: AtomicU64::new(0),
            epoch: Instant::now(),
            last_invalidation: Mutex::new(None),
            refresh_ok: AtomicU64::new(0),
            refresh_failed: AtomicU64::new(0),
        })
    }

    /// The customer's tenant id.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// The OAuth scope the token is for.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// A usable token: the cached one without awaiting anything when it is within its usable
    /// deadline; otherwise the outcome of the slot's one token request (joined or started). A
    /// failure remembered from a recent request is answered at once, without a new request.
    /// Cancelling the returned future does not cancel the token request.
    pub async fn get(&self) -> Result<Arc<AccessToken>, TokenError> {
        // Read before writing: a store on every request would bounce the cache line between
        // cores serving the same tenant.
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
        let now = Instant::now();
        {
            let current = self.current.load();
            if let Some(cached) = current.as_ref().filter(|c| now < c.usable_until) {
                if now >= cached.refresh_at
                    && self.ms(now) >= self.refresh_gate.load(Ordering::Relaxed)
                {
                    self.refresh_in_background(now);
                }
                return Ok(cached.token.clone());
            }
        }
        match self.join_or_start(now) {
            Next::Done(outcome) => outcome,
            Next::Wait(rx) => self.wait(rx).await,
        }
    }

    /// The flight's outcome, or after one attempt's timeout `Pending`: a token endpoint that does
    /// not answer must not hold requests through all of the flight's attempts (4 x 30 s). The
    /// flight goes on without this caller.
    async fn wait(&self, mut rx: watch::Receiver<Option<Outcome>>) -> Outcome {
        let limit = self.source.load().attempt_timeout();
        match tokio::time::timeout(limit, rx.wait_for(Option::is_some)).await {
            Ok(Ok(outcome)) => outcome.clone().unwrap_or_else(|| Err(self.aborted())),
            Ok(Err(_)) => Err(self.aborted()),
            Err(_elapsed) => Err(TokenError::Pending {
                tenant_id: self.tenant_id.clone(),
                waited: limit,
                last_attempt: self.lock().attempt_failure.clone().map(Arc::new),
            }),
        }
    }

    /// The upstream answered 401 to a request sent with `used`: drop it if it is still the current
    /// token, so the next `get()` fetches a fresh one. A newer token is left alone, and tokens are
    /// dropped at most once per 10 s (`INVALIDATE_EVERY`). Returns whether a fresh token is worth
    /// asking for (the used one is gone).
    pub fn invalidate(&self, used: &AccessToken) -> bool {
        let current = self.current.load();
        let Some(cached) = current.as_ref() else {
            return true; // Already dropped by someone else: a fresh one comes next.
        };
        if !std::ptr::eq(Arc::as_ptr(&cached.token), used) {
            return true; // Replaced meanwhile: the caller's next get() sees the newer token.
        }
        let now = Instant::now();
        {
            let mut last = self.last_invalidation.locked();
            if last.is_some_and(|at| now.saturating_duration_since(at) < INVALIDATE_EVERY) {
                tracing::warn!(tenant_id = %self.tenant_id, fingerprint = used.fingerprint(),
                    "upstream rejected a fresh token again; keeping it (wrong scope or missing permission?)");
                return false;
            }
            *last = Some(now);
        }
        self.current.compare_and_swap(&current, None);
        tracing::info!(tenant_id = %self.tenant_id, fingerprint = used.fingerprint(), "token rejected upstream; dropped");
        true
    }

    /// Counters and the current token's remaining lifetime.
    pub fn stats(&self) -> TokenStats {
        let now = Instant::now();
        TokenStats {
            refresh_ok: self.refresh_ok.load(Ordering::Relaxed),
            refresh_failed: self.refresh_failed.load(Ordering::Relaxed),
            expires_in: self
                .current
                .load()
                .as_ref()
                .map(|c| c.token.expires_at().saturating_duration_since(now)),
        }
    }

    /// The credential changed (a reload): failures remembered from the old one no longer say
    /// anything, so the next request asks at once. The current token stays.
    pub(crate) fn forget_failures(&self) {
        let mut state = self.lock();
        state.failure = None;
        state.next_refresh = None;
        state.refresh_failures = 0;
        // A running flight keeps its gate closed; it reopens the gate when it ends.
        if state.live_flight().is_none() {
            self.refresh_gate.store(0, Ordering::Relaxed);
        }
    }

    /// The app or cloud changed (a reload): the current token belongs to the old one. Drop it and
    /// everything remembered, and detach a running flight (it still answers its waiters, who
    /// asked before the reload, but its token is not installed); the next `get()` starts afresh.
    pub(crate) fn reset(&self) {
        let mut state = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.current.store(None);
        *state = State::default();
        self.refresh_gate.store(0, Ordering::Relaxed);
    }

    fn usable(&self, now: Instant) -> Option<Arc<Cached>> {
        self.current.load_full().filter(|c| now < c.usable_until)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, so a poisoned state is still consistent.
        self.state.locked()
    }

    fn aborted(&self) -> TokenError {
        TokenError::Aborted {
            tenant_id: self.tenant_id.clone(),
        }
    }

    /// The slow path: checked again under the lock, since a flight may have just finished.
    fn join_or_start(&self, now: Instant) -> Next {
        let mut state = self.lock();
        if let Some(cached) = self.usable(now) {
            return Next::Done(Ok(cached.token.clone()));
        }
        if let Some(rx) = state.live_flight() {
            return Next::Wait(rx);
        }
        if let Some((error, until)) = &state.failure {
            if now < *until {
                return Next::Done(Err(error.clone()));
            }
        }
        Next::Wait(self.start_flight(&mut state))
    }

    /// Start a refresh unless one runs, a failed one's backoff has not passed, or the token was
    /// replaced since the caller looked (checked under the lock, so a refresh that just finished
    /// does not start a second one).
    fn refresh_in_background(&self, now: Instant) {
        let mut state = self.lock();
        if self.usable(now).is_some_and(|c| now < c.refresh_at) {
            return;
        }
        if state.live_flight().is_some() {
            return;
        }
        if let Some(t) = state.next_refresh.filter(|t| now < *t) {
            self.refresh_gate.store(self.ms(t), Ordering::Relaxed);
            return;
        }
        drop(self.start_flight(&mut state));
    }

    /// `at` as milliseconds after the slot's epoch, for the lock-free refresh gate.
    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "slot_tests.rs"]
mod tests;
