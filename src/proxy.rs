//! The hot path. `handle()` is the only place that turns an error into a response and the only
//! place an access line is made; `handle_inner()` is the request's way through, as numbered steps.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::body::{AccessLog, ResponseBody};
use crate::config::Config;
use crate::conn::ConnInfo;
use crate::error::{ProxyError, UpstreamFailure};
use crate::error_chain::Chain;
use crate::exchange;
use crate::headers;
use crate::inbound;
use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::routing::{self, RequestError};
use crate::share::{self, Downstream, Lookup, Outcome};
use crate::snapshot::Snapshot;
use crate::target::Target;
use crate::telemetry::spans;
use crate::tenant::Tenant;
use crate::token::TokenBrokers;

/// Status logged for a request whose client went away before the response started (as nginx).
const CLIENT_CLOSED: u16 = 499;

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub struct Proxy {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    /// Token brokers by (app, cloud), their slots by (tenant, scope); kept across reloads.
    pub(crate) broker: TokenBrokers,
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
            translated: false,
            upstream: None,
        };
        let trace = spans::request(&request, &request_id);
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
            let body = ResponseBody::full(Bytes::new(), Some(log)).traced(trace);
            return Response::from_parts(parts, body);
        }
        let origin = request.headers().get(header::ORIGIN).cloned();

        let span = tracing::info_span!("request", request_id = request_id.to_str().unwrap_or("-"));
        let result = self
            .handle_inner(request, &conn, &snapshot, &request_id, &mut log, &trace)
            .instrument(span)
            .await;
        let mut response = match result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                headers::prepare_downstream(&mut parts.headers, &request_id);
                log.status = parts.status.as_u16();
                log.note_upstream(&mut parts.extensions);
                Response::from_parts(parts, ResponseBody::downstream(body, log).traced(trace))
            }
            Err(err) => {
                self.note_error(&err, &log);
                log.status = err.status().as_u16();
                let (mut parts, body) = err.to_response::<Bytes>().into_parts();
                parts
                    .headers
                    .insert(headers::REQUEST_ID.clone(), request_id);
                Response::from_parts(parts, ResponseBody::full(body, Some(log)).traced(trace))
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
            tenant = log.tenant_name(),
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
        trace: &tracing::Span,
    ) -> Result<Response<Downstream>, ProxyError> {
        let (mut parts, body) = request.into_parts();
        let policy = &snapshot.inbound;

        // 1. Only origin-form requests of a reverse proxy, of sane size, with one clear length,
        //    and not from a web page that may not use the proxy.
        check_request(&parts, conn, policy)?;

        // 2. Path checks, then tenant, API, upstream path, links and route class, from the
        //    snapshot loaded once in `handle`.
        let mut target = Target::resolve(&parts, conn, snapshot)?;
        target.label(log);
        target.trace = spans::routed(trace, &target.tenant.name, &target.api().target.name);

        // 3. Who is calling, and may it use this tenant with this method? Its key goes no further.
        let client = policy
            .clients
            .identify(&parts.headers, conn.identity.as_ref())?;
        if let Some(client) = &client {
            log.client = Some(client.name.clone());
            client.may_use(&target.tenant.name, &parts.method)?;
        }
        inbound::auth::strip_credentials(&mut parts.headers);

        // 4. Legacy advanced hunting: through Graph, or to the legacy API as it is.
        log.translated = target.settle_hunting().await;

        // 5. Shared answers: a fresh cached one, or one already on its way for the same request
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

        // 6. Upstream: rate limit, body, token, send (a 401 replayed once), links rewritten (or,
        //    through Graph, the hunting answer translated).
        let result = exchange::forward(parts, body, target, snapshot, request_id).await;

        // 7. The answer, shared with whoever joined meanwhile (and cached when it qualifies).
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
