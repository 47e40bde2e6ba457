//! The tenant status from a tenant's live state: a scripted token source (one scope issues
//! tokens, the other is not consented), the local limiter on paused time, the counters.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use secrecy::SecretString;
use serde_json::{json, Value};

use super::*;
use crate::api::{ApiBase, ApiTarget};
use crate::body::AccessLog;
use crate::config::{LimitBackend, LimitPolicy, RateLimitConfig, TenantConfig};
use crate::metrics::Metrics;
use crate::ratelimit::{RateLimiter, RouteClass};
use crate::rewrite::LinkBase;
use crate::tenant::Profile;
use crate::token::{ErrorClass, FetchFuture, FetchedToken, TokenBroker, TokenError, TokenSource};

const TENANT_ID: &str = "22222222-2222-2222-2222-222222222222";
const DEFENDER: &str = "https://api.security.microsoft.com/.default";
const GRAPH: &str = "https://graph.microsoft.com/.default";
const CONSENT: &str =
    "https://login.microsoftonline.com/22222222-2222-2222-2222-222222222222/adminconsent?client_id=1111";

/// Defender tokens for an hour; Graph: AADSTS700016 (not consented).
#[derive(Debug, Default)]
struct Source {
    calls: AtomicUsize,
}

impl TokenSource for Source {
    fn fetch<'a>(&'a self, tenant_id: &'a str, scope: &'a str) -> FetchFuture<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if scope == GRAPH {
                return Err(TokenError::Entra {
                    tenant_id: tenant_id.into(),
                    status: 400,
                    error: "unauthorized_client".into(),
                    codes: vec![700016],
                    class: ErrorClass::Consent,
                    consent_url: Some(CONSENT.into()),
                    retry_after: None,
                });
            }
            let claims = json!({"tid": tenant_id, "roles": ["Incident.Read.All"]});
            let jwt = format!(
                "{}.{}.c2lnbmF0dXJl",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            Ok(FetchedToken {
                access_token: SecretString::from(jwt),
                expires_in: Some(Duration::from_secs(3600)),
                refresh_in: None,
            })
        })
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_secs(30)
    }
}

fn target(metrics: &Metrics, name: &str, prefix: Option<&str>, scope: &str) -> Arc<ApiTarget> {
    let uri: http::Uri = "https://api.security.microsoft.com".parse().unwrap();
    Arc::new(ApiTarget {
        name: Arc::from(name),
        prefix: prefix.map(Box::from),
        base: ApiBase::from_uri(&uri).unwrap(),
        links: LinkBase::new("https://api.security.microsoft.com"),
        latency: metrics.api(name),
        scope: Box::from(scope),
    })
}

/// Tenant `contoso` with APIs `default` and `mde` (one Defender token) and `graph`; 10/min
/// burst 5 and 100/h, reject mode; route class `/api/machines` 20/min.
fn tenant() -> (Tenant, Arc<Source>) {
    let metrics = Metrics::default();
    let apis = [
        target(&metrics, "default", None, DEFENDER),
        target(&metrics, "mde", Some("/mde"), DEFENDER),
        target(&metrics, "graph", Some("/graph"), GRAPH),
    ];
    let source = Arc::new(Source::default());
    let broker = TokenBroker::with_source(source.clone());
    let windows = |m, h, b| crate::config::Windows {
        per_minute: std::num::NonZeroU32::new(m),
        per_hour: std::num::NonZeroU32::new(h),
        burst: std::num::NonZeroU32::new(b),
    };
    let policy = LimitPolicy {
        windows: windows(10, 100, 5),
        mode: crate::config::LimitMode::Reject,
        ..LimitPolicy::default()
    };
    let limiter = RateLimiter::new(&RateLimitConfig {
        defaults: policy.clone(),
        routes: vec![crate::config::RouteLimit {
            path_prefix: "/api/machines".into(),
            windows: windows(20, 0, 0),
        }],
        backend: LimitBackend::Local,
    })
    .unwrap();
    let config = TenantConfig {
        name: "contoso".into(),
        id: TENANT_ID.into(),
        rate_limit: policy,
        app: None,
        cloud: None,
        source: Default::default(),
    };
    let profile = Profile {
        app: "default",
        cloud: "default",
    };
    let tenant = Tenant::new(&config, profile, &apis, &broker, &limiter, &metrics);
    (tenant, source)
}

fn json(tenant: &Tenant) -> Value {
    serde_json::to_value(tenant_status(tenant)).unwrap()
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn set<'a>(keys: &[&'a str]) -> BTreeSet<&'a str> {
    keys.iter().copied().collect()
}

/// An RFC 3339 UTC time to the second, as a `SystemTime`.
fn time(v: &Value) -> SystemTime {
    let s = v.as_str().unwrap();
    assert!(s.ends_with('Z') && !s.contains('.'), "{s}");
    humantime::parse_rfc3339(s).unwrap()
}

fn about(t: SystemTime, expected: SystemTime) {
    let off = t.duration_since(expected).unwrap_or_else(|e| e.duration());
    assert!(off <= Duration::from_secs(2), "{t:?} vs {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn a_fresh_tenant_has_the_contract_keys_and_nothing_known() {
    let (tenant, source) = tenant();
    let v = json(&tenant);
    let top = [
        "name",
        "id",
        "source",
        "app",
        "cloud",
        "health",
        "tokens",
        "rate_limit",
        "requests",
    ];
    assert_eq!(keys(&v), set(&top));
    assert_eq!(
        (&v["name"], &v["id"], &v["source"]),
        (&json!("contoso"), &json!(TENANT_ID), &json!("config"))
    );
    assert_eq!(
        (&v["app"], &v["cloud"]),
        (&json!("default"), &json!("default"))
    );
    assert_eq!(v["health"], "ok");

    let tokens = v["tokens"].as_array().unwrap();
    let apis: Vec<&str> = tokens.iter().map(|t| t["api"].as_str().unwrap()).collect();
    assert_eq!(apis, ["default", "mde", "graph"]);
    for t in tokens {
        let token_keys = ["api", "scope", "state", "usable", "expires_at", "roles"];
        assert_eq!(keys(t), set(&token_keys), "no error keys unless failing");
        assert_eq!((&t["state"], &t["usable"]), (&json!("none"), &json!(false)));
        assert_eq!((&t["expires_at"], &t["roles"]), (&Value::Null, &json!([])));
    }

    let limits = &v["rate_limit"];
    assert_eq!(
        keys(limits),
        set(&["backend", "windows", "queued", "paused_until"])
    );
    assert_eq!(
        limits["windows"],
        json!([
            {"class": "default", "window": "minute", "limit": 10, "used": 0},
            {"class": "default", "window": "hour", "limit": 100, "used": 0},
            {"class": "/api/machines", "window": "minute", "limit": 20, "used": 0},
        ])
    );
    assert_eq!(
        (&limits["queued"], &limits["paused_until"]),
        (&json!(0), &Value::Null)
    );
    assert_eq!(
        v["requests"],
        json!({"total": 0, "errors": 0, "last_at": null, "last_error_at": null,
               "last_5m": {"total": 0, "errors": 0}})
    );
    assert_eq!(
        source.calls.load(Ordering::SeqCst),
        0,
        "the status asks nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn tokens_valid_and_failing_with_code_meaning_and_consent_link() {
    let (tenant, source) = tenant();
    tenant.apis[0].token.get().await.unwrap();
    tenant.apis[2].token.get().await.unwrap_err();
    let v = json(&tenant);
    let tokens = v["tokens"].as_array().unwrap();
    for valid in &tokens[..2] {
        // `default` and `mde` share the Defender scope's one token.
        assert_eq!(
            (&valid["state"], &valid["usable"]),
            (&json!("valid"), &json!(true))
        );
        about(
            time(&valid["expires_at"]),
            SystemTime::now() + Duration::from_secs(3600),
        );
        assert_eq!(valid["roles"], json!(["Incident.Read.All"]));
        assert!(valid.get("error").is_none() && valid.get("consent_url").is_none());
    }
    let failing = &tokens[2];
    assert_eq!(failing["state"], "failing");
    assert_eq!(
        (&failing["usable"], &failing["expires_at"]),
        (&json!(false), &Value::Null)
    );
    assert_eq!(
        failing["error"],
        json!({
            "code": "AADSTS700016",
            "meaning": "the app is not consented in this tenant, or the tenant id is wrong",
        })
    );
    assert_eq!(failing["consent_url"], CONSENT);
    // One token works: degraded, not failing.
    assert_eq!(v["health"], "degraded");
    assert_eq!(
        source.calls.load(Ordering::SeqCst),
        2,
        "the status asked nothing"
    );
    let text = v.to_string();
    assert!(
        !text.contains("c2lnbmF0dXJl"),
        "no token in the status: {text}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_only_token_in_use_failing_fails_the_tenant() {
    let (tenant, _) = tenant();
    tenant.apis[2].token.get().await.unwrap_err();
    assert_eq!(json(&tenant)["health"], "failing");
}

#[tokio::test(start_paused = true)]
async fn windows_show_admissions_and_the_pause() {
    let (tenant, _) = tenant();
    for _ in 0..4 {
        tenant.limits.admit(RouteClass::DEFAULT).await.unwrap();
    }
    tenant
        .limits
        .hold(RouteClass::DEFAULT, Duration::from_secs(30));
    let v = json(&tenant);
    let used: Vec<&Value> = v["rate_limit"]["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["used"])
        .collect();
    assert_eq!(used, [&json!(4), &json!(4), &json!(0)]);
    about(
        time(&v["rate_limit"]["paused_until"]),
        SystemTime::now() + Duration::from_secs(30),
    );
    assert_eq!(v["health"], "degraded", "paused");
}

/// One request of `tenant` to API `api` ending with `status`, counted where the proxy counts
/// it: when its access line is dropped.
fn finish(tenant: &Tenant, api: usize, status: u16) {
    drop(AccessLog {
        metrics: tenant.metrics.clone(),
        requests: Some(tenant.apis[api].requests.clone()),
        api: None,
        start: tokio::time::Instant::now(),
        request_id: http::HeaderValue::from_static("test"),
        tenant: None,
        method: http::Method::GET,
        uri: http::Uri::from_static("/contoso/api/alerts"),
        status,
        bytes: 10,
        complete: true,
        client: None,
        peer: None,
        audit: None,
        coalesced: false,
        cache: None,
        translated: false,
        upstream: None,
    });
}

#[tokio::test(start_paused = true)]
async fn requests_count_errors_and_their_times() {
    let (tenant, _) = tenant();
    // A status counted without a finished request (as after a reload): no time yet.
    tenant.apis[2].requests.record(503);
    let v = json(&tenant);
    assert_eq!(
        (&v["requests"]["total"], &v["requests"]["last_at"]),
        (&json!(1), &Value::Null)
    );

    for (api, status) in [(0, 200), (0, 404), (1, 403), (0, 200)] {
        finish(&tenant, api, status);
    }
    let v = json(&tenant);
    assert_eq!(
        (&v["requests"]["total"], &v["requests"]["errors"]),
        (&json!(5), &json!(2)),
        "403 and 503 are errors, 404 is the client's"
    );
    about(time(&v["requests"]["last_at"]), SystemTime::now());
    about(time(&v["requests"]["last_error_at"]), SystemTime::now());
    assert_eq!(
        v["requests"]["last_5m"],
        json!({"total": 4, "errors": 1}),
        "finished requests only (the 503 above was counted without one)"
    );
    assert_eq!(v["health"], "degraded", "a recent error status");
}

#[test]
fn only_statuses_about_the_tenant_are_errors() {
    let errors: Vec<u16> = (100..600)
        .filter(|s| crate::metrics::is_error_status(*s))
        .collect();
    let mut expected = vec![401, 403, 429];
    expected.extend(500..600);
    assert_eq!(errors, expected);
}

#[test]
fn times_are_rfc3339_utc_seconds() {
    let t = Time(SystemTime::UNIX_EPOCH + Duration::from_millis(1_738_324_800_500));
    assert_eq!(
        serde_json::to_value(t).unwrap(),
        json!("2025-01-31T12:00:00Z")
    );
}
