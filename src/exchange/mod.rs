//! The upstream exchange of one request (step 6 of the hot path): the tenant's rate limit,
//! the client's body, the tenant's token, the request sent (and replayed once after a 401), and
//! the API's links pointed back at the proxy.
//!
//! A legacy advanced-hunting request answered through Graph has its own exchange, `graph.rs`,
//! made of the same steps.

mod graph;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::error::ProxyError;
use crate::headers;
use crate::hunting::Hunting;
use crate::idle::ClientBody;
use crate::metrics::UpstreamWarnings;
use crate::rewrite::{self, ResponseStream};
use crate::snapshot::Snapshot;
use crate::target::Target;
use crate::telemetry::spans;
use crate::upstream::{RequestBody, Upstream, UpstreamBody};

/// Bodies up to this size are kept so the request can be replayed once after an upstream 401.
pub(crate) const REPLAY_LIMIT: usize = 64 * 1024;

/// Rate limit, body, token, send; on 401 drop the token and, if the body allows, replay once.
pub(crate) async fn forward(
    mut parts: Parts,
    body: Incoming,
    target: Target,
    snapshot: &Snapshot,
    request_id: &HeaderValue,
) -> Result<Response<ResponseStream>, ProxyError> {
    if let Hunting::Graph(graph) = target.hunting {
        return graph::forward(parts, body, target, graph, snapshot, request_id).await;
    }
    let policy = &snapshot.inbound;
    let tenant = &target.tenant;

    // 4. The tenant's rate limit for this route class: wait in its queue or refuse.
    let waiting = spans::rate_limit(&target.trace);
    let admission = spans::admitted(waiting, tenant.limits.admit(target.class).await)?;
    if let Some(latency) = &target.by_api {
        latency.observe_wait(admission.waited);
    }

    // 5. The body: streamed, or kept when small so a 401 can be replayed.
    let body = ClientBody::new(body, policy.body_idle_timeout);
    let body = request_body(body, &parts.headers, policy.max_body_bytes).await?;

    // 6. The tenant's token (a lock-free read once warm), taken last so the freshest token goes
    //    out; then the headers: cleaned, token and request id set.
    let slot = &target.api().token;
    let token = spans::token(&target.trace, slot.get()).await?;
    headers::prepare_upstream(
        &mut parts.headers,
        snapshot.routes.header(),
        token.authorization(),
        request_id,
    );
    let replay = body
        .try_clone()
        .map(|b| (parts.method.clone(), parts.headers.clone(), b));
    let request = build(parts.method, target.uri.clone(), parts.headers, body);

    // 7. Send; on 401 drop the token and, if the body allows, replay once with a fresh one.
    let response = send(&snapshot.upstream, &target, request).await?;
    if response.status() != StatusCode::UNAUTHORIZED {
        return Ok(relink(response, target));
    }
    let fresh_worthwhile = slot.invalidate(&token);
    let Some((method, mut headers, body)) = replay.filter(|_| fresh_worthwhile) else {
        return Ok(relink(response, target));
    };
    drop(response);
    let fresh = spans::token(&target.trace, slot.get()).await?;
    headers.insert(header::AUTHORIZATION, fresh.authorization().clone());
    tracing::info!(
        tenant = &*tenant.name,
        "upstream answered 401; retrying once with a fresh token"
    );
    let request = build(method, target.uri.clone(), headers, body);
    let response = send(&snapshot.upstream, &target, request).await?;
    Ok(relink(response, target))
}

/// Point the API's own links (paging, `Location`) back at the proxy: the same tenant prefix and
/// API prefix the client used, so a tool following `@odata.nextLink` stays on the proxy. The
/// body is rewritten as it streams (see [`crate::rewrite`]); non-JSON bodies pass untouched.
fn relink(response: Response<UpstreamBody>, target: Target) -> Response<ResponseStream> {
    let (mut parts, body) = response.into_parts();
    let plan = rewrite::plan(&parts.headers);
    if plan == rewrite::Plan::Passthrough && !parts.headers.contains_key(header::LOCATION) {
        return Response::from_parts(parts, rewrite::passthrough(body));
    }
    let Target {
        tenant,
        api,
        link_to,
        ..
    } = target;
    let rewriter = tenant.apis[api].target.links.to(link_to);
    if let Some(location) = parts.headers.get(header::LOCATION) {
        if let Some(relinked) = rewrite::rewrite_location(location, &rewriter) {
            parts.headers.insert(header::LOCATION, relinked);
        }
    }
    let body = rewrite::wrap(body, plan, &mut parts.headers, &rewriter);
    Response::from_parts(parts, body)
}

/// One upstream exchange, timed; an upstream 429 pauses the tenant's route class.
async fn send(
    upstream: &Upstream,
    target: &Target,
    mut request: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let tenant = &target.tenant;
    let span = spans::upstream(&target.trace, &mut request);
    let started = Instant::now();
    let response = upstream.send(request).await;
    spans::answered_upstream(span, &response);
    let elapsed = started.elapsed();
    tenant.metrics.observe_upstream(elapsed);
    if let Some(latency) = &target.by_api {
        latency.observe_upstream(elapsed);
    }
    let response = response?;
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        tenant
            .limits
            .upstream_throttled(target.class, response.headers().get(header::RETRY_AFTER));
    }
    Ok(note_warnings(target, response))
}

/// The API's own warnings (throttle headers, `Retry-After`, a partial 206), counted for the API
/// the request went to and kept on the response for its access line (see
/// [`crate::metrics::UpstreamWarnings`]: two header lookups when there are none).
fn note_warnings(target: &Target, mut response: Response<UpstreamBody>) -> Response<UpstreamBody> {
    if let Some(warned) = UpstreamWarnings::read(response.status(), response.headers()) {
        target.upstream_api().warnings.record(&warned);
        response.extensions_mut().insert(Arc::new(warned));
    }
    response
}

fn build(method: Method, uri: Uri, headers: HeaderMap, body: RequestBody) -> Request<RequestBody> {
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    // Upstream speaks what ALPN chooses; the client's own version is not passed on.
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    request
}

/// Empty; kept whole when it turns out to be at most [`REPLAY_LIMIT`] (whatever the framing);
/// else streamed, the part already read going first. A body declared larger is streamed at once.
/// With `limit`, a declared length over it is refused at once (413), and so is a body without one
/// that passes the limit while being kept; a longer streamed body is cut off upstream.
async fn request_body(
    mut body: ClientBody,
    headers: &HeaderMap,
    limit: Option<u64>,
) -> Result<RequestBody, ProxyError> {
    if body.is_end_stream() {
        return Ok(RequestBody::Empty);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let (Some(limit), Some(len)) = (limit, declared) {
        if len > limit {
            return Err(ProxyError::BodyTooLarge(limit));
        }
    }
    if declared.is_some_and(|len| len > REPLAY_LIMIT as u64) {
        return Ok(RequestBody::streamed(None, body));
    }
    let mut kept = BytesMut::new();
    loop {
        match body.frame().await {
            None => return Ok(RequestBody::kept(kept.freeze(), None)),
            Some(Err(fault)) => return Err(fault.into()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    kept.extend_from_slice(&data);
                    if let Some(limit) = limit.filter(|l| kept.len() as u64 > *l) {
                        return Err(ProxyError::BodyTooLarge(limit));
                    }
                    if kept.len() > REPLAY_LIMIT {
                        let prefix: Bytes = kept.freeze();
                        return Ok(RequestBody::streamed(Some(prefix), body));
                    }
                }
                Err(frame) => {
                    let trailers = frame.into_trailers().ok();
                    return Ok(RequestBody::kept(kept.freeze(), trailers));
                }
            },
        }
    }
}
