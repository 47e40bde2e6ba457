//! The simulated Microsoft Graph security API: `GET /v1.0/security/incidents[/{id}]`,
//! `GET /v1.0/security/alerts_v2[/{id}]` (paged by `$top`/`$skip`, `$count=true`) and
//! `POST /v1.0/security/runHuntingQuery`, with Graph's shapes: camelCase enum values, string
//! ids, `@odata.nextLink` *before* `value` (a rewriter must not rely on it coming last), nested
//! `@odata.type` annotations, and Graph's error body.
//!
//! The objects are the tenant's Defender data seen through Graph, so a test can match an
//! incident in both APIs by its id.

use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use http::header::{HeaderValue, RETRY_AFTER};

use super::data::{TenantData, INCIDENTS};
use super::hunting;
use super::paging::{self, Items, Paging};
use super::records::TokenInfo;
use super::state::Shared;
use super::support::{self, iso8601, uuid, Body, ReadBody};
use super::THREAT_HUNTING_ROLE;

/// Graph's page size caps: incidents 50, alerts 2,000 (graph-docs: security-list-incidents,
/// security-list-alerts_v2).
const MAX_TOP_INCIDENTS: usize = 50;
const MAX_TOP_ALERTS: usize = 2000;

/// Graph's error body: `{"error":{"code","message","innerError":{"date","request-id",...}}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let request_id = uuid();
    support::json(
        status,
        &json!({"error": {
            "code": code,
            "message": message,
            "innerError": {"date": iso8601(now), "request-id": request_id, "client-request-id": request_id},
        }}),
    )
}

/// Answers a Graph path for the tenant whose token came (audience and limits already checked).
pub(crate) fn serve(
    shared: &Shared,
    info: &TokenInfo,
    parts: &Parts,
    read: &ReadBody,
    tenant: &TenantData,
    base: &str,
) -> Response<Body> {
    let path = parts.uri.path();
    let lower = path.to_ascii_lowercase();
    let segments: Vec<&str> = lower.trim_start_matches('/').split('/').collect();
    let query = parts.uri.query();
    let get = parts.method == Method::GET;
    match segments.as_slice() {
        ["v1.0", "security", "incidents"] if get => {
            let items = Items::Lazy(
                INCIDENTS as usize,
                Box::new(|i| incident(tenant, &tenant.incident(i as u64))),
            );
            list(
                base,
                path,
                query,
                items,
                MAX_TOP_INCIDENTS,
                "security/incidents",
            )
        }
        ["v1.0", "security", "alerts_v2"] if get => {
            let items: Vec<Value> = tenant.alerts().iter().map(|a| alert(tenant, a)).collect();
            list(
                base,
                path,
                query,
                items.into(),
                MAX_TOP_ALERTS,
                "security/alerts_v2",
            )
        }
        ["v1.0", "security", kind @ ("incidents" | "alerts_v2"), id] if get => {
            entity(tenant, kind, id, base)
        }
        ["v1.0", "security", "runhuntingquery"] if parts.method == Method::POST => {
            hunting(shared, info, tenant, read, base)
        }
        ["v1.0", "security", "incidents" | "alerts_v2" | "runhuntingquery", ..] => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Request_BadRequest",
            "The HTTP method is not allowed on this resource.",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "UnknownError",
            &format!("No resource at {path}"),
        ),
    }
}

/// `GET /v1.0/security/{kind}/{id}`, `kind` being `incidents` or `alerts_v2`.
fn entity(tenant: &TenantData, kind: &str, id: &str, base: &str) -> Response<Body> {
    let found = if kind == "incidents" {
        tenant
            .incidents()
            .iter()
            .map(|i| incident(tenant, i))
            .find(|i| i["id"] == *id)
    } else {
        tenant
            .alerts()
            .iter()
            .map(|a| alert(tenant, a))
            .find(|a| a["id"] == *id)
    };
    match found {
        Some(mut one) => {
            one["@odata.context"] = format!("{base}/v1.0/$metadata#security/{kind}/$entity").into();
            support::odata(&one)
        }
        None => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("No {kind} with id '{id}' was found."),
        ),
    }
}

/// A page as Graph writes it: context, `@odata.count` when asked, next link, then the values.
fn list(
    base: &str,
    path: &str,
    query: Option<&str>,
    items: Items<'_>,
    max_top: usize,
    entity: &str,
) -> Response<Body> {
    let paging = match Paging::parse(query, max_top) {
        Ok(paging) => paging,
        Err(message) => return error(StatusCode::BAD_REQUEST, "BadRequest", &message),
    };
    let page = paging.page(base, path, items);
    let mut out = format!(
        "{{\"@odata.context\":{}",
        Value::from(format!("{base}/v1.0/$metadata#{entity}"))
    );
    if paging::wants_count(query) {
        out.push_str(&format!(",\"@odata.count\":{}", page.total));
    }
    if let Some(link) = page.next_link {
        out.push_str(&format!(",\"@odata.nextLink\":{}", Value::from(link)));
    }
    out.push_str(&format!(",\"value\":{}}}", Value::from(page.items)));
    support::response(StatusCode::OK, support::ODATA_JSON, support::full(out))
}

/// `Active` -> `active`, `InProgress` -> `inProgress`: Graph's enum spelling.
fn camel(value: &Value) -> Value {
    let s = value.as_str().unwrap_or_default();
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => format!("{}{}", first.to_ascii_lowercase(), chars.as_str()).into(),
        None => Value::Null,
    }
}

/// A Defender incident in Graph's `microsoft.graph.security.incident` shape.
fn incident(tenant: &TenantData, i: &Value) -> Value {
    json!({
        "id": i["incidentId"].to_string(),
        "tenantId": tenant.id,
        "status": camel(&i["status"]),
        "severity": camel(&i["severity"]),
        "classification": "unknown",
        "determination": "unknown",
        "displayName": i["incidentName"],
        "description": null,
        "summary": null,
        "createdDateTime": i["createdTime"],
        "lastUpdateDateTime": i["lastUpdateTime"],
        "assignedTo": null,
        "incidentWebUrl": i["incidentUri"],
        "redirectIncidentId": null,
        "resolvingComment": null,
        "customTags": [],
        "systemTags": [],
        "comments": [],
    })
}

/// An MDE alert in Graph's `microsoft.graph.security.alert` (alerts_v2) shape.
fn alert(tenant: &TenantData, a: &Value) -> Value {
    let id = a["id"].as_str().unwrap_or_default();
    let incident = a["incidentId"].to_string();
    json!({
        "id": id,
        "providerAlertId": id,
        "incidentId": incident,
        "status": camel(&a["status"]),
        "severity": camel(&a["severity"]),
        "classification": null,
        "determination": null,
        "serviceSource": "microsoftDefenderForEndpoint",
        "detectionSource": "microsoftDefenderForEndpoint",
        "title": a["title"],
        "description": a["description"],
        "category": a["category"],
        "createdDateTime": a["alertCreationTime"],
        "lastUpdateDateTime": a["lastUpdateTime"],
        "firstActivityDateTime": a["firstEventTime"],
        "lastActivityDateTime": a["lastEventTime"],
        "alertWebUrl": format!("https://security.microsoft.com/alerts/{id}?tid={}", tenant.id),
        "incidentWebUrl": format!("https://security.microsoft.com/incidents/{incident}?tid={}", tenant.id),
        "tenantId": tenant.id,
        "evidence": [{
            "@odata.type": "#microsoft.graph.security.deviceEvidence",
            "mdeDeviceId": a["machineId"],
            "deviceDnsName": a["computerDnsName"],
            "verdict": "unknown",
        }],
    })
}

/// `POST /v1.0/security/runHuntingQuery` with `{"Query": "...", "Timespan": "..."}` (Graph
/// reads property names case-insensitively, so `query` too; `Timespan` is accepted and ignored):
/// the rows of `hunting`, streamed in Graph's lower-case shape. In order: the application
/// permission `ThreatHunting.Read.All` (403), a forced 429, the body (400), a forced CPU-quota
/// 400.
fn hunting(
    shared: &Shared,
    info: &TokenInfo,
    tenant: &TenantData,
    read: &ReadBody,
    base: &str,
) -> Response<Body> {
    if !info.roles.iter().any(|r| r == THREAT_HUNTING_ROLE) {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Missing application permission ThreatHunting.Read.All: the application does not have the required permissions to run hunting queries.",
        );
    }
    let throttled = shared.with_modes(&info.tid, |m| {
        (m.hunting_429_remaining > 0).then(|| {
            m.hunting_429_remaining -= 1;
            m.hunting_429_retry_after
        })
    });
    if let Some(secs) = throttled {
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Please retry again later.",
        );
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    let query = read
        .kept
        .as_ref()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .and_then(|v| {
            let q = v.get("Query").or_else(|| v.get("query"))?;
            q.as_str().map(str::to_owned)
        })
        .filter(|q| !q.trim().is_empty());
    let Some(query) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Query is required: expected {\"Query\": \"<KQL>\"}.",
        );
    };
    let over_quota = shared.with_modes(&info.tid, |m| {
        let over = m.hunting_quota_remaining > 0;
        m.hunting_quota_remaining = m.hunting_quota_remaining.saturating_sub(1);
        over
    });
    if over_quota {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Query execution has exceeded the allowed limits. The query may be retried after the CPU quota is replenished (15-minute cycles).",
        );
    }
    hunting::response(
        tenant,
        &query,
        hunting::Shape::Graph,
        base,
        shared.hunting_hold(),
    )
}
