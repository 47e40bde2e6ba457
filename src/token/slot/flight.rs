//! One slot's token request, from start to install: the flight task (retries with backoff,
//! a caught panic), installing its outcome with the refresh schedule, and the refresh timers.
//!
//! Apart from `slot.rs`, whose concern is the cache the hot path reads (`get`, the usable
//! deadline, joining a flight): this is the slow, rare path, and its rules (jitter, failure
//! memory, generations) read best together. The policy numbers stay in `slot.rs`.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{
    Cached, Outcome, State, TokenSlot, EXPIRY_MARGIN, FAILURE_MEMORY, MAX_ATTEMPTS,
    MAX_RETRY_AFTER, REFRESH_RETRY_BASE, RETRY_BASE, RETRY_CAP, TRANSIENT_MEMORY,
};
use crate::error_chain::Chain;
use crate::token::{accept, fetch_attempt, Accepted, ErrorClass, InvalidResponse, TokenError};

impl TokenSlot {
    pub(super) fn start_flight(&self, state: &mut State) -> watch::Receiver<Option<Outcome>> {
        let (tx, rx) = watch::channel(None);
        self.used.store(false, Ordering::Relaxed);
        // Until the flight ends, requests past `refresh_at` have nothing to start.
        self.refresh_gate.store(u64::MAX, Ordering::Relaxed);
        // Read under the state lock, as `reset` bumps it under the lock: a flight is either
        // detached by a reset or sees the new generation, never half of each.
        let generation = self.generation.load(Ordering::SeqCst);
        state.attempt_failure = None;
        match self.me.upgrade() {
            Some(slot) => {
                state.flight = Some(rx.clone());
                tokio::spawn(async move {
                    // A panic in the flight (a bug, or a token that trips one) must become a
                    // failure like any other: otherwise it dies unrecorded and every request
                    // starts a new token request, and a new panic. Unwind safety: the flight
                    // only bumps counters and notes failed attempts in one assignment under the
                    // state lock; `finish` then sets the state.
                    let result = AssertUnwindSafe(slot.fetch_with_retries(generation))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_payload| {
                            // The payload is dropped unread: it may quote the token.
                            tracing::error!(
                                tenant_id = %slot.tenant_id,
                                scope = %slot.scope,
                                "token request panicked; recorded as a failure"
                            );
                            Err(TokenError::Internal {
                                tenant_id: slot.tenant_id.clone(),
                            })
                        });
                    let outcome = slot.finish(result, generation);
                    // Nobody waiting is fine: the token is installed either way.
                    let _ = tx.send(Some(outcome));
                });
            }
            // Only while the slot is being dropped; nobody can be calling then.
            None => drop(tx.send(Some(Err(self.aborted())))),
        }
        rx
    }

    /// One flight: transient failures retried with exponential backoff and full jitter, honouring
    /// `Retry-After`; anything else ends it at once.
    async fn fetch_with_retries(&self, generation: u64) -> Result<Accepted, TokenError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let requested_at = Instant::now();
            // The source of this attempt: a reload swaps the cell, never the source in use.
            let source = self.source.load_full();
            let result = match fetch_attempt(&**source, &self.tenant_id, &self.scope).await {
                Ok(fetched) => accept(fetched, &self.tenant_id, requested_at),
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(accepted) => {
                    self.refresh_ok.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        tenant_id = %self.tenant_id,
                        scope = %self.scope,
                        expires_in = accepted.lifetime.as_secs(),
                        fingerprint = accepted.token.fingerprint(),
                        "token acquired"
                    );
                    return Ok(accepted);
                }
                Err(error) => error,
            };
            self.refresh_failed.fetch_add(1, Ordering::Relaxed);
            let delay = retry_after(&error).unwrap_or_else(|| full_jitter(RETRY_BASE, attempt));
            let retry = error.class() == ErrorClass::Transient
                && attempt < MAX_ATTEMPTS
                && delay <= RETRY_CAP;
            tracing::warn!(
                tenant_id = %self.tenant_id,
                aadsts = error.aadsts(),
                attempt,
                retry_in_ms = retry.then_some(delay.as_millis() as u64),
                error = %Chain(&error),
                "token request failed"
            );
            if !retry {
                return Err(error);
            }
            {
                let mut state = self.lock();
                // A reset detached this flight: the state is another flight's now.
                if self.generation.load(Ordering::SeqCst) == generation {
                    state.attempt_failure = Some(error);
                }
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// Install the flight's result and schedule what comes next; a flight of an older
    /// `generation` (the slot was reset meanwhile) only answers its waiters.
    fn finish(&self, result: Result<Accepted, TokenError>, generation: u64) -> Outcome {
        let now = Instant::now();
        // A token that arrives already past its usable deadline (a very short lifetime and a slow
        // answer) is never handed out, not even to the callers waiting for it.
        let result = result.and_then(|accepted| {
            let margin = EXPIRY_MARGIN.min(accepted.lifetime / 10);
            if accepted.token.expires_at() - margin <= now {
                Err(TokenError::InvalidResponse {
                    tenant_id: self.tenant_id.clone(),
                    reason: InvalidResponse::Lifetime,
                })
            } else {
                Ok(accepted)
            }
        });
        // Held from the generation check to the install, so a `reset` (which bumps the
        // generation under this lock) comes wholly before or after it.
        let mut state = self.lock();
        if self.generation.load(Ordering::SeqCst) != generation {
            return result.map(|accepted| Arc::new(accepted.token));
        }
        match result {
            Ok(accepted) => {
                let token = Arc::new(accepted.token);
                let lifetime = accepted.lifetime;
                let usable_until = token.expires_at() - EXPIRY_MARGIN.min(lifetime / 10);
                let refresh_after = jitter_10pc(accepted.refresh_in.unwrap_or(lifetime / 2));
                let refresh_at = (accepted.issued_at + refresh_after).min(usable_until);
                let serial = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
                self.current.store(Some(Arc::new(Cached {
                    token: token.clone(),
                    serial,
                    refresh_at,
                    usable_until,
                })));
                *state = State::default();
                self.refresh_gate.store(0, Ordering::Relaxed);
                self.schedule(refresh_at, serial);
                Ok(token)
            }
            Err(error) => {
                state.flight = None;
                state.attempt_failure = None;
                let transient = error.class() == ErrorClass::Transient;
                let memory = if transient {
                    retry_after(&error)
                        .unwrap_or_default()
                        .max(TRANSIENT_MEMORY)
                } else {
                    FAILURE_MEMORY
                };
                state.failure = Some((error.clone(), now + memory));
                // A refresh failed but the current token still works: try again later.
                if let Some(cached) = self.usable(now) {
                    state.refresh_failures += 1;
                    let backoff = if transient {
                        equal_jitter(REFRESH_RETRY_BASE, state.refresh_failures)
                    } else {
                        memory
                    };
                    let retry_at = now + backoff.max(retry_after(&error).unwrap_or_default());
                    state.next_refresh = Some(retry_at);
                    self.refresh_gate
                        .store(self.ms(retry_at), Ordering::Relaxed);
                    if retry_at < cached.usable_until {
                        self.schedule(retry_at, cached.serial);
                    }
                }
                Err(error)
            }
        }
    }

    /// Wake at `at` and refresh the token `serial` if it is still current and was used.
    fn schedule(&self, at: Instant, serial: u64) {
        let slot = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(slot) = slot.upgrade() {
                slot.on_timer(serial);
            }
        });
    }

    fn on_timer(&self, serial: u64) {
        let now = Instant::now();
        let Some(cached) = self.usable(now) else {
            return;
        };
        if cached.serial != serial {
            return; // A newer token brought its own timer.
        }
        if self.used.load(Ordering::Relaxed) {
            self.refresh_in_background(now);
        } else {
            // Idle: leave Entra alone. A request past `refresh_at` will start the refresh.
            tracing::debug!(tenant_id = %self.tenant_id, "token not used since the last fetch; no refresh");
        }
    }
}

fn retry_after(error: &TokenError) -> Option<Duration> {
    error.retry_after().map(|d| d.min(MAX_RETRY_AFTER))
}

/// Uniform in `[0, base * 2^(attempt-1)]`, capped at [`RETRY_CAP`] (AWS's "full jitter").
fn full_jitter(base: Duration, attempt: u32) -> Duration {
    exp_step(base, attempt).mul_f64(fastrand::f64())
}

/// Uniform in `[d/2, d]` with `d = base * 2^(attempt-1)` capped: never near zero, for background
/// retries where a quick succession helps nobody.
fn equal_jitter(base: Duration, attempt: u32) -> Duration {
    exp_step(base, attempt).mul_f64(0.5 + fastrand::f64() / 2.0)
}

fn exp_step(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(RETRY_CAP)
}

/// ±10 %, so slots filled together don't refresh together.
fn jitter_10pc(d: Duration) -> Duration {
    d.mul_f64(0.9 + fastrand::f64() * 0.2)
}
