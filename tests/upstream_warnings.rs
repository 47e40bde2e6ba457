//! The API's own warnings, seen from outside: Graph's throttle headers, `Retry-After` on an
//! answer and a 429, and Graph's `206 Partial Content` with `Warning: 199` move the per-(tenant,
//! API) metrics and appear in the access line; a 206 is never cached, and a request that comes
//! after its head is not given it as a coalesced answer.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use defender_proxy::config::HuntingVia;
use defender_proxy::sim::{SimConfig, ThrottleHeaders, PARTIAL_WARNING};
use support::{eventually, within, Harness, Logs, CONTOSO, FABRIKAM};

/// Generous bounds on waits that end by a signal; never pauses.
const BOUND: Duration = Duration::from_secs(10);

const GRAPH_INCIDENTS: &str = "/graph/v1.0/security/incidents";
const STREAM: &str = "/api/_test/stream";

fn series(name: &str, tenant: &str, api: &str) -> String {
    format!("{name}{{tenant=\"{tenant}\",api=\"{api}\"}} ")
}

async fn metric(h: &Harness, name: &str, tenant: &str, api: &str) -> Option<f64> {
    h.metric(&series(name, tenant, api)).await
}

/// The access lines for `path`, once `n` of them are written (each when its body ended).
async fn access(logs: &Logs, path: &str, n: usize) -> Vec<serde_json::Value> {
    eventually(BOUND, &format!("{n} access lines for {path}"), || async {
        let lines: Vec<_> = logs
            .access()
            .into_iter()
            .filter(|l| l["path"] == path)
            .collect();
        (lines.len() >= n).then_some(lines)
    })
    .await
}

const WARNING_FIELDS: [&str; 6] = [
    "throttle_percent",
    "throttle_scope",
    "throttle_information",
    "retry_after",
    "partial",
    "warning",
];

#[tokio::test]
async fn throttle_headers_move_the_metrics_and_the_access_line() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::start().await;
    let scope = "Tenant_Application/ReadWrite/app-id/tenant-id";
    h.sim.set_throttle_headers(
        &h.tenant_id(CONTOSO),
        Some(ThrottleHeaders {
            percent: "0.9".into(),
            scope: scope.into(),
            information: "ResourceUnitLimitExceeded".into(),
        }),
    );
    for i in 0..2 {
        let r = h
            .get_distinct(&format!("/{CONTOSO}{GRAPH_INCIDENTS}"), i)
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ms-throttle-limit-percentage"], "0.9");
        r.bytes().await.unwrap();
    }
    let quiet = h.get(&format!("/{FABRIKAM}{GRAPH_INCIDENTS}")).await;
    quiet.bytes().await.unwrap();

    let warnings = "defender_proxy_upstream_throttle_warnings_total";
    assert_eq!(metric(&h, warnings, CONTOSO, "graph").await, Some(2.0));
    assert_eq!(metric(&h, warnings, FABRIKAM, "graph").await, Some(0.0));
    let percent = "defender_proxy_upstream_throttle_percent";
    assert_eq!(metric(&h, percent, CONTOSO, "graph").await, Some(0.9));
    assert_eq!(
        metric(&h, percent, FABRIKAM, "graph").await,
        None,
        "none seen"
    );
    let at = "defender_proxy_upstream_throttle_timestamp_seconds";
    assert!(metric(&h, at, CONTOSO, "graph").await.unwrap() > 1.7e9);
    assert_eq!(
        metric(
            &h,
            "defender_proxy_upstream_retry_after_total",
            CONTOSO,
            "graph"
        )
        .await,
        Some(0.0)
    );

    let lines = access(&logs, &format!("/{CONTOSO}{GRAPH_INCIDENTS}"), 2).await;
    for line in &lines {
        assert_eq!(line["throttle_percent"], 0.9, "{line}");
        assert_eq!(line["throttle_scope"], scope);
        assert_eq!(line["throttle_information"], "ResourceUnitLimitExceeded");
        for absent in ["retry_after", "partial", "warning"] {
            assert!(line.get(absent).is_none(), "{absent} in {line}");
        }
    }
    let quiet = access(&logs, &format!("/{FABRIKAM}{GRAPH_INCIDENTS}"), 1).await;
    for field in WARNING_FIELDS {
        assert!(quiet[0].get(field).is_none(), "{field} in {}", quiet[0]);
    }
}

#[tokio::test]
async fn retry_after_counts_on_an_answer_and_on_a_429() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::start().await;
    let id = h.tenant_id(CONTOSO);
    h.sim.set_retry_after_on_success(&id, Some("30"));
    let path = format!("/{CONTOSO}/api/incidents");
    let r = h.get(&path).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let total = "defender_proxy_upstream_retry_after_total";
    let seconds = "defender_proxy_upstream_retry_after_seconds";
    assert_eq!(metric(&h, total, CONTOSO, "default").await, Some(1.0));
    assert_eq!(metric(&h, seconds, CONTOSO, "default").await, Some(30.0));
    let line = &access(&logs, &path, 1).await[0];
    assert_eq!(line["retry_after"], 30, "{line}");
    assert!(line.get("throttle_percent").is_none());

    // Defender's 429 (last: it pauses the tenant's class for its Retry-After).
    h.sim.set_retry_after_on_success(&id, None);
    h.sim.force_api_429(&id, 1, Some("7"));
    let r = h.get_distinct(&path, 1).await;
    assert_eq!(r.status(), 429);
    r.bytes().await.unwrap();
    assert_eq!(metric(&h, total, CONTOSO, "default").await, Some(2.0));
    assert_eq!(metric(&h, seconds, CONTOSO, "default").await, Some(7.0));
    let lines = access(&logs, &path, 2).await;
    assert_eq!(lines[1]["retry_after"], 7, "{}", lines[1]);
}

fn x_cache(r: &reqwest::Response) -> &str {
    r.headers()
        .get("x-cache")
        .map_or("-", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_partial_answer_is_counted_and_never_served_from_the_cache() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.cache.ttl = Some(Duration::from_secs(60))
    })
    .await;
    let id = h.tenant_id(CONTOSO);
    h.sim.force_partial(&id, 1);
    let path = format!("/{CONTOSO}{GRAPH_INCIDENTS}");

    let partial = h.get(&path).await;
    assert_eq!(partial.status(), 206);
    assert_eq!(partial.headers()["warning"], PARTIAL_WARNING);
    assert_eq!(x_cache(&partial), "MISS");
    let partial_body = partial.bytes().await.unwrap();
    assert!(!partial_body.is_empty());
    // The client has all of it: the cache has decided (it stores before the last bytes go out).
    let snapshot = h.proxy.snapshot.load();
    assert_eq!(snapshot.share.cache().unwrap().tenant_bytes(&id), 0);

    // The same request again goes to the API, and gets the whole answer.
    let whole = h.get(&path).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(x_cache(&whole), "MISS");
    whole.bytes().await.unwrap();
    assert_eq!(h.sim.api_request_count(), 2, "the 206 was not served again");

    // The control: a 200 is kept, and the next request is a hit.
    eventually(BOUND, "the 200 stored", || async {
        let snapshot = h.proxy.snapshot.load();
        (snapshot.share.cache().unwrap().tenant_bytes(&id) > 0).then_some(())
    })
    .await;
    let hit = h.get(&path).await;
    assert_eq!(x_cache(&hit), "HIT");
    hit.bytes().await.unwrap();
    assert_eq!(h.sim.api_request_count(), 2);

    let partials = "defender_proxy_upstream_partial_total";
    assert_eq!(metric(&h, partials, CONTOSO, "graph").await, Some(1.0));
    let lines = access(&logs, &path, 3).await;
    assert_eq!(lines[0]["partial"], true, "{}", lines[0]);
    assert_eq!(lines[0]["warning"], PARTIAL_WARNING);
    assert_eq!(lines[0]["status"], 206);
    for line in &lines[1..] {
        assert!(
            line.get("partial").is_none() && line.get("warning").is_none(),
            "{line}"
        );
    }
}

/// Reads `response`'s body until `want` has arrived (the first part of a held stream).
async fn read_until(response: &mut reqwest::Response, want: &str) -> Vec<u8> {
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(want) {
        let chunk = response.chunk().await.unwrap().expect("more body");
        got.extend_from_slice(&chunk);
    }
    got
}

/// A leader with its head and first part in (the stream's body is held), and an identical
/// request after it: the second's status, and how many requests the API has seen.
async fn leader_then_another(h: &Harness) -> (u16, u16, usize) {
    let url = h.url(&format!("/{CONTOSO}{STREAM}"));
    let mut leader = h.http.get(&url).send().await.unwrap();
    read_until(&mut leader, "\"part\":1").await;
    let next = h.http.get(&url).send().await.unwrap();
    h.sim.release_streams();
    let statuses = (leader.status().as_u16(), next.status().as_u16());
    within(BOUND, "the leader's body", leader.bytes())
        .await
        .unwrap();
    let body = within(BOUND, "the other body", next.bytes()).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("\"part\":2"));
    (statuses.0, statuses.1, h.sim.api_request_count())
}

#[tokio::test]
async fn a_request_after_a_partial_head_asks_the_api_anew() {
    let h = Harness::start().await;
    h.sim.force_partial(&h.tenant_id(CONTOSO), 1);
    // Partial: the later request does not join; it gets its own (whole) answer.
    assert_eq!(leader_then_another(&h).await, (206, 200, 2));
    // The control: a whole answer in flight is shared with the later request.
    h.sim.reset_records();
    assert_eq!(leader_then_another(&h).await, (200, 200, 1));
}

#[tokio::test]
async fn a_legacy_hunting_request_answered_through_graph_has_graphs_warnings() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.hunting.via = HuntingVia::Graph;
        c.add_hunting_route();
    })
    .await;
    h.sim.set_throttle_headers(
        &h.tenant_id(CONTOSO),
        Some(ThrottleHeaders {
            percent: "1.1".into(),
            scope: String::new(),
            information: String::new(),
        }),
    );
    let path = format!("/{CONTOSO}/api/advancedhunting/run");
    let r = h
        .http
        .post(h.url(&path))
        .header("content-type", "application/json")
        .body(r#"{"Query": "DeviceInfo | take 3"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let warnings = "defender_proxy_upstream_throttle_warnings_total";
    assert_eq!(metric(&h, warnings, CONTOSO, "graph").await, Some(1.0));
    assert_eq!(metric(&h, warnings, CONTOSO, "default").await, Some(0.0));
    let line = &access(&logs, &path, 1).await[0];
    assert_eq!(line["translated"], true, "{line}");
    assert_eq!(line["throttle_percent"], 1.1);
    assert!(line.get("throttle_scope").is_none(), "not sent: {line}");
}
