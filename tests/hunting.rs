//! Advanced hunting through Microsoft Graph (issue 13): the legacy hunting routes
//! (`POST .../api/advancedhunting/run`, `POST .../api/advancedqueries/run`) answered through Graph's
//! `POST /v1.0/security/runHuntingQuery` with `[advanced_hunting] via = "graph"`, per tenant with
//! `"auto"`, and forwarded as before by default. What reached Graph (or the legacy APIs) is read
//! from the simulator's records; the answers are compared with what Graph itself returns.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use defender_proxy::config::{Config, HuntingVia};
use defender_proxy::sim::{ApiRequestRecord, SimConfig, THREAT_HUNTING_ROLE};
use serde_json::{json, Value};
use support::{error_code, eventually, metrics_text, within, Harness, Logs, CONTOSO, FABRIKAM};

const RUN_HUNTING_QUERY: &str = "/v1.0/security/runHuntingQuery";
const XDR_AUD: &str = "https://api.security.microsoft.com";
const MDE_AUD: &str = "https://api.securitycenter.microsoft.com";
const GRAPH_AUD: &str = "https://graph.microsoft.com";
const XDR_RUN: &str = "/contoso/api/advancedhunting/run";
const WAIT: Duration = Duration::from_secs(10);

/// The proxy (its Graph `[[api]]` is `graph`, prefix `/graph`, as in `serve --dev`) with `via`.
async fn start(via: HuntingVia) -> Harness {
    start_tweaked(SimConfig::demo(), via, |_| {}).await
}

async fn start_tweaked(
    sim: SimConfig,
    via: HuntingVia,
    tweak: impl FnOnce(&mut Config),
) -> Harness {
    Harness::start_with(sim, |c| {
        assert_eq!(
            c.hunting.graph_api, "graph",
            "the default names the dev config's Graph"
        );
        c.hunting.via = via;
        c.add_hunting_route();
        tweak(c);
    })
    .await
}

/// The proxy started from a config file, as `serve --config` reads it: the simulator's tenants,
/// the `mde` and `graph` `[[api]]`s of `serve --dev`, and `extra` (say an `[advanced_hunting]`).
async fn start_file(extra: &str) -> Harness {
    let sim = SimConfig::demo();
    let dir = std::env::temp_dir().join(format!(
        "defender-proxy-hunting-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, &sim.client_secret).unwrap();
    let path = dir.join("proxy.toml");
    let h = Harness::start_file(sim.clone(), |base| {
        let mut text = format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
             [app]\nclient_id = \"{}\"\nclient_secret = {{ file = \"{}\" }}\n\
             [cloud]\nauthority = \"{base}\"\napi = \"{base}\"\n\
             [[api]]\nname = \"mde\"\nprefix = \"/mde\"\nurl = \"{base}\"\n\
             scope = \"{MDE_AUD}/.default\"\n\
             [[api]]\nname = \"graph\"\nprefix = \"/graph\"\nurl = \"{base}\"\n\
             scope = \"{GRAPH_AUD}/.default\"\n{extra}\n",
            sim.client_id,
            secret.display(),
        );
        for t in &sim.tenants {
            text.push_str(&format!(
                "[[tenant]]\nname = \"{}\"\nid = \"{}\"\n",
                t.name, t.id
            ));
        }
        std::fs::write(&path, &text).unwrap();
        path.clone()
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    h
}

/// `POST path` with `body`, in header mode when `tenant_header` is given.
async fn post(
    h: &Harness,
    path: &str,
    tenant_header: Option<&str>,
    body: &str,
) -> reqwest::Response {
    let mut request = h
        .http
        .post(h.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(tenant) = tenant_header {
        request = request.header("X-Defender-Tenant", tenant);
    }
    request.send().await.expect("request sent")
}

/// `POST path {"Query": query}`: status, headers and the JSON body.
async fn hunt(h: &Harness, path: &str, query: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = post(h, path, None, &json!({ "Query": query }).to_string()).await;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text:.300}"));
    (status, headers, body)
}

/// The requests that reached Graph's `runHuntingQuery`.
fn graph_calls(h: &Harness) -> Vec<ApiRequestRecord> {
    h.sim
        .api_requests()
        .into_iter()
        .filter(|r| r.path_and_query == RUN_HUNTING_QUERY)
        .collect()
}

/// Those of one tenant (by the token's `tid`).
fn graph_calls_of(h: &Harness, tenant: &str) -> usize {
    let tid = h.tenant_id(tenant);
    graph_calls(h)
        .iter()
        .filter(|r| r.tid.as_deref() == Some(tid.as_str()))
        .count()
}

/// The JSON body a record kept.
fn sent_json(record: &ApiRequestRecord) -> Value {
    let body = record.body.as_ref().expect("a small body is kept");
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

/// The last request the simulator saw: (method, path, audience, tenant id).
fn last_seen(h: &Harness) -> (String, String, Option<String>, Option<String>) {
    let r = h
        .sim
        .api_requests()
        .pop()
        .expect("a request reached the simulator");
    (r.method.to_string(), r.path_and_query, r.aud, r.tid)
}

fn content_type(headers: &reqwest::header::HeaderMap) -> &str {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The top-level keys of a JSON object in the order written (`Value` sorts them).
fn top_level_keys(text: &str) -> Vec<String> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut keys = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                keys.push(key);
            }
            Ok(keys)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde::Deserializer::deserialize_map(&mut de, Keys).unwrap()
}

/// `defender_proxy_hunting_requests_total` of `tenant` and `via` (summed over any other labels;
/// 0 when absent).
async fn hunting_count(h: &Harness, tenant: &str, via: &str) -> f64 {
    let text = metrics_text(h.admin).await.unwrap_or_default();
    let (tenant, via) = (format!("tenant=\"{tenant}\""), format!("via=\"{via}\""));
    text.lines()
        .filter(|l| l.starts_with("defender_proxy_hunting_requests_total{"))
        .filter(|l| l.contains(&tenant) && l.contains(&via))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (bounded) until the counter of `tenant` and `via` reaches `want`, then checks it is
/// exactly `want`.
async fn expect_hunting_count(h: &Harness, tenant: &str, via: &str, want: f64) {
    let what = format!("hunting_requests_total{{tenant={tenant},via={via}}} reaches {want}");
    eventually(WAIT, &what, || async {
        (hunting_count(h, tenant, via).await >= want).then_some(())
    })
    .await;
    assert_eq!(hunting_count(h, tenant, via).await, want, "{what}");
}

#[tokio::test]
async fn graph_mode_answers_both_legacy_routes_through_graph_on_the_default_and_mde_apis_in_path_and_header_mode(
) {
    // Ten queries of one tenant: more than Graph hunting's 45/minute lets pass at once.
    let h = start_tweaked(SimConfig::demo(), HuntingVia::Graph, |c| {
        for route in &mut c.rate_limit.routes {
            if route.path_prefix.ends_with("/runHuntingQuery") {
                route.windows.per_minute = std::num::NonZeroU32::new(6000);
            }
        }
    })
    .await;
    let contoso = h.tenant_id(CONTOSO);
    // Contoso's legacy APIs are retired: a 200 can only come through Graph.
    h.sim.set_legacy_hunting_retired(&contoso, true);
    let by_id = format!("/{contoso}/api/advancedhunting/run");
    let routes: Vec<(&str, Option<&str>)> = vec![
        ("/contoso/api/advancedhunting/run", None),
        ("/contoso/api/advancedqueries/run", None),
        ("/contoso/mde/api/advancedqueries/run", None),
        ("/contoso/mde/api/advancedhunting/run", None),
        // ASCII case-insensitive, optional trailing slash.
        ("/contoso/API/AdvancedHunting/Run/", None),
        ("/contoso/mde/Api/ADVANCEDQUERIES/run/", None),
        (&by_id, None),
        // Header mode.
        ("/api/advancedqueries/run", Some(CONTOSO)),
        ("/api/advancedhunting/run", Some(CONTOSO)),
        ("/mde/api/advancedqueries/run", Some(CONTOSO)),
    ];
    for (i, (path, header)) in routes.iter().enumerate() {
        let query = format!("DeviceInfo | take {}", i + 1);
        let r = post(&h, path, *header, &json!({ "Query": query }).to_string()).await;
        assert_eq!(r.status(), 200, "{path} {header:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["Results"].as_array().map(Vec::len),
            Some(i + 1),
            "{path} {header:?}: {body:.300}"
        );
        let calls = graph_calls(&h);
        assert_eq!(calls.len(), i + 1, "{path} {header:?}: one Graph call each");
        let call = calls.last().unwrap();
        assert_eq!(call.method, http::Method::POST);
        assert_eq!(call.aud.as_deref(), Some(GRAPH_AUD), "{path}");
        assert_eq!(call.tid.as_deref(), Some(contoso.as_str()), "{path}");
        assert_eq!(sent_json(call)["Query"], query.as_str(), "{path}");
    }
    assert_eq!(
        h.sim.api_request_count(),
        routes.len(),
        "nothing went to the legacy APIs"
    );
}

#[tokio::test]
async fn graph_mode_forwards_other_methods_and_paths_and_the_graph_apis_own_hunting_paths_untouched(
) {
    let h = start(HuntingVia::Graph).await;
    let contoso = h.tenant_id(CONTOSO);
    let cases = [
        ("GET", XDR_RUN, "/api/advancedhunting/run", XDR_AUD),
        (
            "POST",
            "/contoso/api/advancedhunting/run/more",
            "/api/advancedhunting/run/more",
            XDR_AUD,
        ),
        (
            "POST",
            "/contoso/api/advancedhunting/runs",
            "/api/advancedhunting/runs",
            XDR_AUD,
        ),
        (
            "POST",
            "/contoso/api/advancedhunting",
            "/api/advancedhunting",
            XDR_AUD,
        ),
        (
            "POST",
            "/contoso/mde/api/advancedqueries",
            "/api/advancedqueries",
            MDE_AUD,
        ),
        // The Graph [[api]] is Graph itself: its paths are forwarded, never translated.
        (
            "POST",
            "/contoso/graph/api/advancedhunting/run",
            "/api/advancedhunting/run",
            GRAPH_AUD,
        ),
        (
            "POST",
            "/contoso/graph/api/advancedqueries/run",
            "/api/advancedqueries/run",
            GRAPH_AUD,
        ),
    ];
    for (method, path, upstream, aud) in cases {
        let request = match method {
            "GET" => h.http.get(h.url(path)),
            _ => h
                .http
                .post(h.url(path))
                .body(r#"{"Query":"DeviceInfo | take 1"}"#),
        };
        let r = request.send().await.unwrap();
        let status = r.status();
        let _ = r.bytes().await;
        assert_eq!(
            last_seen(&h),
            (
                method.to_owned(),
                upstream.to_owned(),
                Some(aud.to_owned()),
                Some(contoso.clone())
            ),
            "{method} {path} (answered {status})"
        );
    }
    assert!(graph_calls(&h).is_empty(), "nothing was translated");
}

#[tokio::test]
async fn the_graph_request_carries_the_clients_query_and_timespan_with_the_tenants_graph_token() {
    let h = start(HuntingVia::Graph).await;
    let cases = [
        (
            XDR_RUN,
            None,
            r#"{"Query":"DeviceInfo | take 2","Timespan":"P7D"}"#,
            CONTOSO,
            "DeviceInfo | take 2",
            Some("P7D"),
        ),
        (
            "/fabrikam/mde/api/advancedqueries/run",
            None,
            r#"{"query":"DeviceEvents | take 1","timespan":"2026-01-01T00:00:00Z/P1D"}"#,
            FABRIKAM,
            "DeviceEvents | take 1",
            Some("2026-01-01T00:00:00Z/P1D"),
        ),
        (
            "/api/advancedhunting/run",
            Some(CONTOSO),
            r#"{"QUERY":"DeviceInfo | where DeviceName has \"ws\" | take 3"}"#,
            CONTOSO,
            "DeviceInfo | where DeviceName has \"ws\" | take 3",
            None,
        ),
    ];
    for (i, (path, header, body, tenant, query, timespan)) in cases.into_iter().enumerate() {
        let r = post(&h, path, header, body).await;
        assert_eq!(r.status(), 200, "{body}");
        let _ = r.bytes().await.unwrap();
        let calls = graph_calls(&h);
        assert_eq!(calls.len(), i + 1, "{body}");
        let call = calls.last().unwrap();
        assert_eq!(call.aud.as_deref(), Some(GRAPH_AUD), "the Graph token");
        assert_eq!(
            call.tid.as_deref(),
            Some(h.tenant_id(tenant).as_str()),
            "{tenant}'s"
        );
        let ct = call
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        assert!(
            ct.is_some_and(|v| v.starts_with("application/json")),
            "{body}: content-type {ct:?}"
        );
        let sent = sent_json(call);
        let keys = sent
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>();
        assert!(
            keys.iter().all(|k| *k == "Query" || *k == "Timespan"),
            "Graph's two properties only: {sent}"
        );
        assert_eq!(sent["Query"], query, "{sent}");
        match timespan {
            Some(t) => assert_eq!(sent["Timespan"], t, "{sent}"),
            None => assert!(sent["Timespan"].is_null(), "no Timespan invented: {sent}"),
        }
    }
}

#[tokio::test]
async fn a_body_without_a_string_query_is_the_proxys_400_and_graph_is_not_called() {
    let h = start(HuntingVia::Graph).await;
    let bodies = [
        "",
        "DeviceInfo | take 1",
        r#"{"Query":"DeviceInfo""#,
        "[]",
        "null",
        r#""DeviceInfo | take 1""#,
        "{}",
        r#"{"Timespan":"P1D"}"#,
        r#"{"Query":5}"#,
        r#"{"Query":null}"#,
        r#"{"Query":["DeviceInfo"]}"#,
        r#"{"Query":{"text":"DeviceInfo"}}"#,
        r#"{"Query":"DeviceInfo","Timespan":30}"#,
    ];
    for body in bodies {
        for path in [XDR_RUN, "/contoso/mde/api/advancedqueries/run"] {
            let r = post(&h, path, None, body).await;
            assert_eq!(r.status(), 400, "{path} {body}");
            let ct = content_type(r.headers()).to_owned();
            assert!(ct.starts_with("application/json"), "{body}: {ct}");
            let answer: Value = r.json().await.unwrap();
            assert_eq!(error_code(&answer), "BadRequest", "{body}: {answer}");
            assert_eq!(
                answer["error"]["target"], "defender-proxy",
                "{body}: {answer}"
            );
            assert!(answer["error"]["message"].is_string(), "{answer}");
        }
    }
    assert_eq!(
        h.sim.api_request_count(),
        0,
        "neither Graph nor a legacy API was called: {:?}",
        h.sim.api_requests()
    );
}

#[tokio::test]
async fn graphs_answer_becomes_schema_results_then_stats_with_graphs_rows_unchanged() {
    let h = start(HuntingVia::Graph).await;
    for rows in [1000usize, 0] {
        let query = format!("DeviceInfo | take {rows}");
        let body = json!({ "Query": query }).to_string();
        // What Graph itself answers, through the proxy's Graph route (not translated).
        let reference = post(
            &h,
            "/contoso/graph/v1.0/security/runHuntingQuery",
            None,
            &body,
        )
        .await;
        assert_eq!(reference.status(), 200);
        let graph_text = reference.text().await.unwrap();
        let graph: Value = serde_json::from_str(&graph_text).unwrap();

        let r = post(&h, XDR_RUN, None, &body).await;
        assert_eq!(r.status(), 200);
        let ct = content_type(r.headers()).to_owned();
        assert!(ct.starts_with("application/json"), "{ct}");
        let text = r.text().await.unwrap();
        assert_eq!(
            top_level_keys(&text),
            ["Schema", "Results", "Stats"],
            "{text:.300}"
        );
        let legacy: Value = serde_json::from_str(&text).unwrap();

        let schema: Vec<Value> = graph["schema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| json!({"Name": c["name"], "Type": c["type"]}))
            .collect();
        assert_eq!(schema.len(), 5);
        assert_eq!(legacy["Schema"], Value::from(schema), "in Graph's order");
        assert_eq!(legacy["Results"].as_array().unwrap().len(), rows);
        assert_eq!(
            legacy["Results"], graph["results"],
            "the rows Graph sent, in its order"
        );
        // Byte for byte: Graph's results array (its last member) appears verbatim.
        let start = graph_text.find("\"results\":").unwrap() + "\"results\":".len();
        let raw_results = graph_text[start..]
            .trim_end()
            .strip_suffix('}')
            .unwrap()
            .trim_end();
        assert!(text.contains(raw_results), "rows passed unchanged");
        let stats = legacy["Stats"].as_object().unwrap();
        assert!(
            stats["ExecutionTime"].as_f64().is_some_and(|s| s >= 0.0),
            "{stats:?}"
        );
    }
}

#[tokio::test]
async fn a_graph_429_keeps_its_retry_after_in_the_defender_shape_and_pauses_only_that_tenants_hunting(
) {
    let h = start(HuntingVia::Graph).await;
    h.sim.fail_hunting_429(&h.tenant_id(CONTOSO), 1, 120);
    let (status, headers, body) = hunt(&h, XDR_RUN, "DeviceInfo | take 1").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "120");
    assert!(content_type(&headers).starts_with("application/json"));
    assert_eq!(error_code(&body), "TooManyRequests", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["target"].is_string(), "{body}");
    assert_eq!(graph_calls_of(&h, CONTOSO), 1);

    // Paused: the proxy answers the next one itself, Graph is not called.
    for path in [XDR_RUN, "/contoso/mde/api/advancedqueries/run"] {
        let (status, headers, body) = hunt(&h, path, "DeviceInfo | take 1").await;
        assert_eq!(status, 429, "{path}: {body}");
        assert_eq!(error_code(&body), "RateLimited", "{path}: the proxy's own");
        assert!(headers.contains_key("retry-after"), "{path}");
    }
    assert_eq!(
        graph_calls_of(&h, CONTOSO),
        1,
        "nothing sent during the pause"
    );

    // Another tenant's hunting is not paused.
    let (status, _, body) = hunt(
        &h,
        "/fabrikam/api/advancedhunting/run",
        "DeviceInfo | take 2",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Results"].as_array().map(Vec::len), Some(2));
    assert_eq!(graph_calls_of(&h, FABRIKAM), 1);
}

#[tokio::test]
async fn a_graph_429_pauses_the_tenants_hunting_only_not_its_other_routes() {
    let h = start(HuntingVia::Graph).await;
    h.sim.fail_hunting_429(&h.tenant_id(CONTOSO), 1, 120);
    assert_eq!(hunt(&h, XDR_RUN, "DeviceInfo | take 1").await.0, 429);
    assert_eq!(
        hunt(&h, XDR_RUN, "DeviceInfo | take 1").await.0,
        429,
        "paused"
    );
    // Graph throttled hunting queries; the tenant's other routes are no hunting.
    for path in [
        "/contoso/api/incidents",
        "/contoso/mde/api/machines",
        "/contoso/graph/v1.0/security/incidents",
    ] {
        let r = h.get(path).await;
        let status = r.status();
        assert_eq!(status, 200, "{path}: {}", r.text().await.unwrap());
    }
}

#[tokio::test]
async fn graphs_cpu_quota_refusal_is_a_429_after_quota_retry_after_and_pauses_the_tenants_hunting()
{
    let h = start_file("[advanced_hunting]\nvia = \"graph\"\nquota_retry_after = \"2m\"").await;
    assert_eq!(h.config.hunting.via, HuntingVia::Graph);
    h.sim.fail_hunting_quota(&h.tenant_id(CONTOSO), 1);
    let (status, headers, body) = hunt(&h, XDR_RUN, "DeviceInfo | take 1").await;
    assert_eq!(status, 429, "Graph's 400 is a 429 to the client: {body}");
    assert_eq!(headers["retry-after"], "120", "quota_retry_after");
    assert_eq!(error_code(&body), "TooManyRequests", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["target"].is_string(), "{body}");
    assert_eq!(graph_calls_of(&h, CONTOSO), 1);

    for path in [XDR_RUN, "/contoso/mde/api/advancedqueries/run"] {
        let (status, _, body) = hunt(&h, path, "DeviceInfo | take 1").await;
        assert_eq!(status, 429, "{path}: {body}");
        assert_eq!(error_code(&body), "RateLimited", "{path}: the proxy's own");
    }
    assert_eq!(
        graph_calls_of(&h, CONTOSO),
        1,
        "Graph not called during the pause"
    );
    let (status, _, _) = hunt(
        &h,
        "/fabrikam/api/advancedhunting/run",
        "DeviceInfo | take 1",
    )
    .await;
    assert_eq!(status, 200, "another tenant's quota is its own");
}

/// Demo tenants with tokens refreshed about every second (`refresh_in`), `ThreatHunting.Read.All`
/// withheld from those named, and no Defender limits (the polls below send many queries).
fn sim_without_threat_hunting(tenants: &[&str]) -> SimConfig {
    let mut sim = SimConfig::demo();
    sim.enforce_limits = false;
    sim.token_lifetime = Duration::from_secs(60);
    sim.refresh_in = Some(Duration::from_secs(1));
    for t in sim
        .tenants
        .iter_mut()
        .filter(|t| tenants.contains(&t.name.as_str()))
    {
        t.roles.retain(|r| r != THREAT_HUNTING_ROLE);
    }
    sim
}

/// Graph-scoped token requests of `tenant`.
fn graph_token_requests(h: &Harness, tenant: &str) -> usize {
    let id = h.tenant_id(tenant);
    h.sim
        .token_requests()
        .iter()
        .filter(|r| {
            r.tenant.eq_ignore_ascii_case(&id) && r.scope_or_resource.starts_with(GRAPH_AUD)
        })
        .count()
}

/// One hunting request of `tenant` (200 expected); whether it went to Graph.
async fn hunted_through_graph(h: &Harness, tenant: &str) -> bool {
    let before = graph_calls_of(h, tenant);
    let (status, _, body) = hunt(
        h,
        &format!("/{tenant}/api/advancedhunting/run"),
        "DeviceInfo | take 1",
    )
    .await;
    assert_eq!(status, 200, "{tenant}: {body}");
    assert_eq!(body["Results"].as_array().map(Vec::len), Some(1), "{body}");
    let through_graph = graph_calls_of(h, tenant) > before;
    if !through_graph {
        let (_, path, aud, tid) = last_seen(h);
        assert_eq!(
            (path.as_str(), aud.as_deref(), tid),
            (
                "/api/advancedhunting/run",
                Some(XDR_AUD),
                Some(h.tenant_id(tenant))
            ),
            "{tenant}: forwarded to the legacy API"
        );
    }
    through_graph
}

#[tokio::test]
async fn auto_moves_a_tenant_to_graph_once_its_refreshed_graph_token_carries_threat_hunting() {
    let sim = sim_without_threat_hunting(&[CONTOSO, FABRIKAM]);
    let h = start_tweaked(sim, HuntingVia::Auto, |_| {}).await;
    // Neither tenant's Graph token has the role: legacy, as before (the MDE route too).
    assert!(!hunted_through_graph(&h, CONTOSO).await);
    assert!(!hunted_through_graph(&h, FABRIKAM).await);
    let (status, _, _) = hunt(
        &h,
        "/contoso/mde/api/advancedqueries/run",
        "DeviceInfo | take 1",
    )
    .await;
    assert_eq!(status, 200);
    let (_, path, aud, _) = last_seen(&h);
    assert_eq!(
        (path.as_str(), aud.as_deref()),
        ("/api/advancedqueries/run", Some(MDE_AUD))
    );

    // Contoso's admin consents; once the proxy's Graph token is refreshed, contoso is on Graph,
    // with no reload.
    h.sim
        .set_threat_hunting_granted(&h.tenant_id(CONTOSO), true);
    eventually(
        Duration::from_secs(20),
        "contoso's hunting moves to Graph",
        || async {
            assert!(
                !hunted_through_graph(&h, FABRIKAM).await,
                "fabrikam stays on legacy"
            );
            hunted_through_graph(&h, CONTOSO).await.then_some(())
        },
    )
    .await;
    // Fabrikam, its Graph token refreshed too (still without the role), stays on legacy.
    let fetched = graph_token_requests(&h, FABRIKAM);
    eventually(
        Duration::from_secs(20),
        "fabrikam's Graph token is refreshed",
        || async {
            assert!(
                !hunted_through_graph(&h, FABRIKAM).await,
                "fabrikam stays on legacy"
            );
            (graph_token_requests(&h, FABRIKAM) > fetched).then_some(())
        },
    )
    .await;
    assert!(!hunted_through_graph(&h, FABRIKAM).await);
    for _ in 0..3 {
        assert!(
            hunted_through_graph(&h, CONTOSO).await,
            "contoso stays on Graph"
        );
    }
}

#[tokio::test]
async fn by_default_hunting_is_forwarded_to_the_legacy_apis_as_before_even_with_a_graph_api() {
    // A config file without `[advanced_hunting]` (`serve --dev`'s config runs `auto`).
    let h = start_file("").await;
    assert_eq!(h.config.hunting.via, HuntingVia::Legacy, "the default");
    assert!(
        h.config.apis.iter().any(|a| a.name == "graph"),
        "a Graph [[api]]"
    );
    let cases = [
        (XDR_RUN, None, "/api/advancedhunting/run", XDR_AUD),
        (
            "/contoso/mde/api/advancedqueries/run",
            None,
            "/api/advancedqueries/run",
            MDE_AUD,
        ),
        (
            "/api/advancedhunting/run",
            Some(CONTOSO),
            "/api/advancedhunting/run",
            XDR_AUD,
        ),
    ];
    for (path, header, upstream, aud) in cases {
        let body = r#"{"Query":"DeviceInfo | take 3","Timespan":"P1D"}"#;
        let r = post(&h, path, header, body).await;
        assert_eq!(r.status(), 200, "{path}");
        let answer: Value = r.json().await.unwrap();
        // The legacy API's own answer, untouched (the translation writes no dataset_statistics).
        assert_eq!(
            answer["Stats"]["dataset_statistics"][0]["table_row_count"], 3,
            "{path}"
        );
        assert_eq!(answer["Results"].as_array().map(Vec::len), Some(3));
        let seen = h.sim.api_requests().pop().unwrap();
        assert_eq!(
            (seen.path_and_query.as_str(), seen.aud.as_deref()),
            (upstream, Some(aud)),
            "{path}"
        );
        assert_eq!(
            seen.body.as_deref(),
            Some(body.as_bytes()),
            "the body byte for byte"
        );
    }
    // A retired legacy API's answer reaches the client; nothing falls back to Graph.
    h.sim
        .set_legacy_hunting_retired(&h.tenant_id(CONTOSO), true);
    let (status, _, body) = hunt(&h, XDR_RUN, "DeviceInfo | take 1").await;
    assert_eq!((status, error_code(&body)), (410, "Gone"), "{body}");
    assert!(graph_calls(&h).is_empty(), "Graph was never called");
}

#[tokio::test]
async fn hunting_requests_are_counted_per_tenant_and_via_in_every_mode() {
    // Legacy.
    let h = start(HuntingVia::Legacy).await;
    for path in [XDR_RUN, "/contoso/mde/api/advancedqueries/run"] {
        assert_eq!(hunt(&h, path, "DeviceInfo | take 1").await.0, 200);
    }
    assert_eq!(
        h.get("/contoso/api/incidents").await.status(),
        200,
        "not hunting"
    );
    expect_hunting_count(&h, CONTOSO, "legacy", 2.0).await;
    expect_hunting_count(&h, CONTOSO, "graph", 0.0).await;

    // Graph.
    let h = start(HuntingVia::Graph).await;
    for path in [
        XDR_RUN,
        "/contoso/mde/api/advancedqueries/run",
        "/contoso/api/advancedqueries/run",
    ] {
        assert_eq!(hunt(&h, path, "DeviceInfo | take 1").await.0, 200);
    }
    assert_eq!(
        hunt(
            &h,
            "/fabrikam/api/advancedhunting/run",
            "DeviceInfo | take 1"
        )
        .await
        .0,
        200
    );
    expect_hunting_count(&h, CONTOSO, "graph", 3.0).await;
    expect_hunting_count(&h, FABRIKAM, "graph", 1.0).await;
    expect_hunting_count(&h, CONTOSO, "legacy", 0.0).await;

    // Auto: contoso has the role, fabrikam not.
    let h = start_tweaked(
        sim_without_threat_hunting(&[FABRIKAM]),
        HuntingVia::Auto,
        |_| {},
    )
    .await;
    for _ in 0..2 {
        assert!(hunted_through_graph(&h, CONTOSO).await);
    }
    assert!(!hunted_through_graph(&h, FABRIKAM).await);
    expect_hunting_count(&h, CONTOSO, "graph", 2.0).await;
    expect_hunting_count(&h, CONTOSO, "legacy", 0.0).await;
    expect_hunting_count(&h, FABRIKAM, "legacy", 1.0).await;
    expect_hunting_count(&h, FABRIKAM, "graph", 0.0).await;
}

/// The `n`th access line (0-based), once written (it is written when the body has been sent).
async fn access_line(logs: &Logs, n: usize) -> Value {
    eventually(WAIT, "the access line is written", || async {
        logs.access().get(n).cloned()
    })
    .await
}

#[tokio::test]
async fn the_access_line_says_translated_for_requests_answered_through_graph() {
    let graph = start(HuntingVia::Graph).await;
    let legacy = start(HuntingVia::Legacy).await;
    // The access line's callsite is registered before the capture (whose cache rebuild then
    // covers it), not by another test's thread at the very moment of the capture. On this
    // current-thread runtime, once the response bytes are counted (in the access line's `Drop`)
    // the line has run.
    assert_eq!(graph.get("/contoso/api/incidents").await.status(), 200);
    eventually(WAIT, "the warm-up's access line ran", || async {
        graph
            .metric("defender_proxy_response_bytes_total{tenant=\"contoso\"}")
            .await
            .filter(|b| *b > 0.0)
    })
    .await;
    let (logs, _guard) = Logs::capture();
    let requests: [(&Harness, &str, bool); 5] = [
        (&graph, XDR_RUN, true),
        (&graph, "/contoso/mde/api/advancedqueries/run", true),
        // Not hunting routes, or not translated: Graph's own route, the legacy mode.
        (
            &graph,
            "/contoso/graph/v1.0/security/runHuntingQuery",
            false,
        ),
        (&graph, "/contoso/api/incidents", false),
        (&legacy, XDR_RUN, false),
    ];
    for (n, (h, path, translated)) in requests.into_iter().enumerate() {
        let r = if path.ends_with("incidents") {
            h.get(path).await
        } else {
            post(h, path, None, r#"{"Query":"DeviceInfo | take 2"}"#).await
        };
        assert_eq!(r.status(), 200, "{path}");
        let _ = r.bytes().await.unwrap();
        let line = access_line(&logs, n).await;
        assert_eq!(line["path"], path, "{line}");
        assert_eq!(line["translated"], translated, "{path}: {line}");
    }
}

/// `VmHWM` (peak resident set) or `VmRSS` of this process, in KiB.
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// Resets the peak resident set (`VmHWM`) to the current one.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("/proc/self/clear_refs (Linux)");
}

/// Counts rows (`"ReportId":`) across chunk edges and keeps the last bytes.
#[derive(Default)]
struct Scan {
    bytes: usize,
    rows: usize,
    /// The last `NEEDLE.len() - 1` bytes, for a row key split across chunks.
    carry: Vec<u8>,
    tail: Vec<u8>,
}

impl Scan {
    const NEEDLE: &'static [u8] = b"\"ReportId\":";

    fn feed(&mut self, chunk: &[u8]) {
        let keep = Self::NEEDLE.len() - 1;
        self.bytes += chunk.len();
        let mut edge = std::mem::take(&mut self.carry);
        edge.extend_from_slice(&chunk[..chunk.len().min(keep)]);
        self.rows += memchr::memmem::find_iter(&edge, Self::NEEDLE).count();
        self.rows += memchr::memmem::find_iter(chunk, Self::NEEDLE).count();
        let mut last = if chunk.len() >= keep {
            Vec::new()
        } else {
            edge
        };
        last.extend_from_slice(&chunk[chunk.len().saturating_sub(keep)..]);
        self.carry = last[last.len().saturating_sub(keep)..].to_vec();
        self.tail
            .extend_from_slice(&chunk[chunk.len().saturating_sub(256)..]);
        let cut = self.tail.len().saturating_sub(256);
        self.tail.drain(..cut);
    }
}

const MEMORY_CHILD: &str = "memory_child_50_mb_through_graph";
const MEMORY_CHILD_ENV: &str = "DEFENDER_PROXY_HUNTING_MEMORY_CHILD";

/// The 50 MB test runs in a process of its own (this test binary, that one test), so the peak
/// resident set it measures is its own and no other test's.
///
/// Peak RSS rather than a counting `#[global_allocator]`: implementing `GlobalAlloc` takes
/// `unsafe`, which the crate's `unsafe_code = "forbid"` refuses, in tests too.
#[tokio::test]
async fn a_50_mb_graph_answer_streams_to_the_client_before_graph_has_sent_it_all_in_bounded_memory()
{
    let exe = std::env::current_exe().unwrap();
    let run = tokio::process::Command::new(exe)
        .args([
            MEMORY_CHILD,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MEMORY_CHILD_ENV, "1")
        .kill_on_drop(true)
        .output();
    let out = within(Duration::from_secs(300), "the 50 MB child test ends", run)
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran the test: {stdout}"
    );
    for line in stdout
        .lines()
        .filter_map(|l| l.find("50 MB").map(|at| &l[at..]))
    {
        println!("{line}");
    }
}

#[tokio::test]
#[ignore = "run by a_50_mb_graph_answer_streams_... in a process of its own"]
async fn memory_child_50_mb_through_graph() {
    if std::env::var_os(MEMORY_CHILD_ENV).is_none() {
        println!("not in a process of its own: peak RSS would include other tests; skipped");
        return;
    }
    /// Frames are 512 rows: the simulator holds back all but the first ~4,000 rows at first.
    const HELD_BEFORE_FRAME: u64 = 8;
    const ROWS: usize = 300_000;
    let h = start(HuntingVia::Graph).await;
    // Warm-up: tokens, connections, the translation path.
    let mut warm = post(&h, XDR_RUN, None, r#"{"Query":"DeviceInfo | take 2000"}"#).await;
    while warm.chunk().await.unwrap().is_some() {}

    h.sim.hold_hunting_streams(Some(HELD_BEFORE_FRAME));
    reset_peak_rss();
    let base = proc_status_kib("VmRSS:");
    let started = Instant::now();
    let body = format!(r#"{{"Query":"DeviceInfo | take {ROWS}"}}"#);
    let mut r = post(&h, XDR_RUN, None, &body).await;
    assert_eq!(r.status(), 200);
    let mut scan = Scan::default();
    let mut head = Vec::new();
    // While Graph's answer is held, its first rows reach the client.
    within(
        WAIT,
        "the first rows reach the client while Graph is still sending",
        async {
            while scan.rows == 0 {
                let chunk = r.chunk().await.unwrap().expect("the body goes on");
                if head.len() < 64 {
                    head.extend_from_slice(&chunk[..chunk.len().min(64)]);
                }
                scan.feed(&chunk);
            }
        },
    )
    .await;
    assert!(
        head.starts_with(b"{\"Schema\":["),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    let first_rows_after = started.elapsed();
    h.sim.release_streams();
    // Read in chunks, each dropped once counted.
    while let Some(chunk) = r.chunk().await.unwrap() {
        scan.feed(&chunk);
    }
    let elapsed = started.elapsed();
    let peak_kib = proc_status_kib("VmHWM:").saturating_sub(base);
    println!(
        "50 MB through Graph: {} bytes, {} rows in {elapsed:?} (first rows after \
         {first_rows_after:?}); peak RSS +{peak_kib} KiB",
        scan.bytes, scan.rows
    );
    assert!(scan.bytes > 50_000_000, "{} bytes", scan.bytes);
    assert_eq!(scan.rows, ROWS);
    let tail = String::from_utf8_lossy(&scan.tail);
    let last_row = tail.find("\"ReportId\":300000}").expect("the last row");
    assert!(
        tail[last_row..].contains("\"Stats\""),
        "Stats after the rows: {tail}"
    );
    assert!(tail.trim_end().ends_with('}'), "{tail}");
    assert!(
        peak_kib < 8 * 1024,
        "peak resident set grew by {peak_kib} KiB while {} bytes streamed",
        scan.bytes
    );
}
