//! The recorder's entries: what the simulator saw of every token request and API request, so
//! tests assert on behaviour (which tenant's token came with which request, what was forwarded)
//! instead of guessing from the outside. Secrets and assertions are never kept; the
//! `Authorization` header of API requests is kept (tests inspect it) but marked sensitive so a
//! `Debug` print of a record does not show the token.

use http::{HeaderMap, Method};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Which token endpoint a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TokenEndpoint {
    /// `/{tenant}/oauth2/token`, with `resource`.
    V1,
    /// `/{tenant}/oauth2/v2.0/token`, with `scope`.
    V2,
}

/// How a token request proved the client's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CredentialKind {
    /// `client_secret`.
    Secret,
    /// `client_assertion` (certificate-signed JWT).
    Assertion,
    /// `client_assertion` issued by another identity provider (workload identity federation):
    /// a JWT whose `iss` is not the client id.
    Federated,
    /// Neither (or both) was presented.
    None,
}

/// One request to the simulated token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRequestRecord {
    /// The `{tenant}` path segment, exactly as requested.
    pub tenant: String,
    pub version: TokenEndpoint,
    /// The `client_id` form field (empty when missing).
    pub client_id: String,
    pub credential: CredentialKind,
    /// The `sub` of a federated assertion (it names the workload, e.g.
    /// `system:serviceaccount:ns:name`, and is no secret), so tests can tell which version of a
    /// rotated token file was sent. The assertion itself is never kept.
    pub assertion_subject: Option<String>,
    /// `scope` (v2) or `resource` (v1) as sent; empty when missing.
    pub scope_or_resource: String,
    /// HTTP status answered.
    pub status: u16,
    /// The AADSTS code of an error answer.
    pub error_code: Option<u32>,
    /// The host the client named (`Host`, or HTTP/2's `:authority`); empty when neither.
    pub host: String,
    /// The cloud of the listener it arrived on ([`super::PUBLIC_CLOUD`] or a
    /// [`super::SimCloud`]'s name): the authority it was sent to.
    pub cloud: String,
}

/// One request to the simulated Defender API (anything that is neither the token endpoint nor a
/// `/_sim/` control endpoint), whatever its outcome, 401s included.
#[derive(Debug, Clone)]
pub struct ApiRequestRecord {
    /// When the request's headers arrived (wall-clock monotonic time, for spacing assertions).
    pub received_at: std::time::Instant,
    /// HTTP version the request arrived with (HTTP/2 when the client negotiated it by ALPN).
    pub version: http::Version,
    pub method: Method,
    /// Path and query exactly as received, byte for byte.
    pub path_and_query: String,
    /// Headers as received; `authorization` is marked sensitive (hidden from `Debug`).
    pub headers: HeaderMap,
    /// `tid` of the bearer token, when it was one this simulator signed (even if expired or revoked).
    pub tid: Option<String>,
    /// `aud` of that token.
    pub aud: Option<String>,
    /// The app that token was issued to (its `appid`, or `azp` in a v2 token).
    pub app_id: Option<String>,
    /// `iss` of that token: the authority it was requested at, `{base}/{tid}/` (v1) or
    /// `{base}/{tid}/v2.0` (v2).
    pub issuer: Option<String>,
    /// The host the client named (`Host`, or HTTP/2's `:authority`); empty when neither.
    pub host: String,
    /// The cloud of the listener it arrived on ([`super::PUBLIC_CLOUD`] or a
    /// [`super::SimCloud`]'s name).
    pub cloud: String,
    /// The address of that listener.
    pub listener: std::net::SocketAddr,
    /// HTTP status answered.
    pub status: u16,
    /// Length of the request body.
    pub body_len: u64,
    /// Hex SHA-256 of the request body.
    pub body_sha256: String,
    /// The body itself when at most [`ApiRequestRecord::BODY_KEPT`] bytes (a hunting query, a
    /// small JSON document), for tests to read; `None` for larger ones.
    pub body: Option<bytes::Bytes>,
}

/// `Bearer …abcd`: enough to tell tokens apart, never enough to use one.
pub(crate) fn redact_authorization(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let scheme = text.split_whitespace().next().unwrap_or("");
    let chars: Vec<char> = text.chars().collect();
    let last4: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("{scheme} …{last4}")
}

/// Headers as a JSON object (repeated names joined by `, `), `authorization` redacted.
pub(crate) fn headers_json(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| {
                if name == http::header::AUTHORIZATION {
                    redact_authorization(v.as_bytes())
                } else {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                }
            })
            .collect();
        out.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    Value::Object(out)
}

impl ApiRequestRecord {
    /// The longest body a record keeps.
    pub const BODY_KEPT: usize = 4096;

    /// The record as JSON for `GET /_sim/requests`, with the token redacted.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "method": self.method.as_str(),
            "path_and_query": self.path_and_query,
            "headers": headers_json(&self.headers),
            "tid": self.tid,
            "aud": self.aud,
            "app_id": self.app_id,
            "issuer": self.issuer,
            "host": self.host,
            "cloud": self.cloud,
            "listener": self.listener.to_string(),
            "status": self.status,
            "body_len": self.body_len,
            "body_sha256": self.body_sha256,
        })
    }
}

/// What a valid bearer token said.
#[derive(Debug, Clone)]
pub(crate) struct TokenInfo {
    pub(crate) tid: String,
    pub(crate) aud: String,
    /// `appid` (v1) or `azp` (v2).
    pub(crate) app_id: String,
    pub(crate) iss: String,
    pub(crate) has_roles: bool,
    /// The `roles` claim.
    pub(crate) roles: Vec<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_scheme_and_last_four() {
        assert_eq!(redact_authorization(b"Bearer abcdefgh"), "Bearer …efgh");
        assert_eq!(redact_authorization(b"xy"), "xy …xy");
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer secret-token-1234".parse().unwrap());
        h.append("x-a", "1".parse().unwrap());
        h.append("x-a", "2".parse().unwrap());
        let j = headers_json(&h);
        assert_eq!(j["authorization"], "Bearer …1234");
        assert_eq!(j["x-a"], "1, 2");
    }
}
