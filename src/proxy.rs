//! The hot path. `handle()` is the only place that turns an error into a response and the only
//! place an access line is made; `handle_inner()` is the request's way through, as numbered steps.

use std::borrow::Cow;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{header, HeaderMap, HeaderValue, Request, Response, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::body::{AccessLog, ResponseBody};
use crate::config::Config;
use crate::config::MetricsConfig;
use crate::conn::ConnInfo;
use crate::error::{ProxyError, UpstreamFailure};
use crate::exchange;
use crate::headers;
use crate::inbound::{self, AuditLog};
use crate::listener::ListenOptions;
use crate::metrics::{ApiLatency, Metrics, UpstreamErrorKind};
use crate::ratelimit::RateLimiter;
use crate::rewrite::LinkBase;
use crate::routing::{self, RequestError, RouteTable};
use crate::tenant::Tenant;
use crate::share::{self, Downstream, Lookup, Outcome, Sharing};
use crate::target::Target;
use crate::token::{Chain, TokenBroker};
use crate::upstream::Upstream;

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
        check_request(&parts, conn, policy)?;

        // 2. Path checks, then tenant, API, upstream path, links and route class, from the
        //    snapshot loaded once in `handle`.
        let target = Target::resolve(&parts, conn, snapshot)?;
        target.label(log);

        // 3. Who is calling, and may it use this tenant with this method? Its key goes no further.
        let client = policy
            .clients
            .identify(&parts.headers, conn.identity.as_ref())?;
        if let Some(client) = &client {
            log.client = Some(client.name.clone());
            client.may_use(&target.tenant.name, &parts.method)?;
        }
        inbound::auth::strip_credentials(&mut parts.headers);

        // 4. Shared answers: a fresh cached one, or one already on its way for the same request
        //    (then neither the rate limit nor the token is touched).
        let key = share::Key::of(
            &parts.method,
            &parts.headers,
            body.is_end_stream(),
            &target.tenant.id,
            target.api,
            target.uri.path_and_query().map_or("/", |p| p.as_str()),
            client.as_ref().map(|c| &c.name),
            Some(target.link_to.as_str()),
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

        // 5. Upstream: rate limit, body, token, send (a 401 replayed once), links rewritten.
        let result = exchange::forward(parts, body, target, snapshot, request_id).await;

        // 6. The answer, shared with whoever joined meanwhile (and cached when it qualifies).
        turn.finish(result)
    }

    /// The tenants currently routed to, for admin and metrics.
    pub fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.snapshot.load().routes.tenants().cloned().collect()
    }
}

/// Step 1: what a reverse proxy may take at all, before anything is looked up.
fn check_request(
    parts: &http::request::Parts,
    conn: &ConnInfo,
    policy: &inbound::Policy,
) -> Result<(), ProxyError> {
    routing::check_request(&parts.method, &parts.uri, parts.version)?;
    if routing::header_bytes(&parts.headers) > policy.max_header_bytes {
        return Err(ProxyError::HeadersTooLarge(policy.max_header_bytes));
    }
    routing::check_length(&parts.headers)?;
    if parts.version < Version::HTTP_2 && conn.ambiguous_length() {
        return Err(RequestError::AmbiguousLength.into());
    }
    policy.cors.check_origin(&parts.headers)?;
    Ok(())
}
