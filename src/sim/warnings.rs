//! The API's warnings, on request per tenant: Graph's throttle headers on its answers
//! ([`Simulator::set_throttle_headers`]), a `Retry-After` on successful answers
//! ([`Simulator::set_retry_after_on_success`]), and Graph's `206 Partial Content` with
//! `Warning: 199` instead of a 200 ([`Simulator::force_partial`]). The throttle headers only on
//! Graph's paths, as only Graph sends them; the others on any path of a token of the tenant
//! (the proxy must not care which API sends them, and tests may use `/api/_test/stream`).

use http::header::{HeaderValue, RETRY_AFTER, WARNING};
use http::{Response, StatusCode};

use super::family::Family;
use super::state::Shared;
use super::support::Body;
use super::Simulator;

/// The `Warning` of a forced partial answer, in the form Graph's security API documents for a
/// federated provider that failed (`{vendor}/{provider}/{status}/{latency ms}`).
pub const PARTIAL_WARNING: &str = "199 - \"Microsoft/Microsoft Defender for Cloud Apps/504/10000\"";

/// Graph's throttle headers, sent verbatim (tests may send odd values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleHeaders {
    /// `x-ms-throttle-limit-percentage` (Graph: the share of the limit used, from 0.8).
    pub percent: String,
    /// `x-ms-throttle-scope`, e.g. `Tenant_Application/Read/{app id}/{tenant id}`.
    pub scope: String,
    /// `x-ms-throttle-information`, e.g. `ResourceUnitLimitExceeded`.
    pub information: String,
}

impl Simulator {
    /// Every Graph answer for the tenant carries these throttle headers from now on (`None`:
    /// none; empty values are left out).
    pub fn set_throttle_headers(&self, tenant_id: &str, headers: Option<ThrottleHeaders>) {
        self.shared.with_modes(tenant_id, |m| m.throttle = headers);
    }

    /// Every 2xx API answer for the tenant carries `Retry-After: value` from now on (`None`:
    /// none); forced and real 429s keep their own.
    pub fn set_retry_after_on_success(&self, tenant_id: &str, value: Option<&str>) {
        self.shared.with_modes(tenant_id, |m| {
            m.success_retry_after = value.map(str::to_owned)
        });
    }

    /// The tenant's next `count` API answers that would be 200 are 206 with
    /// `Warning: `[`PARTIAL_WARNING`] instead (same body): an incomplete answer.
    pub fn force_partial(&self, tenant_id: &str, count: u32) {
        self.shared
            .with_modes(tenant_id, |m| m.partial_remaining = count);
    }
}

/// The answer to a request with a token of `tid` on a path of `family`, with the tenant's
/// warnings.
pub(crate) fn decorate(
    shared: &Shared,
    tid: &str,
    family: Family,
    mut resp: Response<Body>,
) -> Response<Body> {
    let status = resp.status();
    let (throttle, retry_after, partial) = {
        let mut state = shared.lock();
        let Some(m) = state.tenants.get_mut(&tid.to_ascii_lowercase()) else {
            return resp;
        };
        let partial = status == StatusCode::OK && m.partial_remaining > 0;
        if partial {
            m.partial_remaining -= 1;
        }
        let retry_after = m
            .success_retry_after
            .clone()
            .filter(|_| status.is_success());
        let throttle = m.throttle.clone().filter(|_| family == Family::Graph);
        (throttle, retry_after, partial)
    };
    let headers = resp.headers_mut();
    if let Some(t) = throttle {
        for (name, value) in [
            ("x-ms-throttle-limit-percentage", t.percent),
            ("x-ms-throttle-scope", t.scope),
            ("x-ms-throttle-information", t.information),
        ] {
            match HeaderValue::from_str(&value) {
                Ok(value) if !value.is_empty() => {
                    headers.insert(name, value);
                }
                _ => {}
            }
        }
    }
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert(RETRY_AFTER, value);
    }
    if partial {
        headers.insert(WARNING, HeaderValue::from_static(PARTIAL_WARNING));
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    resp
}
