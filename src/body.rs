//! The response body the proxy returns, and the access-log line written when it ends.
//!
//! Logging at the end of the body (not at the response headers) is what gives the access line
//! its true byte count and duration, and records streams the client abandoned.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::rewrite::{BoxError, ResponseStream};
use bytes::Bytes;
use http::{HeaderValue, Method, Uri};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::idle::IdleTimeout;
use crate::inbound::{AuditEntry, AuditLog};
use crate::metrics::{
    ApiLatency, Scrape, StatusCounts, TenantMetrics, UpstreamErrorKind, UpstreamWarnings,
};
use crate::share::{Downstream, SharedBody};
use crate::tenant::Tenant;

pin_project_lite::pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner {
        Upstream { #[pin] body: ResponseStream },
        // A coalesced (or cache-filling) request's copy of the shared upstream body.
        Shared { #[pin] body: SharedBody },
        Full { data: Option<Bytes> },
        // `/metrics`, rendered a chunk at a time as hyper asks for it.
        Scrape { scrape: Scrape },
        // An admin answer rendered a chunk at a time (`GET /tenants` of thousands of tenants).
        Chunks { chunks: Chunks },
    }
}

/// A body made by the proxy piece by piece as hyper asks for it, never held whole.
pub(crate) struct Chunks {
    next: Option<Bytes>,
    rest: Box<dyn Iterator<Item = Bytes> + Send + Sync>,
}

impl Chunks {
    pub(crate) fn new(chunks: impl Iterator<Item = Bytes> + Send + Sync + 'static) -> Self {
        let mut rest = Box::new(chunks);
        // One ahead, so the body knows when it has ended.
        let next = rest.next();
        Chunks { next, rest }
    }

    fn take(&mut self) -> Option<Bytes> {
        let out = self.next.take()?;
        self.next = self.rest.next();
        Some(out)
    }
}

impl std::fmt::Debug for Chunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunks").finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// Either the API's body streamed through, or a body the proxy made (errors, admin).
    #[derive(Debug)]
    pub struct ResponseBody {
        #[pin]
        inner: Inner,
        log: Option<AccessLog>,
        // After `log`: the request's trace span ends after its access line is written.
        trace: tracing::Span,
    }

    impl PinnedDrop for ResponseBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(log) = this.log.as_ref() {
                crate::telemetry::spans::answered(this.trace, log.status, log.bytes);
            }
        }
    }
}

impl ResponseBody {
    pub fn downstream(body: Downstream, mut log: AccessLog) -> Self {
        match body {
            Downstream::Upstream(body) => ResponseBody::upstream(body, log),
            Downstream::Full(data) => ResponseBody::full(data, Some(log)),
            Downstream::Shared(body) => {
                log.complete = body.is_end_stream();
                ResponseBody {
                    inner: Inner::Shared { body },
                    log: Some(log),
                    trace: tracing::Span::none(),
                }
            }
        }
    }

    pub fn upstream(body: ResponseStream, mut log: AccessLog) -> Self {
        // hyper never polls a body that says it is empty (204, HEAD), so mark it here.
        log.complete = body.is_end_stream();
        ResponseBody {
            inner: Inner::Upstream { body },
            log: Some(log),
            trace: tracing::Span::none(),
        }
    }

    /// A body made whole by the proxy; the log (if any) counts its length at once.
    pub fn full(data: Bytes, mut log: Option<AccessLog>) -> Self {
        if let Some(log) = log.as_mut() {
            log.bytes = data.len() as u64;
            log.complete = true;
        }
        let data = if data.is_empty() { None } else { Some(data) };
        ResponseBody {
            inner: Inner::Full { data },
            log,
            trace: tracing::Span::none(),
        }
    }

    /// The `/metrics` text, rendered while it is sent (see [`crate::metrics::scrape`]).
    pub(crate) fn scrape(scrape: Scrape) -> Self {
        ResponseBody {
            inner: Inner::Scrape { scrape },
            log: None,
            trace: tracing::Span::none(),
        }
    }

    /// A body the proxy renders while it is sent.
    pub(crate) fn chunks(chunks: Chunks) -> Self {
        ResponseBody {
            inner: Inner::Chunks { chunks },
            log: None,
            trace: tracing::Span::none(),
        }
    }

    /// With the request's trace span, which ends (status and bytes recorded) with the body.
    pub(crate) fn traced(mut self, span: tracing::Span) -> Self {
        self.trace = span;
        self
    }

    pub fn empty() -> Self {
        ResponseBody {
            inner: Inner::Full { data: None },
            log: None,
            trace: tracing::Span::none(),
        }
    }
}

impl From<Bytes> for ResponseBody {
    fn from(data: Bytes) -> Self {
        ResponseBody::full(data, None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.project() {
            InnerProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            InnerProj::Scrape { scrape } => {
                Poll::Ready(scrape.next_chunk().map(|d| Ok(Frame::data(d))))
            }
            InnerProj::Chunks { chunks } => Poll::Ready(chunks.take().map(|d| Ok(Frame::data(d)))),
            InnerProj::Upstream { mut body } => {
                let polled = body.as_mut().poll_frame(cx);
                let ended = body.is_end_stream();
                count(this.log, &polled, ended);
                polled
            }
            InnerProj::Shared { mut body } => {
                let polled = body.as_mut().poll_frame(cx);
                let ended = body.is_end_stream();
                count(this.log, &polled, ended);
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream { body } => body.is_end_stream(),
            Inner::Shared { body } => body.is_end_stream(),
            Inner::Full { data } => data.is_none(),
            Inner::Scrape { scrape } => scrape.is_end(),
            Inner::Chunks { chunks } => chunks.next.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream { body } => body.size_hint(),
            Inner::Shared { body } => body.size_hint(),
            Inner::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Inner::Scrape { .. } | Inner::Chunks { .. } => SizeHint::default(),
        }
    }
}

/// Counts a streamed frame in the access line.
fn count(
    log: &mut Option<AccessLog>,
    polled: &Poll<Option<Result<Frame<Bytes>, BoxError>>>,
    ended: bool,
) {
    if let Some(log) = log.as_mut() {
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    log.bytes += data.len() as u64;
                }
                // hyper stops polling once the body says it has ended (a known length
                // reached), so the final `None` may never be seen.
                if ended {
                    log.complete = true;
                }
            }
            Poll::Ready(None) => log.complete = true,
            Poll::Ready(Some(Err(error))) => log.body_failed(error),
            Poll::Pending => {}
        }
    }
}

/// What the access line says about one request; written (and counted) when dropped.
#[derive(Debug)]
pub struct AccessLog {
    /// The tenant's counters (or the untenanted ones until routing found a tenant).
    pub metrics: Arc<TenantMetrics>,
    /// Where the status is counted: the tenant's counters for the request's API, once routing
    /// found them (until then, the untenanted counters' own).
    pub requests: Option<Arc<StatusCounts>>,
    /// With `[metrics] per_tenant_histograms = false`: the histograms of the request's API (or
    /// the unrouted ones until routing found one), fed besides the tenant's.
    pub api: Option<Arc<ApiLatency>>,
    pub start: Instant,
    pub request_id: HeaderValue,
    /// The routed tenant (its name, app and cloud are logged).
    pub tenant: Option<Arc<Tenant>>,
    pub method: Method,
    /// The request target; only its path is logged (queries may carry secrets).
    pub uri: Uri,
    pub status: u16,
    pub bytes: u64,
    /// The body reached its end (false: the client went away or the stream broke).
    pub complete: bool,
    /// The identified `[[client]]`, when inbound authentication is on.
    pub client: Option<Arc<str>>,
    pub peer: Option<SocketAddr>,
    /// Where the audit line goes, when `[audit]` is configured.
    pub audit: Option<AuditLog>,
    /// The answer was shared with another request's upstream request (see [`crate::share`]).
    pub coalesced: bool,
    /// What the cache did (`HIT`, `MISS`, `BYPASS`), when `[cache]` is on.
    pub cache: Option<&'static str>,
    /// A legacy advanced-hunting request answered through Graph.
    pub translated: bool,
    /// What the API warned about on this answer (throttling, `Retry-After`, a partial 206),
    /// when it did; a cache hit has none (the API sent this request nothing).
    pub upstream: Option<Arc<UpstreamWarnings>>,
}

impl AccessLog {
    /// The routed tenant's name, `-` before routing found one.
    pub(crate) fn tenant_name(&self) -> &str {
        self.tenant.as_deref().map_or("-", |t| &*t.name)
    }

    /// The API's warnings on the response, kept for the line (see `exchange::note_warnings`).
    pub(crate) fn note_upstream(&mut self, extensions: &mut http::Extensions) {
        self.upstream = extensions.remove::<Arc<UpstreamWarnings>>();
    }

    /// The API's body broke off or stalled: the client's response ends incomplete (hyper sends
    /// no last chunk, or closes the connection); said once here, counted as an upstream error.
    fn body_failed(&self, error: &BoxError) {
        let kind = if error.downcast_ref::<IdleTimeout>().is_some() {
            UpstreamErrorKind::BodyTimeout
        } else {
            UpstreamErrorKind::Body
        };
        self.metrics.record_upstream_error(kind);
        tracing::warn!(
            request_id = self.request_id.to_str().unwrap_or("-"),
            tenant = self.tenant_name(),
            bytes = self.bytes,
            error = %error,
            "upstream response body ended early; the client's response is incomplete"
        );
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        match &self.requests {
            Some(requests) => requests.record(self.status),
            None => self.metrics.record_status_without_api(self.status),
        }
        self.metrics
            .record_response(self.status, self.bytes, elapsed);
        if let Some(api) = &self.api {
            api.observe_request(elapsed);
        }
        // One event shape per case: an event's fields cost per request even when empty, and
        // the API's warnings are rare.
        macro_rules! access {
            ($($extra:tt)*) => {
                tracing::info!(
                    target: "defender_proxy::access",
                    request_id = self.request_id.to_str().unwrap_or("-"),
                    tenant = self.tenant_name(),
                    app = self.tenant.as_deref().map(|t| &*t.app),
                    cloud = self.tenant.as_deref().map(|t| &*t.cloud),
                    method = %self.method,
                    path = self.uri.path(),
                    status = self.status,
                    bytes = self.bytes,
                    duration_ms = elapsed.as_secs_f64() * 1000.0,
                    complete = self.complete,
                    client = self.client.as_deref(),
                    coalesced = self.coalesced,
                    cache = self.cache,
                    translated = self.translated,
                    $($extra)*
                    "request"
                )
            };
        }
        match self.upstream.as_deref() {
            None => access!(),
            Some(w) => access!(
                throttle_percent = w.throttle_percent,
                throttle_scope = w.throttle_scope.as_deref(),
                throttle_information = w.throttle_information.as_deref(),
                retry_after = w.retry_after,
                partial = w.partial.then_some(true),
                warning = w.warning.as_deref(),
            ),
        }
        if let Some(audit) = &self.audit {
            audit.record(AuditEntry {
                request_id: self.request_id.to_str().unwrap_or("-").to_owned(),
                client: self.client.clone(),
                peer: self.peer,
                tenant: self.tenant.as_ref().map(|t| t.name.clone()),
                app: self.tenant.as_ref().map(|t| t.app.clone()),
                cloud: self.tenant.as_ref().map(|t| t.cloud.clone()),
                method: self.method.clone(),
                path: self.uri.path().to_owned(),
                status: self.status,
                bytes: self.bytes,
                duration: elapsed,
                complete: self.complete,
            });
        }
    }
}
