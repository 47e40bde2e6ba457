//! The hot path. `handle()` is the only place that turns an error into a response and the only
//! place an access line is made; `handle_inner()` is the request's way through, as numbered steps.

use std::borrow::Cow;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::uri::{Authority, Scheme};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::body::{AccessLog, ResponseBody};
use crate::config::Config;
use crate::config::MetricsConfig;
use crate::conn::ConnInfo;
use crate::error::{ProxyError, UpstreamFailure};
use crate::headers;
use crate::idle::ClientBody;
use crate::inbound::{self, AuditLog};
use crate::listener::ListenOptions;
use crate::metrics::{ApiLatency, Metrics, UpstreamErrorKind};
use crate::ratelimit::RateLimiter;
use crate::rewrite::{self, LinkBase, ResponseStream};
use crate::routing::{self, RequestError, RouteTable, Tenant};
use crate::share::{self, Downstream, Lookup, Outcome, Sharing};
use crate::token::{Chain, TokenBroker};
use crate::upstream::{RequestBody, Upstream, UpstreamBody};

/// Bodies up to this size are kept so the request can be replayed once after an upstream 401.
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// Status logged for a request whose client went away before the response started (as nginx).
const CLIENT_CLOSED: u16 = 499;

/// Where the default API lives; cloned into every upstream URI (both are cheap `Bytes` clones).
#[derive(Debug, Clone)]
pub struct ApiBase {
    pub scheme: Scheme,
    pub authority: Authority,
}

/// One API the proxy forwards to.
#[derive(Debug)]
pub struct ApiTarget {
    /// `default` for `[cloud]`'s, else the `[[api]]` name (a metrics label).
    pub name: Arc<str>,
    /// The path prefix that selects it (`/mde`); `None` for the default API.
    pub prefix: Option<Box<str>>,
    pub base: ApiBase,
    /// The base as it appears in the API's own links (`https://api.security.microsoft.com`).
    pub links: LinkBase,
    /// This API's latency histograms (shown with `[metrics] per_tenant_histograms = false`).
    pub latency: Arc<ApiLatency>,
}

impl ApiTarget {
    /// The rest of `path` if it is under this API's prefix (whole segments, ASCII
    /// case-insensitive).
    pub fn strip<'a>(&self, path: &'a str) -> Option<&'a str> {
        crate::config::strip_api_prefix(self.prefix.as_deref()?, path)
    }
}

/// The API a path selects and the path to send it: an `[[api]]` whose prefix starts the path,
/// else the default API with the path unchanged.
pub fn select_api<'a>(apis: &[ApiTarget], path: &'a str) -> (usize, Cow<'a, str>) {
    for (i, api) in apis.iter().enumerate().skip(1) {
        if let Some(rest) = api.strip(path) {
            let rest = if rest.is_empty() {
                Cow::Borrowed("/")
            } else if rest.starts_with('?') {
                Cow::Owned(format!("/{rest}"))
            } else {
                Cow::Borrowed(rest)
            };
            return (i, rest);
        }
    }
    (0, Cow::Borrowed(path))
}

impl ApiBase {
    pub fn from_uri(uri: &Uri) -> Option<Self> {
        Some(ApiBase {
            scheme: uri.scheme()?.clone(),
            authority: uri.authority()?.clone(),
        })
    }
}

/// What one config makes of the request path, swapped whole on reload: a request loads it once
/// and sees one consistent set of tenants, clients, limits and upstream.
#[derive(Debug)]
pub struct Snapshot {
    pub routes: RouteTable,
    /// Clients, CORS and request limits.
    pub inbound: inbound::Policy,
    pub upstream: Upstream,
    /// Index 0: `[cloud]`'s API; then each `[[api]]` in config order.
    pub apis: Vec<ApiTarget>,
    /// Scheme of links back to the proxy (`https` with `[listen.tls]`).
    pub link_scheme: &'static str,
    /// `[listen] public_url`: the base of links back to the proxy when it sits behind another.
    pub public_url: Option<Box<str>>,
    pub audit: Option<AuditLog>,
    /// Builds the tenants' limiters; also read for its metrics.
    pub limiter: RateLimiter,
    /// The cache and the coalescing flights (see [`crate::share`]).
    pub share: Sharing,
    /// `[metrics]`: read by requests (which histograms to feed) and by `/metrics`.
    pub metrics: MetricsConfig,
}

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub struct Proxy {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    /// How the data listener serves connections (limits, TLS acceptor).
    pub listen: ListenOptions,
    /// Token slots by (tenant, scope); kept across reloads.
    pub broker: TokenBroker,
    /// The config the snapshot was built from (reload compares against it).
    pub config: ArcSwap<Config>,
}

impl Proxy {
    /// Answer one client request. Never fails: errors become their contract response here.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Response<ResponseBody> {
        let request_id = headers::request_id(request.headers());
        // Made before anything is awaited: if the client goes away mid-way, dropping this future
        // drops the log, which still writes its line (status 499) and counts the request.
        let mut log = AccessLog {
            metrics: self.metrics.untenanted().clone(),
            requests: None,
            api: None,
            start: Instant::now(),
            request_id: request_id.clone(),
            tenant: None,
            method: request.method().clone(),
            uri: request.uri().clone(),
            status: CLIENT_CLOSED,
            bytes: 0,
            complete: false,
            client: None,
            peer: Some(conn.peer),
            audit: None,
            coalesced: false,
            cache: None,
        };
        let snapshot = self.snapshot.load_full();
        log.audit = snapshot.audit.clone();
        if !snapshot.metrics.per_tenant_histograms {
            log.api = Some(self.metrics.unrouted().clone());
        }
        let policy = &snapshot.inbound;
        // Browsers: preflights are answered here (they carry no credentials); the Origin is kept
        // to decorate the response.
        if let Some(preflight) = policy.cors.preflight(request.method(), request.headers()) {
            let (mut parts, ()) = preflight.into_parts();
            parts
                .headers
                .insert(headers::REQUEST_ID.clone(), request_id);
            log.status = parts.status.as_u16();
            return Response::from_parts(parts, ResponseBody::full(Bytes::new(), Some(log)));
        }
        let origin = request.headers().get(header::ORIGIN).cloned();

        let span = tracing::info_span!("request", request_id = request_id.to_str().unwrap_or("-"));
        let result = self
            .handle_inner(request, &conn, &snapshot, &request_id, &mut log)
            .instrument(span)
            .await;
        let mut response = match result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                headers::prepare_downstream(&mut parts.headers, &request_id);
                log.status = parts.status.as_u16();
                Response::from_parts(parts, ResponseBody::downstream(body, log))
            }
            Err(err) => {
                self.note_error(&err, &log);
                log.status = err.status().as_u16();
                let (mut parts, body) = err.to_response::<Bytes>().into_parts();
                parts
                    .headers
                    .insert(headers::REQUEST_ID.clone(), request_id);
                Response::from_parts(parts, ResponseBody::full(body, Some(log)))
            }
        };
        if let Some(origin) = origin {
            let mut request_headers = HeaderMap::with_capacity(1);
            request_headers.insert(header::ORIGIN, origin);
            policy
                .cors
                .decorate(&request_headers, response.headers_mut());
        }
        response
    }

    fn note_error(&self, err: &ProxyError, log: &AccessLog) {
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
            | ProxyError::BadRequest(_)
            | ProxyError::RateLimited(_)
            | ProxyError::Unauthorized(_)
            | ProxyError::Forbidden(_)
            | ProxyError::ForeignOrigin(_)
            | ProxyError::HeadersTooLarge(_)
            | ProxyError::BodyTooLarge(_)
            | ProxyError::RequestTimeout(_) => return,
        };
        log.metrics.record_upstream_error(kind);
        tracing::warn!(
            request_id = log.request_id.to_str().unwrap_or("-"),
            tenant = log.tenant.as_deref().unwrap_or("-"),
            // The whole cause (DNS, TLS, IO), which the client's message leaves out. The sources
            // name hosts and OS or TLS errors, never a token or a secret (the token slot logs
            // the same chains).
            error = %Chain(err),
            "request failed"
        );
    }

    async fn handle_inner(
        &self,
        request: Request<Incoming>,
        conn: &ConnInfo,
        snapshot: &Snapshot,
        request_id: &HeaderValue,
        log: &mut AccessLog,
    ) -> Result<Response<Downstream>, ProxyError> {
        let (mut parts, body) = request.into_parts();
        let policy = &snapshot.inbound;

        // 1. Only origin-form requests of a reverse proxy, of sane size, with one clear length,
        //    and not from a web page that may not use the proxy.
        routing::check_request(&parts.method, &parts.uri, parts.version)?;
        if routing::header_bytes(&parts.headers) > policy.max_header_bytes {
            return Err(ProxyError::HeadersTooLarge(policy.max_header_bytes));
        }
        routing::check_length(&parts.headers)?;
        if parts.version < Version::HTTP_2 && conn.ambiguous_length() {
            return Err(RequestError::AmbiguousLength.into());
        }
        policy.cors.check_origin(&parts.headers)?;

        // 2. Path checks, then tenant and upstream path, from the snapshot loaded once above.
        let routes = &snapshot.routes;
        // Where links in the answer must point: this proxy, same host the client used (or, for
        // an HTTP/1.0 client that named none, the address it connected to).
        let host = routing::request_host(&parts.headers, &parts.uri, parts.version)?
            .map_or_else(|| conn.local.to_string(), str::to_owned);
        let (tenant, api_index, upstream_uri, link_to) = {
            let route = routes.resolve(&parts.uri, &parts.headers)?;
            let (api_index, api_path) = select_api(&snapshot.apis, &route.upstream_path);
            let api = &snapshot.apis[api_index];
            let uri = Uri::builder()
                .scheme(api.base.scheme.clone())
                .authority(api.base.authority.clone())
                .path_and_query(api_path.as_ref())
                .build()
                .map_err(|_| routing::PathError::NotAbsolute)?;
            let base = match &snapshot.public_url {
                Some(public) => public.to_string(),
                None => format!("{}://{host}", snapshot.link_scheme),
            };
            let mut link_to = base;
            if let Some(prefix) = route.prefix {
                link_to.push('/');
                link_to.push_str(prefix);
            }
            if let Some(api_prefix) = &api.prefix {
                link_to.push_str(api_prefix);
            }
            // The route class is matched on the path with the API prefix still on.
            let class = route.tenant.limits.class_of(route.upstream_path.as_ref());
            (route.tenant, api_index, uri, (link_to, class))
        };
        let (link_to, class) = link_to;
        log.tenant = Some(tenant.name.clone());
        log.metrics = tenant.metrics.clone();
        log.requests = Some(tenant.apis[api_index].requests.clone());
        // Per-API histograms, when the config wants them instead of per-tenant ones.
        let by_api =
            (!snapshot.metrics.per_tenant_histograms).then(|| &snapshot.apis[api_index].latency);
        if let Some(latency) = by_api {
            log.api = Some(latency.clone());
        }

        // 3. Who is calling, and may it use this tenant with this method? Its key goes no further.
        let client = policy
            .clients
            .identify(&parts.headers, conn.identity.as_ref())?;
        if let Some(client) = &client {
            log.client = Some(client.name.clone());
            client.may_use(&tenant.name, &parts.method)?;
        }
        inbound::auth::strip_credentials(&mut parts.headers);

        // 3b. Shared answers: a fresh cached one, or one already on its way for the same request
        //     (then neither the rate limit nor the token is touched again).
        let key = share::Key::of(
            &parts.method,
            &parts.headers,
            body.is_end_stream(),
            &tenant.id,
            api_index,
            upstream_uri.path_and_query().map_or("/", |p| p.as_str()),
            client.as_ref().map(|c| &c.name),
            Some(link_to.as_str()),
        );
        let turn = match snapshot.share.lookup(key).await {
            Lookup::Answered {
                response,
                coalesced,
                cache,
            } => {
                log.coalesced = coalesced;
                log.cache = cache.map(Outcome::as_str);
                return Ok(response);
            }
            Lookup::Go(turn) => turn,
        };
        log.cache = turn.cache().map(Outcome::as_str);

        let result: Result<Response<ResponseStream>, ProxyError> = async move {
            // 4. The tenant's rate limit for this route class: wait in its queue or refuse.
            let admission = tenant.limits.admit(class).await?;
            if let Some(latency) = by_api {
                latency.observe_wait(admission.waited);
            }

            // 5. The body: streamed, or kept when small so a 401 can be replayed.
            let body = ClientBody::new(body, policy.body_idle_timeout);
            let body = request_body(body, &parts.headers, policy.max_body_bytes).await?;

            // 6. The tenant's token (a lock-free read once warm), taken last so the freshest token
            //    goes out; then the headers: cleaned, token and request id set.
            let slot = &tenant.apis[api_index].token;
            let token = slot.get().await?;
            headers::prepare_upstream(
                &mut parts.headers,
                routes.header(),
                token.authorization(),
                request_id,
            );
            let replay = body
                .try_clone()
                .map(|b| (parts.method.clone(), parts.headers.clone(), b));
            let request = build(parts.method, upstream_uri.clone(), parts.headers, body);

            // 7. Send; on 401 drop the token and, if the body allows, replay once with a fresh one.
            let response = send(&snapshot.upstream, &tenant, by_api, class, request).await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(relink(response, snapshot, api_index, link_to));
            }
            let fresh_worthwhile = slot.invalidate(&token);
            let Some((method, mut headers, body)) = replay.filter(|_| fresh_worthwhile) else {
                return Ok(relink(response, snapshot, api_index, link_to));
            };
            drop(response);
            let fresh = slot.get().await?;
            headers.insert(header::AUTHORIZATION, fresh.authorization().clone());
            tracing::info!(
                tenant = &*tenant.name,
                "upstream answered 401; retrying once with a fresh token"
            );
            let response = send(
                &snapshot.upstream,
                &tenant,
                by_api,
                class,
                build(method, upstream_uri, headers, body),
            )
            .await?;
            Ok(relink(response, snapshot, api_index, link_to))
        }
        .await;
        turn.finish(result)
    }

    /// The tenants currently routed to, for admin and metrics.
    pub fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.snapshot.load().routes.tenants().cloned().collect()
    }
}

/// Point the API's own links (paging, `Location`) back at the proxy: the same tenant prefix and
/// API prefix the client used, so a tool following `@odata.nextLink` stays on the proxy. The
/// body is rewritten as it streams (see [`crate::rewrite`]); non-JSON bodies pass untouched.
fn relink(
    response: Response<UpstreamBody>,
    snapshot: &Snapshot,
    api_index: usize,
    to: String,
) -> Response<ResponseStream> {
    let (mut parts, body) = response.into_parts();
    let plan = rewrite::plan(&parts.headers);
    if plan == rewrite::Plan::Passthrough && !parts.headers.contains_key(header::LOCATION) {
        return Response::from_parts(parts, rewrite::passthrough(body));
    }
    let rewriter = snapshot.apis[api_index].links.to(to);
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
    tenant: &Tenant,
    by_api: Option<&Arc<ApiLatency>>,
    class: usize,
    request: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let started = Instant::now();
    let response = upstream.send(request).await;
    let elapsed = started.elapsed();
    tenant.metrics.observe_upstream(elapsed);
    if let Some(latency) = by_api {
        latency.observe_upstream(elapsed);
    }
    let response = response?;
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        tenant
            .limits
            .upstream_throttled(class, response.headers().get(header::RETRY_AFTER));
    }
    Ok(response)
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
