//! The tenant status of the admin API (`GET /tenants`, `GET /tenants/{name}`) and the status
//! page: what one tenant's live state says now, as JSON. Read from the token slots, limiters and
//! counters the hot path keeps; nothing here asks Entra ID, Redis or the API, and nothing here
//! carries a secret (no token, no fingerprint, no credential).
//!
//! # Layout
//! - this file: [`TenantStatus`] and [`tenant_status`], the request counters, and times
//!   (RFC 3339 UTC, to the second: [`Time`]).
//! - `tokens`: one [`TokenStatus`] per API, from `TokenSlot::status`.
//! - `limits`: [`RateLimitStatus`], from `TenantLimiter::usage`.
//! - `health`: [`Health`] and its rules, which the status page sorts by.

mod health;
mod limits;
mod tokens;

#[cfg(test)]
mod tests;

use std::time::SystemTime;

use serde::Serialize;
use tokio::time::Instant;

pub(crate) use health::{health, Health};
pub(crate) use limits::RateLimitStatus;
pub(crate) use tokens::TokenStatus;
#[cfg(test)]
pub(crate) use {
    limits::WindowStatus,
    tokens::{Failure, TokenErrorStatus},
};

use crate::metrics::TenantMetrics;
use crate::tenant::Tenant;

/// One tenant, now. Serialized as the admin API's STATUS.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TenantStatus {
    pub(crate) name: String,
    /// The customer's tenant id (lower case).
    pub(crate) id: String,
    /// `config` or `file` ([`crate::config::TenantSource`]).
    pub(crate) source: &'static str,
    /// The app and cloud profile by config name (`default` for `[app]` and `[cloud]`).
    pub(crate) app: String,
    pub(crate) cloud: String,
    /// [`health`] of the rest.
    pub(crate) health: Health,
    /// One per API of the tenant, `default` first.
    pub(crate) tokens: Vec<TokenStatus>,
    pub(crate) rate_limit: RateLimitStatus,
    pub(crate) requests: RequestStatus,
}

/// The tenant's requests since the proxy started (counters survive reloads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RequestStatus {
    /// Responses, all APIs.
    pub(crate) total: u64,
    /// Of them, those with a status that says the tenant's service is unwell: 401, 403, 429 and
    /// 5xx, whether the API or the proxy answered (`metrics::is_error_status`).
    pub(crate) errors: u64,
    /// When the last request ended; `null` before any.
    pub(crate) last_at: Option<Time>,
    /// When the last request with an error status ended; `null` before any.
    pub(crate) last_error_at: Option<Time>,
    /// The same two counts over the last five minutes (this minute so far and the four before),
    /// which tell a tenant failing now from one that failed long ago.
    pub(crate) last_5m: RecentStatus,
}

/// Requests and errors of the last five minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub(crate) struct RecentStatus {
    pub(crate) total: u64,
    pub(crate) errors: u64,
}

/// A wall-clock time, serialized RFC 3339 UTC to the second (`2025-01-31T12:00:00Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Time(pub(crate) SystemTime);

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_seconds(self.0))
    }
}

impl Time {
    /// A tokio instant (the slots' and limiters' clock) on the wall clock, as of now.
    pub(crate) fn of(at: Instant) -> Time {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let time = if at >= now {
            wall.checked_add(at - now)
        } else {
            wall.checked_sub(now - at)
        };
        Time(time.unwrap_or(wall))
    }
}

/// The status of `tenant`, from its live state. Cheap: a lock and a load per token slot, one per
/// counter list.
pub(crate) fn tenant_status(tenant: &Tenant) -> TenantStatus {
    let mut status = TenantStatus {
        name: tenant.name.to_string(),
        id: tenant.id.to_string(),
        source: tenant.source.as_str(),
        app: tenant.app.to_string(),
        cloud: tenant.cloud.to_string(),
        health: Health::Ok,
        tokens: tenant.apis.iter().map(TokenStatus::of).collect(),
        rate_limit: RateLimitStatus::of(&tenant.limits),
        requests: request_status(&tenant.metrics),
    };
    status.health = health(&status);
    status
}

fn request_status(metrics: &TenantMetrics) -> RequestStatus {
    let (total, errors) = metrics.totals();
    let (recent_total, recent_errors) = metrics.recent();
    RequestStatus {
        total,
        errors,
        last_at: metrics.last_at().map(Time),
        last_error_at: metrics.last_error_at().map(Time),
        last_5m: RecentStatus {
            total: recent_total,
            errors: recent_errors,
        },
    }
}
