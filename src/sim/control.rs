//! `/_sim/` control endpoints, for black-box tests and dashboard developers driving
//! `defender-proxy simulate` over HTTP instead of through a [`Simulator`] handle:
//!
//! - `GET /_sim` — client id, tenants, base URL, the other apps (client ids and credential kinds,
//!   never a secret), the consents and the clouds (base URL and audiences of each listener).
//! - `GET /_sim/requests` — both records as JSON, `authorization` values as `Bearer …last4`.
//! - `POST /_sim/reset` — forget records, every tenant's modes, limit windows and revocations.
//! - `POST /_sim/release` — release pending `/api/_test/stream` responses.
//! - `POST /_sim/config` with `{"gzip_json": bool}` — gzip successful JSON answers for clients
//!   that accept it (see [`super::SimConfig::gzip_json`]).
//! - `POST /_sim/federations` with `{"issuer": "...", "subject": "..."}` — trust that workload
//!   identity (see [`Simulator::register_federation`]).
//! - `POST /_sim/tenants/{id}` with any subset of `{"consent": bool, "fail_token_requests": n,
//!   "fail_status": 503, "fail_retry_after": s, "token_delay_ms": n, "api_delay_ms": n,
//!   "tid_override": "..." ("" clears it), "token_suffix": "..." ("" clears it),
//!   "force_api_429": n, "retry_after": "2", "revoke": true, "hunting_429": n,
//!   "hunting_retry_after": s, "hunting_quota": n, "legacy_hunting_retired": bool,
//!   "threat_hunting_role": bool, "app_consent": {"<client id>": bool},
//!   "throttle_percent": "0.9" ("" clears), "throttle_scope": "...", "throttle_information": "...",
//!   "success_retry_after": "30" ("" clears), "partial": n}` (see
//!   [`Simulator::set_throttle_headers`], [`Simulator::set_retry_after_on_success`],
//!   [`Simulator::force_partial`],
//!   [`Simulator::fail_hunting_429`], [`Simulator::fail_hunting_quota`],
//!   [`Simulator::set_legacy_hunting_retired`], [`Simulator::set_threat_hunting_granted`],
//!   [`Simulator::set_app_consent`]).
//!
//! No authentication: the simulator is a loopback test tool holding nothing real.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};

use super::support::{self, Body};
use super::{Simulator, ThrottleHeaders, PUBLIC_CLOUD};

const BODY_LIMIT: usize = 64 * 1024;

/// A federated identity credential to add.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Federation {
    issuer: String,
    subject: String,
}

/// A change to simulator-wide modes; absent fields are left alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimUpdate {
    gzip_json: Option<bool>,
}

/// A change to one tenant's modes; absent fields are left alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantUpdate {
    consent: Option<bool>,
    fail_token_requests: Option<u32>,
    fail_status: Option<u16>,
    fail_retry_after: Option<u32>,
    token_delay_ms: Option<u64>,
    api_delay_ms: Option<u64>,
    tid_override: Option<String>,
    token_suffix: Option<String>,
    force_api_429: Option<u32>,
    retry_after: Option<String>,
    revoke: Option<bool>,
    hunting_429: Option<u32>,
    hunting_retry_after: Option<u32>,
    hunting_quota: Option<u32>,
    legacy_hunting_retired: Option<bool>,
    threat_hunting_role: Option<bool>,
    app_consent: Option<std::collections::BTreeMap<String, bool>>,
    throttle_percent: Option<String>,
    throttle_scope: Option<String>,
    throttle_information: Option<String>,
    success_retry_after: Option<String>,
    partial: Option<u32>,
}

fn bad_request(message: String) -> Response<Body> {
    support::json(StatusCode::BAD_REQUEST, &json!({"error": message}))
}

pub(crate) async fn handle(sim: &Simulator, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = match support::read_hashed(req.into_body(), BODY_LIMIT).await {
        Ok(read) => read.kept,
        Err(_) => return bad_request("the request body could not be read".into()),
    };
    let ok = || support::json(StatusCode::OK, &json!({"ok": true}));
    match (&method, path.trim_end_matches('/')) {
        (&Method::GET, "/_sim") => support::json(StatusCode::OK, &info(sim)),
        (&Method::GET, "/_sim/requests") => support::json(StatusCode::OK, &requests(sim)),
        (&Method::POST, "/_sim/reset") => {
            sim.reset_all();
            ok()
        }
        (&Method::POST, "/_sim/release") => {
            sim.release_streams();
            ok()
        }
        (&Method::POST, "/_sim/config") => {
            let bytes = body.unwrap_or_default();
            let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
            match serde_json::from_slice::<SimUpdate>(bytes) {
                Ok(update) => {
                    if let Some(on) = update.gzip_json {
                        sim.set_gzip_json(on);
                    }
                    ok()
                }
                Err(e) => bad_request(format!("invalid config update: {e}")),
            }
        }
        (&Method::POST, "/_sim/federations") => {
            match serde_json::from_slice::<Federation>(&body.unwrap_or_default()) {
                Ok(f) => {
                    sim.register_federation(&f.issuer, &f.subject);
                    ok()
                }
                Err(e) => bad_request(format!("invalid federation: {e}")),
            }
        }
        (&Method::POST, p) if p.starts_with("/_sim/tenants/") => {
            let tenant = &p["/_sim/tenants/".len()..];
            let bytes = body.unwrap_or_default();
            let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
            match serde_json::from_slice::<TenantUpdate>(bytes) {
                Ok(update) => match apply(sim, tenant, update) {
                    Ok(()) => ok(),
                    Err(message) => bad_request(message),
                },
                Err(e) => bad_request(format!("invalid tenant update: {e}")),
            }
        }
        _ => support::json(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no control endpoint {method} {path}")}),
        ),
    }
}

fn info(sim: &Simulator) -> Value {
    let config = sim.config();
    let tenants: Vec<Value> = config
        .tenants
        .iter()
        .map(|t| json!({"name": t.name, "id": t.id, "roles": t.roles}))
        .collect();
    let apps: Vec<Value> = config
        .apps
        .iter()
        .map(|a| json!({"name": a.name, "client_id": a.client_id, "credential": a.credential.kind()}))
        .collect();
    let bases = sim.shared.base_urls();
    let clouds: Vec<Value> = std::iter::once(PUBLIC_CLOUD)
        .chain(config.clouds.iter().map(|c| c.name.as_str()))
        .map(|cloud| {
            let audiences: Vec<&str> = config.audiences(cloud).collect();
            json!({"name": cloud, "base_url": bases.get(cloud), "audiences": audiences})
        })
        .collect();
    json!({
        "base_url": sim.base_url(),
        "client_id": config.client_id,
        "api_audience": config.api_audience,
        "extra_audiences": config.extra_audiences,
        "gzip_json": sim.gzip_json(),
        "tenants": tenants,
        "apps": apps,
        "consents": config.consents,
        "clouds": clouds,
        "tenant_clouds": config.tenant_clouds,
    })
}

fn requests(sim: &Simulator) -> Value {
    let api: Vec<Value> = sim.api_requests().iter().map(|r| r.to_json()).collect();
    json!({"token_requests": sim.token_requests(), "api_requests": api})
}

fn apply(sim: &Simulator, tenant: &str, u: TenantUpdate) -> Result<(), String> {
    if let Some(consent) = u.consent {
        sim.set_consent(tenant, consent);
    }
    if let Some(count) = u.fail_token_requests {
        let status = match u.fail_status {
            Some(code) => {
                StatusCode::from_u16(code).map_err(|_| format!("invalid fail_status {code}"))?
            }
            None => StatusCode::SERVICE_UNAVAILABLE,
        };
        sim.fail_token_requests_with(tenant, count, status, u.fail_retry_after);
    }
    if let Some(ms) = u.token_delay_ms {
        sim.set_token_delay(tenant, Duration::from_millis(ms));
    }
    if let Some(ms) = u.api_delay_ms {
        sim.set_api_delay(tenant, Duration::from_millis(ms));
    }
    if let Some(tid) = u.tid_override {
        sim.set_tid_override(tenant, Some(tid).filter(|t| !t.is_empty()));
    }
    if let Some(suffix) = u.token_suffix {
        sim.set_token_suffix(tenant, Some(suffix).filter(|s| !s.is_empty()));
    }
    if let Some(count) = u.force_api_429 {
        sim.force_api_429(tenant, count, u.retry_after.as_deref());
    }
    if let Some(count) = u.hunting_429 {
        sim.fail_hunting_429(tenant, count, u.hunting_retry_after.unwrap_or(1));
    }
    if let Some(count) = u.hunting_quota {
        sim.fail_hunting_quota(tenant, count);
    }
    if let Some(retired) = u.legacy_hunting_retired {
        sim.set_legacy_hunting_retired(tenant, retired);
    }
    if let Some(granted) = u.threat_hunting_role {
        sim.set_threat_hunting_granted(tenant, granted);
    }
    for (client_id, consented) in u.app_consent.into_iter().flatten() {
        sim.set_app_consent(tenant, &client_id, consented);
    }
    if u.revoke == Some(true) {
        sim.revoke_tokens(tenant);
    }
    apply_warnings(
        sim,
        tenant,
        u.throttle_percent,
        u.throttle_scope,
        u.throttle_information,
    );
    if let Some(value) = u.success_retry_after {
        sim.set_retry_after_on_success(tenant, Some(value.as_str()).filter(|v| !v.is_empty()));
    }
    if let Some(count) = u.partial {
        sim.force_partial(tenant, count);
    }
    Ok(())
}

/// `throttle_percent` sets the throttle headers (`""` clears them).
fn apply_warnings(
    sim: &Simulator,
    tenant: &str,
    percent: Option<String>,
    scope: Option<String>,
    information: Option<String>,
) {
    if let Some(percent) = percent {
        let headers = (!percent.is_empty()).then(|| ThrottleHeaders {
            percent,
            scope: scope.unwrap_or_default(),
            information: information.unwrap_or_default(),
        });
        sim.set_throttle_headers(tenant, headers);
    }
}
