//! CORS for browser dashboards, answered by the proxy itself: `[cors] allowed_origins` lists the
//! exact origins whose pages may call it; nothing is allowed by default.
//!
//! The proxy is the only CORS authority: [`Cors::decorate`] removes any `Access-Control-*`
//! header the API sent, so an upstream `Access-Control-Allow-Origin: *` can never let an
//! arbitrary web page read a customer's data through a proxy on the operator's machine.
//! Credentials travel in headers (`Authorization`, `X-Api-Key`), not cookies, so
//! `Access-Control-Allow-Credentials` is never sent.

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
    VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use crate::config::CorsConfig;

/// Methods a dashboard may use; `HEAD` and `GET` are CORS-safelisted anyway.
const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";

/// Request headers a dashboard may send: the proxy's own (key, tenant, request id) and the
/// non-safelisted ones the Defender and Graph APIs understand. A fixed list rather than an echo
/// of `Access-Control-Request-Headers`, so a page cannot talk the proxy into allowing anything.
const ALLOW_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "content-type",
    "x-defender-tenant",
    "x-request-id",
    "accept",
    "accept-language",
    "content-language",
    "if-match",
    "if-none-match",
    "prefer",
    "consistencylevel",
];

/// Response headers a page may read besides the safelisted ones.
const EXPOSE_HEADERS: &str = "x-request-id, retry-after";

/// The `[cors]` policy.
#[derive(Debug, Clone)]
pub struct Cors {
    /// Exact origins, lower-cased (browsers send scheme and host lower-case).
    origins: Vec<String>,
    max_age: HeaderValue,
    allow_headers: HeaderValue,
}

/// A browser request from an origin `[cors]` does not allow; the proxy answers 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("requests from origin '{0}' are not allowed")]
pub struct ForeignOrigin(pub String);

impl Cors {
    /// The policy of `cfg`, allowing the default tenant header (see [`Cors::with_tenant_header`]).
    pub fn new(cfg: &CorsConfig) -> Self {
        Cors {
            origins: cfg
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            max_age: HeaderValue::from(cfg.max_age.as_secs()),
            allow_headers: HeaderValue::from_static(""),
        }
        .with_tenant_header(&HeaderName::from_static("x-defender-tenant"))
    }

    /// Also allows `name` in preflights: the configured `[routing] tenant_header`.
    pub fn with_tenant_header(mut self, name: &HeaderName) -> Self {
        let mut list = ALLOW_HEADERS.join(", ");
        if !ALLOW_HEADERS.contains(&name.as_str()) {
            list.push_str(", ");
            list.push_str(name.as_str());
        }
        // Header names are valid header-value bytes, so this never falls back.
        self.allow_headers =
            HeaderValue::from_str(&list).unwrap_or_else(|_| HeaderValue::from_static(""));
        self
    }

    /// Whether any origin is allowed at all.
    pub fn is_enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    /// The request's `Origin`, when `[cors]` allows it.
    fn allowed_origin<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        let origin = headers.get(ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(text))
            .then_some(origin)
    }

    /// Answers a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`):
    /// `204` with the allowances for an allowed origin, `403` with no CORS header otherwise (the
    /// browser then blocks the real request). `None` when the request is not a preflight.
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Response<()>> {
        if method != Method::OPTIONS
            || !headers.contains_key(ORIGIN)
            || !headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let mut response = Response::new(());
        let out = response.headers_mut();
        out.insert(VARY, HeaderValue::from_static("origin"));
        match self.allowed_origin(headers) {
            Some(origin) => {
                *response.status_mut() = StatusCode::NO_CONTENT;
                let out = response.headers_mut();
                out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                out.insert(
                    ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static(ALLOW_METHODS),
                );
                out.insert(ACCESS_CONTROL_ALLOW_HEADERS, self.allow_headers.clone());
                out.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
            }
            None => *response.status_mut() = StatusCode::FORBIDDEN,
        }
        Some(response)
    }

    /// Refuses a browser request from a page whose origin is not allowed. Browsers send
    /// "simple" cross-origin requests (a `GET`, or a `POST` with a form content type) without a
    /// preflight, so without this check any web page the operator visits could make a loopback
    /// proxy act on a customer tenant, even if it could not read the answer. Requests without
    /// `Origin` (every non-browser tool) pass.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), ForeignOrigin> {
        match headers.get(ORIGIN) {
            None => Ok(()),
            Some(_) if self.allowed_origin(headers).is_some() => Ok(()),
            Some(origin) => Err(ForeignOrigin(
                String::from_utf8_lossy(origin.as_bytes()).into_owned(),
            )),
        }
    }

    /// Sets the CORS headers of a normal response: drops any the API sent, and for an allowed
    /// `Origin` adds `Access-Control-Allow-Origin`, `Access-Control-Expose-Headers` and
    /// `Vary: Origin` (the latter also for refused origins, so caches keep answers apart).
    pub fn decorate(&self, request_headers: &HeaderMap, response_headers: &mut HeaderMap) {
        let upstream_cors: Vec<HeaderName> = response_headers
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in upstream_cors {
            response_headers.remove(name);
        }
        if !self.is_enabled() || !request_headers.contains_key(ORIGIN) {
            return;
        }
        add_vary_origin(response_headers);
        if let Some(origin) = self.allowed_origin(request_headers) {
            response_headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            response_headers.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
    }
}

/// Appends `origin` to `Vary` unless it is already there (or `Vary: *` covers it).
fn add_vary_origin(headers: &mut HeaderMap) {
    let present = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.eq_ignore_ascii_case("origin")
        });
    if !present {
        headers.append(VARY, HeaderValue::from_static("origin"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    const DASH: &str = "https://dashboards.soc.example";

    fn cors() -> Cors {
        Cors::new(&CorsConfig {
            allowed_origins: vec![format!("{DASH}/")],
            max_age: Duration::from_secs(600),
        })
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::from_static(n),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn preflight_from(origin: &str) -> HeaderMap {
        headers(&[
            ("origin", origin),
            ("access-control-request-method", "GET"),
            (
                "access-control-request-headers",
                "x-api-key, x-defender-tenant",
            ),
        ])
    }

    #[test]
    fn allowed_preflight_gets_204_with_the_allowances() {
        let r = cors()
            .preflight(&Method::OPTIONS, &preflight_from(DASH))
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let h = r.headers();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], DASH);
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], ALLOW_METHODS);
        let allowed = h[ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
        for name in [
            "authorization",
            "x-api-key",
            "content-type",
            "x-defender-tenant",
            "x-request-id",
        ] {
            assert!(
                allowed.split(", ").any(|n| n == name),
                "{name} in {allowed}"
            );
        }
        assert_eq!(h[ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(h[VARY], "origin");
        assert!(h.get("access-control-allow-credentials").is_none());
    }

    #[test]
    fn denied_preflight_gets_403_without_cors_headers() {
        for c in [cors(), Cors::new(&CorsConfig::default())] {
            let r = c
                .preflight(&Method::OPTIONS, &preflight_from("https://evil.example"))
                .unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
            assert!(r
                .headers()
                .keys()
                .all(|k| !k.as_str().starts_with("access-control-")));
        }
        // Nothing is allowed by default, not even the dashboard.
        let r = Cors::new(&CorsConfig::default())
            .preflight(&Method::OPTIONS, &preflight_from(DASH))
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn only_real_preflights_are_answered() {
        let c = cors();
        assert!(c.preflight(&Method::GET, &preflight_from(DASH)).is_none());
        assert!(c
            .preflight(&Method::OPTIONS, &headers(&[("origin", DASH)]))
            .is_none());
        let no_origin = headers(&[("access-control-request-method", "GET")]);
        assert!(c.preflight(&Method::OPTIONS, &no_origin).is_none());
    }

    #[test]
    fn a_custom_tenant_header_is_allowed() {
        let c = cors().with_tenant_header(&HeaderName::from_static("x-customer"));
        let r = c
            .preflight(&Method::OPTIONS, &preflight_from(DASH))
            .unwrap();
        let allowed = r.headers()[ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
        assert!(allowed.ends_with(", x-customer"), "{allowed}");
        assert!(allowed.contains("x-defender-tenant"));
    }

    #[test]
    fn decorate_adds_headers_for_an_allowed_origin() {
        let mut out = headers(&[("vary", "accept-encoding")]);
        cors().decorate(&headers(&[("origin", DASH)]), &mut out);
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], DASH);
        assert_eq!(out[ACCESS_CONTROL_EXPOSE_HEADERS], EXPOSE_HEADERS);
        let vary: Vec<_> = out.get_all(VARY).iter().collect();
        assert_eq!(vary, ["accept-encoding", "origin"]);
        // Twice does not add Vary twice.
        cors().decorate(&headers(&[("origin", DASH)]), &mut out);
        assert_eq!(out.get_all(VARY).iter().count(), 2);
    }

    #[test]
    fn decorate_drops_upstream_cors_and_adds_nothing_for_others() {
        let upstream = || {
            headers(&[
                ("access-control-allow-origin", "*"),
                ("access-control-allow-credentials", "true"),
                ("content-type", "application/json"),
            ])
        };
        let mut out = upstream();
        cors().decorate(&headers(&[("origin", "https://evil.example")]), &mut out);
        assert!(out.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(out.get("access-control-allow-credentials").is_none());
        assert_eq!(out[VARY], "origin");
        assert_eq!(out["content-type"], "application/json");
        let mut out = upstream();
        Cors::new(&CorsConfig::default()).decorate(&HeaderMap::new(), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn foreign_origins_are_refused_and_tools_pass() {
        let c = cors();
        assert_eq!(c.check_origin(&HeaderMap::new()), Ok(()));
        assert_eq!(c.check_origin(&headers(&[("origin", DASH)])), Ok(()));
        // Browsers send scheme and host lower-case; the config might not be.
        assert_eq!(
            c.check_origin(&headers(&[("origin", "HTTPS://dashboards.soc.example")])),
            Ok(())
        );
        let err = c
            .check_origin(&headers(&[("origin", "https://evil.example")]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "requests from origin 'https://evil.example' are not allowed"
        );
        assert!(Cors::new(&CorsConfig::default())
            .check_origin(&headers(&[("origin", "null")]))
            .is_err());
    }
}
