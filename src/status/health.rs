//! A tenant's health in one word, for the status page's sort and a glance: `ok`, `degraded`,
//! `failing`. Judged from the status alone, so the page and the API always agree.
//!
//! - `failing`: no request can get a token: every token in use (state other than `none`) is
//!   `failing` and has no older token to serve. A tenant none of whose tokens was ever asked for
//!   is not failing.
//! - `degraded`: something is wrong but requests may still pass: a token `failing` while its
//!   older token serves, or in any `failing` state while another token works; a token
//!   `refreshing` again after a failure; a route class paused after the API's 429; requests
//!   waiting in the queue; or an error status ([`crate::metrics::is_error_status`]) in the last
//!   [`RECENT_ERRORS`].
//! - `ok`: none of that.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::TenantStatus;
use crate::token::SlotState;

/// How long a request with an error status keeps a tenant `degraded`.
pub(crate) const RECENT_ERRORS: Duration = Duration::from_secs(300);

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
    let recent_error = status.requests.last_error_at.is_some_and(|at| {
        SystemTime::now()
            .duration_since(at.0)
            .map_or(true, |ago| ago < RECENT_ERRORS)
    });
    if token_trouble || limits.paused_until.is_some() || limits.queued > 0 || recent_error {
        Health::Degraded
    } else {
        Health::Ok
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
