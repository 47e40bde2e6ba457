//! A tenant's health in one word, for the status page's sort and a glance: `ok`, `degraded`,
//! `failing`. Judged from the status alone, so the page and the API always agree.
//!
//! - `failing`: no request can get a token: every token in use (state other than `none`) is
//!   `failing` and has no older token to serve. A tenant none of whose tokens was ever asked for
//!   is not failing.
//! - `degraded`: something is wrong but requests may still pass: a token `failing` while its
//!   older token serves, or in any `failing` state while another token works; a token
//!   `refreshing` again after a failure; a route class paused after the API's 429; or requests
//!   waiting in the queue.
//! - `ok`: none of that.

use serde::Serialize;

use super::TenantStatus;
use crate::token::SlotState;

/// Ordered from best to worst, so sorting by it descending puts the failing tenants first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Health {
    Ok,
    Degraded,
    Failing,
}

/// The health of a tenant's status (see the module docs for the rules).
pub(crate) fn health(status: &TenantStatus) -> Health {
    let mut in_use = status
        .tokens
        .iter()
        .filter(|t| t.state != SlotState::None)
        .peekable();
    let any_in_use = in_use.peek().is_some();
    if any_in_use && in_use.all(|t| t.state == SlotState::Failing && !t.usable) {
        return Health::Failing;
    }
    let token_trouble = status.tokens.iter().any(|t| match t.state {
        SlotState::Failing => true,
        SlotState::Refreshing => t.failure.is_some(),
        SlotState::Valid | SlotState::None => false,
    });
    let limits = &status.rate_limit;
    if token_trouble || limits.paused_until.is_some() || limits.queued > 0 {
        Health::Degraded
    } else {
        Health::Ok
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
