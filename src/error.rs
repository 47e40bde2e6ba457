//! `ProxyError`: every error the proxy answers itself, and its one mapping to a status code and
//! the Defender-shaped JSON body (`{"error":{"code","message","target"}}`), so tools that parse
//! the API's errors parse ours too. Errors from the API itself never pass through here.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::idle::{ClientFault, IdleTimeout};
use crate::inbound::{AuthError, Forbidden, ForeignOrigin};
use crate::ratelimit::RateLimited;
use crate::routing::{PathError, RequestError, RouteError};
use crate::token::TokenError;

/// What went wrong, typed; `status()` and `code()` are the only mapping to the wire.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no tenant named '{0}' is configured")]
    UnknownTenant(String),
    #[error(
        "no tenant in the request: prefix the path with a tenant name or id, or set the {0} header"
    )]
    NoTenant(http::HeaderName),
    #[error(transparent)]
    BadPath(#[from] PathError),
    #[error(transparent)]
    BadRequest(#[from] RequestError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("requests from the web origin '{}' are not allowed (see [cors] allowed_origins)", .0.0)]
    ForeignOrigin(#[from] ForeignOrigin),
    #[error("the request headers are larger than {0} bytes")]
    HeadersTooLarge(usize),
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(u64),
    #[error("the request body stalled: nothing arrived for {}", humantime::format_duration(*.0))]
    RequestTimeout(std::time::Duration),
    #[error("the Defender API could not be reached: {0}")]
    UpstreamUnavailable(#[source] UpstreamFailure),
    #[error("the Defender API did not answer in time: {0}")]
    UpstreamTimeout(TimeoutKind),
}

/// Which upstream deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeoutKind {
    #[error("no connection within the connect timeout")]
    Connect,
    #[error("no response headers within {0:?}")]
    Response(std::time::Duration),
}

/// Why an upstream exchange failed, without leaking internal detail to clients.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamFailure {
    #[error("connection failed")]
    Connect(#[source] hyper_util::client::legacy::Error),
    #[error("request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
}

/// Each routing refusal keeps the variant (so the status, code and message) it always had.
impl From<RouteError> for ProxyError {
    fn from(err: RouteError) -> Self {
        match err {
            RouteError::Path(err) => ProxyError::BadPath(err),
            RouteError::Request(err) => ProxyError::BadRequest(err),
            RouteError::UnknownTenant(name) => ProxyError::UnknownTenant(name),
            RouteError::NoTenant(header) => ProxyError::NoTenant(header),
        }
    }
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UnknownTenant(_) | ProxyError::NoTenant(_) => StatusCode::NOT_FOUND,
            ProxyError::BadPath(_) | ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Token(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ProxyError::Forbidden(_) | ProxyError::ForeignOrigin(_) => StatusCode::FORBIDDEN,
            ProxyError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The contract's error code (interface.md, "Errors the proxy makes itself").
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::UnknownTenant(_) | ProxyError::NoTenant(_) => "UnknownTenant",
            ProxyError::BadPath(_) => "BadPath",
            ProxyError::BadRequest(_) => "BadRequest",
            ProxyError::Token(_) => "TokenUnavailable",
            ProxyError::RateLimited(_) => "RateLimited",
            ProxyError::Unauthorized(_) => "Unauthorized",
            ProxyError::Forbidden(_) | ProxyError::ForeignOrigin(_) => "Forbidden",
            ProxyError::HeadersTooLarge(_) => "RequestHeadersTooLarge",
            ProxyError::BodyTooLarge(_) => "RequestTooLarge",
            ProxyError::RequestTimeout(_) => "RequestTimeout",
            ProxyError::UpstreamUnavailable(_) => "UpstreamUnavailable",
            ProxyError::UpstreamTimeout(_) => "UpstreamTimeout",
        }
    }

    /// The `Retry-After` a client should honour, for errors that have one.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ProxyError::RateLimited(limited) => Some(limited.retry_after()),
            _ => None,
        }
    }

    /// The client's request body broke off or stalled: the connection cannot carry another
    /// request (the rest of the body is unread), so the answer closes it.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::RequestTimeout(_) | ProxyError::BadRequest(RequestError::BodyRead)
        )
    }

    /// The JSON body. The message is the error's `Display`, which never holds a secret or token.
    pub fn body(&self) -> Bytes {
        error_body(self.code(), &self.to_string())
    }

    /// The whole response, the one way an error becomes one (the handler's own answer, and the
    /// answer of every coalesced follower of a request that failed): status, JSON body,
    /// `Retry-After` when there is one, `Connection: close` when the connection is spent.
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let mut response = json_error_response(self.status(), self.code(), &self.to_string());
        let h = response.headers_mut();
        if let Some(retry_after) = self.retry_after() {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs()),
            );
        }
        if self.closes_connection() {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<ClientFault> for ProxyError {
    fn from(fault: ClientFault) -> Self {
        match fault {
            ClientFault::Idle(IdleTimeout(after)) => ProxyError::RequestTimeout(after),
            ClientFault::Incomplete => ProxyError::BadRequest(RequestError::BodyRead),
        }
    }
}

/// The Defender error shape, for any code; also used by the admin listener.
pub(crate) fn error_body(code: &str, message: &str) -> Bytes {
    let value = serde_json::json!({
        "error": { "code": code, "message": message, "target": "defender-proxy" }
    });
    Bytes::from(value.to_string())
}

pub(crate) fn json_error_response<B: From<Bytes>>(
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<B> {
    let mut response = Response::new(B::from(error_body(code, message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(body: &Bytes) -> serde_json::Value {
        serde_json::from_slice(body).expect("valid json")
    }

    #[test]
    fn unknown_tenant_is_404_with_contract_shape() {
        let err = ProxyError::UnknownTenant("acme".into());
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        let v = parse(&err.body());
        assert_eq!(v["error"]["code"], "UnknownTenant");
        assert_eq!(
            v["error"]["message"],
            "no tenant named 'acme' is configured"
        );
        assert_eq!(v["error"]["target"], "defender-proxy");
    }

    #[test]
    fn every_variant_maps_to_its_status_and_code() {
        let cases: Vec<(ProxyError, u16, &str)> = vec![
            (
                ProxyError::NoTenant(http::HeaderName::from_static("x-defender-tenant")),
                404,
                "UnknownTenant",
            ),
            (ProxyError::BadPath(PathError::DotSegment), 400, "BadPath"),
            (
                ProxyError::Unauthorized(AuthError::Missing),
                401,
                "Unauthorized",
            ),
            (
                ProxyError::HeadersTooLarge(1024),
                431,
                "RequestHeadersTooLarge",
            ),
            (ProxyError::BodyTooLarge(1024), 413, "RequestTooLarge"),
            (
                ProxyError::RequestTimeout(Duration::from_secs(60)),
                408,
                "RequestTimeout",
            ),
            (ClientFault::Incomplete.into(), 400, "BadRequest"),
            (
                ProxyError::ForeignOrigin(ForeignOrigin("https://x".into())),
                403,
                "Forbidden",
            ),
            (
                ProxyError::BadRequest(RequestError::Connect),
                400,
                "BadRequest",
            ),
            (
                ProxyError::UpstreamTimeout(TimeoutKind::Response(Duration::from_secs(1))),
                504,
                "UpstreamTimeout",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert_eq!(err.code(), code);
            assert_eq!(parse(&err.body())["error"]["code"], code);
        }
    }

    #[test]
    fn routing_refusals_keep_their_status_code_and_message() {
        let header = http::HeaderName::from_static("x-defender-tenant");
        let cases: [(RouteError, u16, &str); 4] = [
            (
                RouteError::UnknownTenant("acme".into()),
                404,
                "UnknownTenant",
            ),
            (RouteError::NoTenant(header), 404, "UnknownTenant"),
            (PathError::DotSegment.into(), 400, "BadPath"),
            (RequestError::SeveralTenants.into(), 400, "BadRequest"),
        ];
        for (route, status, code) in cases {
            let message = route.to_string();
            let err = ProxyError::from(route);
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert_eq!(err.code(), code);
            assert_eq!(parse(&err.body())["error"]["message"], message.as_str());
        }
    }

    #[test]
    fn response_is_json() {
        let resp: Response<Bytes> = ProxyError::UnknownTenant("x".into()).to_response();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(resp.status(), 404);
    }
}
