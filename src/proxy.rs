//! The hot path. `handle()` is the only place that turns an error into a response and the only
//! place an access line is made; `handle_inner()` is the request's way through, as numbered steps.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::{AccessLog, ResponseBody};
use crate::error::{ProxyError, UpstreamFailure};
use crate::headers;
use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::routing::{self, RequestError, RouteTable, Tenant};
use crate::upstream::{RequestBody, Upstream};

/// Bodies up to this size are kept so the request can be replayed once after an upstream 401.
pub const REPLAY_LIMIT: u64 = 64 * 1024;

/// Where the default API lives; cloned into every upstream URI (both are cheap `Bytes` clones).
#[derive(Debug, Clone)]
pub struct ApiBase {
    pub scheme: Scheme,
    pub authority: Authority,
}

impl ApiBase {
    pub fn from_uri(uri: &Uri) -> Option<Self> {
        Some(ApiBase {
            scheme: uri.scheme()?.clone(),
            authority: uri.authority()?.clone(),
        })
    }
}

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub struct Proxy {
    pub routes: ArcSwap<RouteTable>,
    pub upstream: Upstream,
    pub api: ApiBase,
    pub metrics: Arc<Metrics>,
}

/// A request that reached the API, with the parts the access line needs.
struct Forwarded {
    response: Response<Incoming>,
}

impl Proxy {
    /// Answer one client request. Never fails: errors become their contract response here.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        let start = Instant::now();
        let request_id = headers::request_id(request.headers());
        let method = request.method().clone();
        let uri = request.uri().clone();
        let mut tenant: Option<Arc<str>> = None;

        let result = self.handle_inner(request, &request_id, &mut tenant).await;
        let mut log = AccessLog {
            metrics: self.metrics.clone(),
            start,
            request_id: request_id.clone(),
            tenant,
            method,
            uri,
            status: 0,
            bytes: 0,
            complete: false,
        };
        match result {
            Ok(Forwarded { response }) => {
                let (mut parts, body) = response.into_parts();
                headers::prepare_downstream(&mut parts.headers, &request_id);
                log.status = parts.status.as_u16();
                Response::from_parts(parts, ResponseBody::upstream(body, log))
            }
            Err(err) => {
                self.note_error(&err);
                log.status = err.status().as_u16();
                let mut response = Response::new(ResponseBody::full(err.body(), Some(log)));
                *response.status_mut() = err.status();
                let h = response.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                h.insert(headers::REQUEST_ID.clone(), request_id);
                response
            }
        }
    }

    fn note_error(&self, err: &ProxyError) {
        let kind = match err {
            ProxyError::UpstreamUnavailable(UpstreamFailure::Connect(_)) => {
                UpstreamErrorKind::Connect
            }
            ProxyError::UpstreamUnavailable(UpstreamFailure::Request(_)) => {
                UpstreamErrorKind::Request
            }
            ProxyError::UpstreamTimeout(_) => UpstreamErrorKind::Timeout,
            ProxyError::Token(_) => UpstreamErrorKind::Token,
            ProxyError::UnknownTenant(_)
            | ProxyError::NoTenant(_)
            | ProxyError::BadPath(_)
            | ProxyError::BadRequest(_) => return,
        };
        self.metrics.record_upstream_error(kind);
        tracing::warn!(error = %err, "request failed");
    }

    async fn handle_inner(
        &self,
        request: Request<Incoming>,
        request_id: &HeaderValue,
        tenant_label: &mut Option<Arc<str>>,
    ) -> Result<Forwarded, ProxyError> {
        let (mut parts, body) = request.into_parts();

        // 1. Only origin-form requests of a reverse proxy.
        routing::check_request(&parts.method, &parts.uri, parts.version)?;

        // 2. Path checks, then tenant and upstream path, from the current route snapshot.
        let routes = self.routes.load();
        let (tenant, upstream_uri) = {
            let route = routes.resolve(&parts.uri, &parts.headers)?;
            let uri = Uri::builder()
                .scheme(self.api.scheme.clone())
                .authority(self.api.authority.clone())
                .path_and_query(route.upstream_path.as_ref())
                .build()
                .map_err(|_| routing::PathError::NotAbsolute)?;
            (route.tenant, uri)
        };
        *tenant_label = Some(tenant.name.clone());

        // 3. (inbound auth) and 4. (rate limits) slot in here.

        // 5. The tenant's token: a lock-free read once warm.
        let token = tenant.token.get().await?;

        // 6. The upstream request: headers cleaned, token and request id set, body streamed
        //    (or kept, when small, so a 401 can be replayed with a fresh token).
        headers::prepare_upstream(
            &mut parts.headers,
            routes.header(),
            token.authorization(),
            request_id,
        );
        let body = request_body(body, &parts.headers).await?;
        let replay = body
            .try_clone()
            .map(|b| (parts.method.clone(), parts.headers.clone(), b));
        let request = build(parts.method, upstream_uri.clone(), parts.headers, body);

        // 7. Send; on 401 drop the token and, if the body allows, replay once with a fresh one.
        let response = self.upstream.send(request).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(Forwarded { response });
        }
        tenant.token.invalidate(&token);
        let Some((method, mut headers, body)) = replay else {
            return Ok(Forwarded { response });
        };
        drop(response);
        let fresh = tenant.token.get().await?;
        let mut auth = fresh.authorization().clone();
        auth.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, auth);
        tracing::info!(
            tenant = &*tenant.name,
            "upstream answered 401; retrying once with a fresh token"
        );
        let response = self
            .upstream
            .send(build(method, upstream_uri, headers, body))
            .await?;
        Ok(Forwarded { response })
    }

    /// The tenants currently routed to, for admin and metrics.
    pub fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.routes.load().tenants().cloned().collect()
    }
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

/// Empty, kept (small, known length), or streamed.
async fn request_body(body: Incoming, headers: &HeaderMap) -> Result<RequestBody, ProxyError> {
    if body.is_end_stream() {
        return Ok(RequestBody::Empty);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len <= REPLAY_LIMIT => {
            let collected = Limited::new(body, REPLAY_LIMIT as usize)
                .collect()
                .await
                .map_err(|_| RequestError::BodyRead)?;
            let data: Bytes = collected.to_bytes();
            Ok(RequestBody::Kept { data: Some(data) })
        }
        _ => Ok(RequestBody::Streamed { body }),
    }
}
