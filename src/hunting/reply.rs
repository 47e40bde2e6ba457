//! Graph's refusals of a hunting query, told in the Defender error shape legacy tools parse:
//! `{"error": {"code", "message", "target"}}`, Graph's code and message kept, `target` Graph's
//! request id (where Defender put its own). Graph's CPU-quota refusal, an HTTP 400, is told as the
//! 429 it means.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

/// What Graph says when a tenant's hunting CPU quota (15-minute cycles) is used up.
const QUOTA_MESSAGE: &str = "exceeded the allowed limits";
/// The most of a non-JSON error body quoted in the message.
const QUOTED: usize = 300;

/// One Graph error answer, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphError {
    status: StatusCode,
    code: String,
    message: String,
    /// Graph's `innerError.request-id`, for Microsoft support.
    request_id: Option<String>,
}

impl GraphError {
    /// Graph's answer `status` with (the first bytes of) its body.
    pub(crate) fn read(status: StatusCode, body: &[u8]) -> GraphError {
        let error = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| member(&v, "error").cloned());
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let error = error.as_ref();
        let code = text(error.and_then(|e| member(e, "code")));
        let message = text(error.and_then(|e| member(e, "message")));
        let request_id = text(
            error
                .and_then(|e| member(e, "innerError"))
                .and_then(|i| member(i, "request-id")),
        );
        GraphError {
            status,
            code: code.unwrap_or_else(|| reason_code(status)),
            message: message.unwrap_or_else(|| quote(status, body)),
            request_id,
        }
    }

    /// Graph's CPU-quota refusal (a 400 that means "too many", as integrators report it).
    pub(crate) fn is_quota(&self) -> bool {
        self.status == StatusCode::BAD_REQUEST
            && self.message.to_ascii_lowercase().contains(QUOTA_MESSAGE)
    }

    /// The status the client gets: Graph's, but 429 for the CPU quota.
    pub(crate) fn status(&self) -> StatusCode {
        if self.is_quota() {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            self.status
        }
    }

    /// The Defender-shaped body; for the CPU quota, `TooManyRequests` and when to come back.
    pub(crate) fn body(&self, quota_retry_after: Duration) -> Bytes {
        let (code, message) = if self.is_quota() {
            (
                "TooManyRequests".to_owned(),
                format!(
                    "Graph: {} (this tenant's advanced-hunting CPU quota is used up; retry in {} s)",
                    self.message,
                    quota_retry_after.as_secs()
                ),
            )
        } else {
            (self.code.clone(), format!("Graph: {}", self.message))
        };
        let target = self.request_id.as_deref().unwrap_or("microsoft-graph");
        let value = serde_json::json!({
            "error": { "code": code, "message": message, "target": target }
        });
        Bytes::from(value.to_string())
    }
}

/// A member of a JSON object, its name matched ASCII case-insensitively (Graph writes
/// `innerError`, older answers `innererror`).
fn member<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// `Bad Request` as a code: `BadRequest`.
fn reason_code(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("Error")
        .split_whitespace()
        .collect()
}

/// A body that isn't Graph's JSON error, quoted (shortened) so the client sees what came.
fn quote(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("HTTP {}", status.as_u16());
    }
    let end = text
        .char_indices()
        .nth(QUOTED)
        .map_or(text.len(), |(i, _)| i);
    format!("HTTP {}: {}", status.as_u16(), &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTES_15: Duration = Duration::from_secs(900);

    fn shaped(error: &GraphError) -> Value {
        serde_json::from_slice(&error.body(MINUTES_15)).unwrap_or_default()
    }

    #[test]
    fn graph_errors_keep_status_code_and_message_in_the_defender_shape() {
        let body = br#"{"error": {"code": "Forbidden", "message": "Missing role", "innerError": {"request-id": "r-1", "date": "x"}}}"#;
        let error = GraphError::read(StatusCode::FORBIDDEN, body);
        assert_eq!(error.status(), StatusCode::FORBIDDEN);
        assert!(!error.is_quota());
        let v = shaped(&error);
        assert_eq!(v["error"]["code"], "Forbidden");
        assert_eq!(v["error"]["message"], "Graph: Missing role");
        assert_eq!(v["error"]["target"], "r-1");
    }

    #[test]
    fn the_cpu_quota_400_becomes_a_429() {
        let body = br#"{"error": {"code": "BadRequest", "message": "Query execution has exceeded the allowed limits. The query ..."}}"#;
        let error = GraphError::read(StatusCode::BAD_REQUEST, body);
        assert!(error.is_quota());
        assert_eq!(error.status(), StatusCode::TOO_MANY_REQUESTS);
        let v = shaped(&error);
        assert_eq!(v["error"]["code"], "TooManyRequests");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("retry in 900 s"), "{message}");
        assert_eq!(v["error"]["target"], "microsoft-graph");
        // Another 400 stays a 400.
        let other = GraphError::read(
            StatusCode::BAD_REQUEST,
            br#"{"error": {"code": "BadRequest", "message": "Syntax error"}}"#,
        );
        assert_eq!(other.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_body_that_is_no_graph_error_is_quoted_short() {
        let error = GraphError::read(StatusCode::BAD_GATEWAY, "<html>é".repeat(100).as_bytes());
        let v = shaped(&error);
        assert_eq!(v["error"]["code"], "BadGateway");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("Graph: HTTP 502: <html>é"), "{message}");
        assert!(message.chars().count() < QUOTED + 30);
        let empty = GraphError::read(StatusCode::GATEWAY_TIMEOUT, b"");
        assert_eq!(shaped(&empty)["error"]["message"], "Graph: HTTP 504");
    }
}
