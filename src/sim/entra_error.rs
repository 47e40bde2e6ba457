//! Entra ID's error answer, in its real shape (`error`, `error_codes`, an AADSTS description with
//! trace and correlation ids): shared by the token endpoint and the assertion checks, so neither
//! imports the other for it.

use http::header::{HeaderValue, CACHE_CONTROL, PRAGMA, RETRY_AFTER};
use http::{Response, StatusCode};
use serde_json::json;

use super::state::Shared;
use super::support::{self, Body};

/// An Entra error answer.
#[derive(Debug)]
pub(crate) struct EntraError {
    pub(super) status: StatusCode,
    error: &'static str,
    pub(super) code: u32,
    description: String,
    pub(super) retry_after: Option<u32>,
}

pub(crate) fn err(
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: impl Into<String>,
) -> EntraError {
    EntraError {
        status,
        error,
        code,
        description: description.into(),
        retry_after: None,
    }
}

pub(super) fn missing(param: &str) -> EntraError {
    err(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{param}'."),
    )
}

impl EntraError {
    pub(super) fn response(&self, shared: &Shared, base: &str) -> Response<Body> {
        let now = shared.clock.unix_secs();
        let (trace, correlation, ts) = (
            support::uuid(),
            support::uuid(),
            support::entra_timestamp(now),
        );
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {ts}",
                self.code, self.description
            ),
            "error_codes": [self.code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("{base}/error?code={}", self.code),
        });
        let mut resp = support::json(self.status, &body);
        no_store(&mut resp);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

pub(super) fn no_store(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
}
