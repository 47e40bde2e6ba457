//! The spans of one request, made with `tracing` under [`TARGET`]: `request` (the server span,
//! from the access log's start to the end of the response body), and its children
//! `rate_limit` (the wait in the tenant's queue), `token` (the tenant's token: from the cache,
//! or the wait for its fetch) and `upstream` (one exchange with the API; a replay after a 401
//! is a second one).
//!
//! With telemetry off every span here is disabled: each function checks that first and then
//! runs the step as if it were not there (no header is read or written). Attributes are the
//! request's shape only: tenant and API names, method, path, status, sizes, durations, an
//! AADSTS code. Never a header value, a query, a token or a key.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::error::ProxyError;
use crate::ratelimit::{Admission, RateLimited};
use crate::token::TokenError;

/// The target of every trace span; the log filter turns it off, the trace layer takes only it.
pub(crate) const TARGET: &str = "defender_proxy::trace";

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The request's server span, continuing the client's W3C trace (`traceparent`, `tracestate`)
/// when it sent one.
pub(crate) fn request<B>(request: &Request<B>, request_id: &HeaderValue) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = request.uri().path(),
        request_id = request_id.to_str().unwrap_or("-"),
        tenant = Empty,
        api = Empty,
        http.response.status_code = Empty,
        http.response.body.size = Empty,
        otel.status_code = Empty,
    );
    if !span.is_disabled() {
        let parent = TraceContextPropagator::new().extract(&Client(request.headers()));
        let _ = span.set_parent(parent);
    }
    span
}

/// The tenant and API a request was routed to; the span again, for the exchange's spans.
pub(crate) fn routed(span: &Span, tenant: &str, api: &str) -> Span {
    if span.is_disabled() {
        return Span::none();
    }
    span.record("tenant", tenant);
    span.record("api", api);
    span.clone()
}

/// The request's answer, when its body ended (or the client went away: 499).
pub(crate) fn answered(span: &Span, status: u16, bytes: u64) {
    if !span.is_disabled() {
        span.record("http.response.status_code", status);
        span.record("http.response.body.size", bytes);
        if status >= 500 {
            span.record("otel.status_code", "error");
        }
    }
}

/// The wait in the tenant's rate-limit queue (from now until [`admitted`]), or its refusal.
pub(crate) fn rate_limit(parent: &Span) -> Span {
    tracing::info_span!(
        target: TARGET,
        parent: parent,
        "rate_limit",
        rate_limit.waited_ms = Empty,
        rate_limit.refused = Empty,
        otel.status_code = Empty,
    )
}

/// The rate limit's decision, recorded in its span, which ends here.
pub(crate) fn admitted(
    span: Span,
    result: Result<Admission, RateLimited>,
) -> Result<Admission, RateLimited> {
    if !span.is_disabled() {
        match &result {
            Ok(admission) => {
                span.record("rate_limit.waited_ms", admission.waited.as_secs_f64() * 1e3);
            }
            Err(refused) => {
                span.record("rate_limit.refused", refused.reason());
                span.record("otel.status_code", "error");
            }
        }
    }
    result
}

/// The tenant's token: `token.cached` when the cache had it (no wait), else the wait for its
/// fetch; a failure names Entra's AADSTS code when it sent one. The span ends when the returned
/// future is dropped.
pub(crate) fn token<F>(parent: &Span, get: F) -> TokenWait<F> {
    let span = tracing::info_span!(
        target: TARGET,
        parent: parent,
        "token",
        token.cached = Empty,
        token.aadsts = Empty,
        otel.status_code = Empty,
    );
    TokenWait {
        get,
        span,
        polls: 0,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`token`]: the token slot's, counting its polls (ready at the first: the
    /// cache had it).
    pub(crate) struct TokenWait<F> {
        #[pin]
        get: F,
        span: Span,
        polls: u32,
    }
}

impl<T, F: Future<Output = Result<T, TokenError>>> Future for TokenWait<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if this.span.is_disabled() {
            return this.get.poll(cx);
        }
        *this.polls += 1;
        let result = std::task::ready!(this.get.poll(cx));
        let span = this.span;
        span.record("token.cached", *this.polls == 1 && result.is_ok());
        if let Err(err) = &result {
            span.record("otel.status_code", "error");
            if let Some(code) = err.aadsts() {
                span.record("token.aadsts", format!("AADSTS{code}"));
            }
        }
        Poll::Ready(result)
    }
}

/// One exchange with the API (from now until [`answered_upstream`]): `request`'s
/// `traceparent` (and the trace's `tracestate`) set to this span's, in place of the client's.
pub(crate) fn upstream<B>(parent: &Span, request: &mut Request<B>) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        parent: parent,
        "upstream",
        otel.kind = "client",
        http.request.method = %request.method(),
        server.address = request.uri().host(),
        url.path = request.uri().path(),
        http.response.status_code = Empty,
        otel.status_code = Empty,
    );
    if !span.is_disabled() {
        propagate(&span, request.headers_mut());
    }
    span
}

/// The API's answer (its status), or the failure to get one; the span ends here.
pub(crate) fn answered_upstream<T>(span: Span, response: &Result<Response<T>, ProxyError>) {
    if span.is_disabled() {
        return;
    }
    match response {
        Ok(response) => {
            let status = response.status().as_u16();
            span.record("http.response.status_code", status);
            if status >= 500 {
                span.record("otel.status_code", "error");
            }
        }
        Err(_) => {
            span.record("otel.status_code", "error");
        }
    }
}

/// `span`'s W3C context into `headers`, replacing whatever the client sent; nothing changes
/// when the span is no OpenTelemetry span (a subscriber without the trace layer).
fn propagate(span: &Span, headers: &mut HeaderMap) {
    let cx = span.context();
    if !opentelemetry::trace::TraceContextExt::span(&cx)
        .span_context()
        .is_valid()
    {
        return;
    }
    headers.remove(&TRACEPARENT);
    headers.remove(&TRACESTATE);
    TraceContextPropagator::new().inject_context(&cx, &mut Upstream(headers));
}

/// The client's request headers, as the propagator reads them.
struct Client<'a>(&'a HeaderMap);

impl Extractor for Client<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// The upstream request's headers, as the propagator writes them (an empty `tracestate` is
/// left out).
struct Upstream<'a>(&'a mut HeaderMap);

impl Injector for Upstream<'_> {
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
