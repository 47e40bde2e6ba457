//! The `tokens` of a tenant status: per API its slot's state, expiry and roles, and what went
//! wrong (AADSTS code, meaning, consent link). From `TokenSlot::status`, whose module docs give
//! the rules of the states; this file only shapes them.

use serde::Serialize;

use super::Time;
use crate::tenant::TenantApi;
use crate::token::{aadsts_meaning, SlotState, TokenError};

/// One API's token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TokenStatus {
    /// The API's name (`default` for `[cloud]`'s).
    pub(crate) api: String,
    /// The OAuth scope: APIs with the same one share one token (and one entry's state).
    pub(crate) scope: String,
    /// `valid`, `refreshing`, `failing` or `none`.
    #[serde(serialize_with = "state_str")]
    pub(crate) state: SlotState,
    /// Whether requests get a token now without waiting for Entra ID (a `failing` slot may
    /// still serve its older token).
    pub(crate) usable: bool,
    /// When the usable token expires; `null` without one.
    pub(crate) expires_at: Option<Time>,
    /// The usable token's application permissions; empty without one.
    pub(crate) roles: Vec<String>,
    /// What went wrong, when the last attempt failed (`failing`, or `refreshing` again after a
    /// failure): the keys `error` and `consent_url` are there exactly then.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(crate) failure: Option<Failure>,
}

/// A failed token request, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Failure {
    pub(crate) error: TokenErrorStatus,
    /// The tenant's admin-consent link, for consent errors; `null` for the others.
    pub(crate) consent_url: Option<String>,
}

/// `{"code": "AADSTS700016", "meaning": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TokenErrorStatus {
    /// `AADSTS` and Entra's most specific code; `null` when Entra sent none (unreachable, a
    /// gateway's error status, a token that failed the proxy's checks).
    pub(crate) code: Option<String>,
    /// The code's meaning when the proxy knows it, else the error's client-safe text.
    pub(crate) meaning: String,
}

impl TokenStatus {
    pub(crate) fn of(api: &TenantApi) -> TokenStatus {
        let slot = api.token.status();
        TokenStatus {
            api: api.target.name.to_string(),
            scope: api.target.scope.to_string(),
            state: slot.state,
            usable: slot.usable,
            expires_at: slot.expires_at.map(Time::of),
            roles: slot.roles,
            failure: slot.error.as_ref().map(Failure::of),
        }
    }
}

impl Failure {
    fn of(error: &TokenError) -> Failure {
        let code = error.aadsts();
        Failure {
            error: TokenErrorStatus {
                code: code.map(|c| format!("AADSTS{c}")),
                meaning: code
                    .and_then(aadsts_meaning)
                    .map_or_else(|| error.to_string(), str::to_owned),
            },
            consent_url: error.consent_url().map(str::to_owned),
        }
    }
}

fn state_str<S: serde::Serializer>(state: &SlotState, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(state.as_str())
}
