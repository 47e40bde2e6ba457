//! A legacy advanced-hunting request (`POST .../api/advancedhunting/run` or
//! `.../api/advancedqueries/run`) answered through Graph's `runHuntingQuery`: the client's query
//! made Graph's, the tenant's hunting class admitted, the tenant's Graph token, Graph's answer
//! translated into the legacy shape as it streams, Graph's errors told in Defender's shape.

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::{build, request_body, send, REPLAY_LIMIT};
use crate::api::ApiTarget;
use crate::config::GRAPH_HUNTING_PATH;
use crate::error::ProxyError;
use crate::headers;
use crate::hunting::{query, reply::GraphError};
use crate::idle::ClientBody;
use crate::rewrite::{self, ResponseStream};
use crate::routing;
use crate::snapshot::Snapshot;
use crate::target::Target;
use crate::telemetry::spans;
use crate::token::AccessToken;
use crate::upstream::{RequestBody, UpstreamBody};

/// The most of a Graph error body read (Graph's are a few hundred bytes).
const ERROR_BODY_LIMIT: usize = 16 * 1024;
/// `; charset=utf-8`: Graph wants it said for queries that are not ASCII.
const JSON_UTF8: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The Graph exchange of a legacy hunting request, `graph` the index of the tenant's Graph API.
pub(super) async fn forward(
    parts: Parts,
    body: Incoming,
    target: Target,
    graph: usize,
    snapshot: &Snapshot,
    request_id: &HeaderValue,
) -> Result<Response<ResponseStream>, ProxyError> {
    let policy = &snapshot.inbound;
    let tenant = &target.tenant;

    // The query first: a body the proxy can't translate is refused before it takes a
    // rate-limit slot or a token, and Graph never sees it. A query is small: one body that can
    // be replayed after a 401.
    let body = ClientBody::new(body, policy.body_idle_timeout);
    let limit = policy
        .max_body_bytes
        .map_or(REPLAY_LIMIT as u64, |l| l.min(REPLAY_LIMIT as u64));
    let query = match request_body(body, &parts.headers, Some(limit)).await? {
        RequestBody::Kept { data, .. } => query::graph_body(data.as_deref().unwrap_or_default())?,
        RequestBody::Empty => query::graph_body(b"")?,
        RequestBody::Streamed(_) => return Err(ProxyError::BodyTooLarge(limit)),
    };

    // The tenant's Graph hunting class (Graph's per-tenant limit; a 429 pauses only it).
    let waiting = spans::rate_limit(&target.trace);
    let admission = spans::admitted(waiting, tenant.limits.admit(target.class).await)?;
    if let Some(latency) = &target.by_api {
        latency.observe_wait(admission.waited);
    }

    // The tenant's Graph token, taken last; on 401 dropped and the query sent once more.
    let api = &tenant.apis[graph];
    let uri = graph_uri(&api.target)?;
    let token = spans::token(&target.trace, api.token.get()).await?;
    let mut sent_at = Instant::now();
    let request = build(
        Method::POST,
        uri.clone(),
        graph_headers(&token, request_id),
        RequestBody::kept(query.clone(), None),
    );
    let mut response = send(&snapshot.upstream, &target, request).await?;
    if response.status() == StatusCode::UNAUTHORIZED && api.token.invalidate(&token) {
        drop(response);
        let fresh = spans::token(&target.trace, api.token.get()).await?;
        tracing::info!(
            tenant = &*tenant.name,
            "Graph answered 401 to a hunting query; retrying once with a fresh token"
        );
        sent_at = Instant::now();
        let request = build(
            Method::POST,
            uri,
            graph_headers(&fresh, request_id),
            RequestBody::kept(query, None),
        );
        response = send(&snapshot.upstream, &target, request).await?;
    }
    let extensions = std::mem::take(response.extensions_mut());
    Ok(with_warnings(
        answer(response, &target, sent_at, snapshot).await,
        extensions,
    ))
}

/// Graph's warnings (see `note_warnings`) stay with the answer made from Graph's, for its
/// access line.
fn with_warnings(
    mut response: Response<ResponseStream>,
    extensions: http::Extensions,
) -> Response<ResponseStream> {
    *response.extensions_mut() = extensions;
    response
}

/// `runHuntingQuery` on the tenant's Graph API.
fn graph_uri(api: &ApiTarget) -> Result<Uri, ProxyError> {
    Uri::builder()
        .scheme(api.base.scheme.clone())
        .authority(api.base.authority.clone())
        .path_and_query(GRAPH_HUNTING_PATH)
        .build()
        .map_err(|_| routing::PathError::NotAbsolute.into())
}

/// Graph's request headers, made afresh: nothing of the client's is meant for Graph but the
/// query (and the request id, to follow the request across).
fn graph_headers(token: &AccessToken, request_id: &HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(4);
    let mut authorization = token.authorization().clone();
    authorization.set_sensitive(true);
    headers.insert(header::AUTHORIZATION, authorization);
    headers.insert(header::CONTENT_TYPE, JSON_UTF8);
    headers.insert(header::ACCEPT, JSON);
    headers.insert(headers::REQUEST_ID.clone(), request_id.clone());
    headers
}

/// Graph's answer as the legacy API would have given it: a 200 translated as it streams; an
/// error read (its first [`ERROR_BODY_LIMIT`] bytes) and told in Defender's shape, a 429 with its
/// `Retry-After` (the class is paused already, by `send`), the CPU-quota 400 as a 429 that
/// pauses the tenant's hunting class for `quota_retry_after`.
async fn answer(
    response: Response<UpstreamBody>,
    target: &Target,
    sent_at: Instant,
    snapshot: &Snapshot,
) -> Response<ResponseStream> {
    let (parts, body) = response.into_parts();
    let mut headers = HeaderMap::with_capacity(3);
    // Graph's own request id, which Microsoft support asks for.
    for name in ["request-id", "client-request-id"] {
        if let Some(value) = parts.headers.get(name) {
            headers.insert(name, value.clone());
        }
    }
    if parts.status == StatusCode::OK {
        headers.insert(header::CONTENT_TYPE, JSON_UTF8);
        let body = rewrite::hunting(body, &parts.headers, sent_at);
        return respond(StatusCode::OK, headers, body);
    }
    let error = GraphError::read(parts.status, &error_body(body).await);
    let quota = snapshot.hunting.quota_retry_after;
    let retry_after = if error.is_quota() {
        target.tenant.limits.hold(target.class, quota);
        tracing::warn!(
            tenant = &*target.tenant.name,
            pause_secs = quota.as_secs(),
            "Graph refused a hunting query: the tenant's CPU quota is used up; its hunting waits"
        );
        Some(HeaderValue::from(quota.as_secs()))
    } else {
        parts.headers.get(header::RETRY_AFTER).cloned()
    };
    if let Some(retry_after) = retry_after {
        headers.insert(header::RETRY_AFTER, retry_after);
    }
    headers.insert(header::CONTENT_TYPE, JSON);
    respond(error.status(), headers, rewrite::whole(error.body(quota)))
}

fn respond(
    status: StatusCode,
    headers: HeaderMap,
    body: ResponseStream,
) -> Response<ResponseStream> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The first [`ERROR_BODY_LIMIT`] bytes of an error body; what broke off is as far as it came.
async fn error_body(mut body: UpstreamBody) -> Bytes {
    let mut read = BytesMut::new();
    while read.len() < ERROR_BODY_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = ERROR_BODY_LIMIT - read.len();
                    read.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    read.freeze()
}
