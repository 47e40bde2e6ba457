//! What a slot says about itself for the admin API's tenant status: a read-only view of the
//! cache and the flight state, never a token request.
//!
//! Apart from `slot.rs` (the cache the hot path reads) because it is read by people, not by
//! requests: one lock and one load per call, on the admin listener only.
//!
//! The states, first match wins:
//! - `Refreshing`: a token request is in flight (a first fetch, a refresh, or a retry after a
//!   failure). Its `error` is the flight's last failed attempt, else the failure that came
//!   before it: a refresh after failures is not a healthy one.
//! - `Failing`: the last token request failed. Also while an older token is still handed out
//!   (a background refresh failed): `usable` and `expires_at` say how long it lasts. The failure
//!   stays until a request succeeds, however long ago it was; a reload that changes the
//!   credential forgets it (the next request asks afresh).
//! - `Valid`: a token within its usable deadline, and no failure since it came.
//! - `None`: no usable token and nothing known to be wrong: never asked, the token expired
//!   while nobody used the slot (idle slots are not refreshed), or it was dropped (an upstream
//!   401, a reload to another app or cloud).

use tokio::time::Instant;

use super::TokenSlot;
use crate::token::TokenError;

/// A slot's state, for the tenant status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    Valid,
    Refreshing,
    Failing,
    None,
}

impl SlotState {
    /// The status's spelling: `valid`, `refreshing`, `failing`, `none`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SlotState::Valid => "valid",
            SlotState::Refreshing => "refreshing",
            SlotState::Failing => "failing",
            SlotState::None => "none",
        }
    }
}

/// A snapshot of one slot. Carries no secret: no token, no fingerprint; the error's `Display`
/// is client-safe by `TokenError`'s contract.
#[derive(Debug, Clone)]
pub(crate) struct SlotStatus {
    pub(crate) state: SlotState,
    /// Whether a request would get the cached token now, without waiting for Entra ID.
    pub(crate) usable: bool,
    /// When the cached token expires (Entra's `expires_in`); `None` without a usable one.
    pub(crate) expires_at: Option<Instant>,
    /// The cached token's `roles`; empty without a usable one.
    pub(crate) roles: Vec<String>,
    /// `Failing`: the failure; `Refreshing`: the failure the flight is retrying, if any.
    pub(crate) error: Option<TokenError>,
}

impl TokenSlot {
    /// The slot as the status shows it (see the module docs for the states). Takes the state
    /// lock briefly, so the cache and the flight are seen together; asks nothing of Entra ID.
    pub(crate) fn status(&self) -> SlotStatus {
        let now = Instant::now();
        let state = self.lock();
        let usable = self.usable(now);
        let flying = state.live_flight().is_some();
        let failure = state.failure.as_ref().map(|(error, _)| error.clone());
        let (slot_state, error) = if flying {
            let retrying = state.attempt_failure.clone().or(failure);
            (SlotState::Refreshing, retrying)
        } else if failure.is_some() {
            (SlotState::Failing, failure)
        } else if usable.is_some() {
            (SlotState::Valid, None)
        } else {
            (SlotState::None, None)
        };
        drop(state);
        SlotStatus {
            state: slot_state,
            usable: usable.is_some(),
            expires_at: usable.as_ref().map(|c| c.token.expires_at()),
            roles: usable.map(|c| c.token.roles().to_vec()).unwrap_or_default(),
            error,
        }
    }
}
