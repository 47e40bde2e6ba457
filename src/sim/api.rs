//! The simulated APIs' front door and the Defender endpoints: bearer-token check (audience per
//! API family, see `family`), forced and real per-tenant limits, the Defender XDR endpoints
//! (`/api/incidents`, `/api/advancedhunting/run`) and the Defender for Endpoint ones
//! (`/api/alerts`, `/api/machines[/{id}[/alerts]]`, `/api/advancedqueries/run`) with OData
//! paging, Graph paths handed to `graph`, the `gzip_json` mode, and the recorder entry for every
//! request.
//!
//! Each listener is one cloud's API (see `profiles`): it accepts the tokens its own authority
//! issued, for its cloud's audiences, and records which listener and `Host` a request came to.
//!
//! Any path that is neither the token endpoint nor `/_sim/` lands here, so a request the proxy
//! routes to the wrong place is still recorded (and answered 404) rather than lost.

use http::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::data::{TenantData, INCIDENTS, MACHINES};
use super::family::{Audience, Family};
use super::limits::Class;
use super::paging::{Items, Paging};
use super::records::{ApiRequestRecord, TokenInfo};
use super::site::{self, Site};
use super::state::Shared;
use super::support::{self, defender_error, Body, ReadBody};
use super::{graph, gzip, hunting, jwt, testapi, warnings};

/// Bodies the API parses (advanced-hunting queries) are kept up to this size; larger ones are
/// only hashed.
const BODY_KEEP: usize = 1024 * 1024;

/// Answers and records one API request.
pub(crate) async fn handle(shared: &Shared, req: Request<Incoming>, site: &Site) -> Response<Body> {
    let received_at = std::time::Instant::now();
    let host = site::host_of(&req);
    let (parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let read = support::read_hashed(body, BODY_KEEP).await;
    let family = Family::of_path(parts.uri.path());
    let auth = authenticate(shared, &parts, family, site);
    let known = match &auth {
        Ok(info) => Some(info.clone()),
        Err(refused) => refused.info.as_deref().cloned(),
    };
    let resp = match (&read, auth) {
        (Err(_), _) => family.error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The request body could not be read.",
        ),
        (Ok(_), Err(refused)) => family.unauthorized(refused.message),
        (Ok(read), Ok(info)) => {
            let resp = serve(shared, &parts, read, &info, family, &site.base).await;
            warnings::decorate(shared, &info.tid, family, resp)
        }
    };
    // Decided on the request's headers before they move into the record.
    let resp = if shared.gzip_json() && gzip::accepts_gzip(&parts.headers) {
        gzip::encode_json(resp)
    } else {
        resp
    };
    let mut headers = parts.headers;
    if let Some(v) = headers.get_mut(AUTHORIZATION) {
        v.set_sensitive(true);
    }
    let (body_len, body_sha256, body) = match &read {
        Ok(r) => (
            r.len,
            r.sha256.clone(),
            r.kept
                .clone()
                .filter(|b| b.len() <= ApiRequestRecord::BODY_KEPT),
        ),
        Err(_) => (0, support::sha256_hex(b""), None),
    };
    shared.record_api(ApiRequestRecord {
        received_at,
        version: parts.version,
        method: parts.method,
        path_and_query,
        headers,
        tid: known.as_ref().map(|i| i.tid.clone()),
        aud: known.as_ref().map(|i| i.aud.clone()),
        app_id: known.as_ref().map(|i| i.app_id.clone()),
        issuer: known.map(|i| i.iss),
        host,
        cloud: site.cloud.to_string(),
        listener: site.local,
        status: resp.status().as_u16(),
        body_len,
        body_sha256,
        body,
    });
    resp
}

/// Why a token is refused, with its facts when it was genuinely ours.
struct Refused {
    info: Option<Box<TokenInfo>>,
    message: &'static str,
}

impl Refused {
    fn unknown(message: &'static str) -> Self {
        Refused {
            info: None,
            message,
        }
    }

    fn of(info: TokenInfo, message: &'static str) -> Self {
        Refused {
            info: Some(Box::new(info)),
            message,
        }
    }
}

/// The token's facts, or why it is refused (with its facts when it was genuinely ours): a token
/// this simulator signed, still valid, issued by this listener's authority for one of its
/// cloud's audiences that `family`'s paths accept.
fn authenticate(
    shared: &Shared,
    parts: &Parts,
    family: Family,
    site: &Site,
) -> Result<TokenInfo, Refused> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(header) = header else {
        return Err(Refused::unknown("Authorization header is missing."));
    };
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            return Err(Refused::unknown(
                "Authorization header must be a Bearer token.",
            ))
        }
    };
    let Some(claims) = jwt::verify_hs256(&shared.key, token) else {
        return Err(Refused::unknown(
            "Invalid access token: signature validation failed.",
        ));
    };
    let text = |name: &str| claims[name].as_str().unwrap_or("").to_owned();
    let info = TokenInfo {
        tid: text("tid"),
        aud: text("aud"),
        app_id: claims["appid"]
            .as_str()
            .map_or_else(|| text("azp"), str::to_owned),
        iss: text("iss"),
        has_roles: claims["roles"].as_array().is_some_and(|r| !r.is_empty()),
        roles: claims["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect(),
    };
    let now = shared.clock.unix_secs();
    if !matches!(claims["exp"].as_u64(), Some(exp) if exp > now) {
        return Err(Refused::of(info, "Access token has expired."));
    }
    if claims["nbf"].as_u64().is_some_and(|nbf| nbf > now) {
        return Err(Refused::of(info, "Access token is not yet valid."));
    }
    if !site.issued(&info.iss) {
        return Err(Refused::of(info, "Invalid access token: wrong issuer."));
    }
    let aud_ok = shared
        .config
        .audiences(&site.cloud)
        .any(|a| a.trim_end_matches('/') == info.aud.trim_end_matches('/'));
    if !aud_ok || !family.accepts(Audience::of(&info.aud)) {
        return Err(Refused::of(info, "Invalid access token: wrong audience."));
    }
    let uti = claims["uti"].as_str().unwrap_or("");
    if shared.lock().revoked.contains(uti) {
        return Err(Refused::of(info, "Access token has been revoked."));
    }
    Ok(info)
}

/// Permission, forced 429s, limits, then the endpoint.
async fn serve(
    shared: &Shared,
    parts: &Parts,
    read: &ReadBody,
    info: &TokenInfo,
    family: Family,
    base: &str,
) -> Response<Body> {
    if !info.has_roles {
        return family.error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The application does not have any of the required application permissions to access the resource.",
        );
    }
    let delay = shared.modes(&info.tid).api_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let forced = shared.with_modes(&info.tid, |m| {
        (m.force_429_remaining > 0).then(|| {
            m.force_429_remaining -= 1;
            m.force_429_retry_after.clone()
        })
    });
    if let Some(retry_after) = forced {
        return too_many(
            family,
            retry_after.and_then(|v| HeaderValue::from_str(&v).ok()),
        );
    }
    let path = parts.uri.path();
    if let Some(class) = Class::of_path(path).filter(|_| shared.config.enforce_limits) {
        let now = shared.clock.now();
        if let Err(secs) = shared.lock().limiter.check(&info.tid, class, now) {
            return too_many(family, Some(HeaderValue::from(secs)));
        }
    }
    if path.to_ascii_lowercase().starts_with("/api/_test/") {
        return testapi::handle(shared, parts, read, base).await;
    }
    let tenant = tenant_data(shared, &info.tid);
    if family == Family::Graph {
        return graph::serve(shared, info, parts, read, &tenant, base);
    }
    defender(shared, parts, read, info, &tenant, base)
}

/// The Defender XDR and Defender for Endpoint paths.
fn defender(
    shared: &Shared,
    parts: &Parts,
    read: &ReadBody,
    info: &TokenInfo,
    tenant: &TenantData,
    base: &str,
) -> Response<Body> {
    let path = parts.uri.path();
    let lower = path.to_ascii_lowercase();
    let segments: Vec<&str> = lower.trim_start_matches('/').split('/').collect();
    let query = parts.uri.query();
    let get = parts.method == Method::GET;
    match segments.as_slice() {
        ["api", "incidents"] if get => {
            let incidents =
                Items::Lazy(INCIDENTS as usize, Box::new(|i| tenant.incident(i as u64)));
            list(base, path, query, incidents, 100, "Incidents")
        }
        ["api", "alerts"] if get => {
            list(base, path, query, tenant.alerts().into(), 10_000, "Alerts")
        }
        ["api", "machines"] if get => list(
            base,
            path,
            query,
            Items::Lazy(MACHINES as usize, Box::new(|i| tenant.machine(i as u64))),
            10_000,
            "Machines",
        ),
        ["api", "machines", id] if get => machine(tenant, id, base),
        ["api", "machines", id, "alerts"] if get => {
            let alerts = tenant
                .alerts()
                .into_iter()
                .filter(|a| a["machineId"] == *id)
                .collect();
            list(base, path, query, Items::All(alerts), 10_000, "Alerts")
        }
        ["api", "advancedhunting" | "advancedqueries", "run"] if parts.method == Method::POST => {
            if shared.modes(&info.tid).legacy_hunting_retired {
                return retired();
            }
            hunting(tenant, read, base, shared.hunting_hold())
        }
        ["api", "incidents" | "alerts" | "machines", ..]
        | ["api", "advancedhunting" | "advancedqueries", "run"] => defender_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The HTTP method is not allowed on this resource.",
        ),
        _ => defender_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("No resource at {path}"),
        ),
    }
}

/// `GET /api/machines/{id}`.
fn machine(tenant: &TenantData, id: &str, base: &str) -> Response<Body> {
    match tenant.machines().into_iter().find(|m| m["id"] == *id) {
        Some(mut machine) => {
            machine["@odata.context"] = format!("{base}/api/$metadata#Machines/$entity").into();
            support::odata(&machine)
        }
        None => defender_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("Machine {id} was not found"),
        ),
    }
}

/// The data of the tenant a token's `tid` names (a `tid` no tenant has gets data named `unknown`).
fn tenant_data(shared: &Shared, tid: &str) -> TenantData {
    let config = &shared.config;
    match config
        .tenants
        .iter()
        .position(|t| t.id.eq_ignore_ascii_case(tid))
    {
        Some(i) => TenantData {
            name: config.tenants[i].name.clone(),
            id: config.tenants[i].id.clone(),
            ordinal: i as u64 + 1,
        },
        None => TenantData {
            name: "unknown".into(),
            id: tid.into(),
            ordinal: 0,
        },
    }
}

fn too_many(family: Family, retry_after: Option<HeaderValue>) -> Response<Body> {
    let mut resp = family.error(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "API calls quota exceeded! Please retry after the time in the Retry-After header.",
    );
    if let Some(v) = retry_after {
        resp.headers_mut().insert(RETRY_AFTER, v);
    }
    resp
}

/// One page of `items` as a Defender OData collection (see [`Paging`]), written by hand to keep
/// the real API's key order: context, value, then the next link last.
fn list(
    base: &str,
    path: &str,
    query: Option<&str>,
    items: Items<'_>,
    max_top: usize,
    entity: &str,
) -> Response<Body> {
    let page = match Paging::parse(query, max_top) {
        Ok(paging) => paging.page(base, path, items),
        Err(message) => return defender_error(StatusCode::BAD_REQUEST, "BadRequest", &message),
    };
    let mut out = format!(
        "{{\"@odata.context\":{},\"value\":{}",
        Value::from(format!("{base}/api/$metadata#{entity}")),
        Value::from(page.items)
    );
    if let Some(link) = page.next_link {
        out.push_str(&format!(",\"@odata.nextLink\":{}", Value::from(link)));
    }
    out.push('}');
    support::response(StatusCode::OK, support::ODATA_JSON, support::full(out))
}

/// `POST /api/advancedhunting/run` (and `/api/advancedqueries/run`) with `{"Query": "..."}`:
/// the rows of `hunting`, streamed in the legacy shape.
fn hunting(
    tenant: &TenantData,
    read: &ReadBody,
    base: &str,
    hold: Option<hunting::Hold>,
) -> Response<Body> {
    let query = read
        .kept
        .as_ref()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .and_then(|v| v.get("Query").and_then(Value::as_str).map(str::to_owned))
        .filter(|q| !q.trim().is_empty());
    match query {
        Some(q) => hunting::response(tenant, &q, hunting::Shape::Legacy, base, hold),
        None => defender_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestBody",
            "Request body is incorrect: expected {\"Query\": \"<KQL>\"}.",
        ),
    }
}

/// A retired legacy hunting endpoint (`Simulator::set_legacy_hunting_retired`). What the real
/// endpoints answer once retired (2027-02-01, MC1220762) is NOT documented: 410 Gone in the
/// Defender error shape is a plausible guess, and the proxy must not depend on its details.
fn retired() -> Response<Body> {
    defender_error(
        StatusCode::GONE,
        "Gone",
        "This API has been retired. Use Microsoft Graph POST /v1.0/security/runHuntingQuery instead.",
    )
}
