//! Request coalescing and the short cache, seen from outside: identical concurrent GETs share
//! one upstream request (never across tenants, clients or headers that change the answer), and
//! `[cache]` answers repeats without going upstream. The simulator's `/api/_test/stream` holds
//! its body until `release_streams()`, so the leader stays open while the others join.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use defender_proxy::sim::SimConfig;
use futures_util::future::join_all;
use support::{eventually, within, Harness, Logs, CONTOSO, FABRIKAM};

const STREAM: &str = "/api/_test/stream";

/// Send `requests` at once; every response head is in before the held bodies are released.
async fn heads_then_bodies(h: &Harness, requests: Vec<reqwest::RequestBuilder>) -> Vec<Vec<u8>> {
    let responses = join_all(requests.into_iter().map(|r| r.send())).await;
    let responses: Vec<_> = responses.into_iter().map(Result::unwrap).collect();
    for r in &responses {
        assert_eq!(r.status(), 200);
    }
    h.sim.release_streams();
    join_all(responses.into_iter().map(|r| r.bytes()))
        .await
        .into_iter()
        .map(|b| b.unwrap().to_vec())
        .collect()
}

#[tokio::test]
async fn fifty_identical_concurrent_gets_make_one_upstream_request() {
    let h = Harness::start().await;
    let url = h.url(&format!("/{CONTOSO}{STREAM}"));
    let requests = (0..50).map(|_| h.http.get(&url)).collect();
    let bodies = heads_then_bodies(&h, requests).await;
    assert_eq!(h.sim.api_request_count(), 1);
    assert_eq!(bodies.len(), 50);
    let first = &bodies[0];
    let text = String::from_utf8_lossy(first);
    assert!(
        text.contains("\"part\":1") && text.contains("\"part\":2"),
        "{text}"
    );
    assert!(
        bodies.iter().all(|b| b == first),
        "identical complete bodies"
    );
    // The next request after the flight is a new one.
    assert_eq!(
        h.get(&format!("/{CONTOSO}/api/incidents")).await.status(),
        200
    );
    assert_eq!(h.sim.api_request_count(), 2);
}

#[tokio::test]
async fn different_tenants_never_coalesce() {
    let h = Harness::start().await;
    let mut requests = Vec::new();
    for tenant in [CONTOSO, FABRIKAM] {
        for _ in 0..10 {
            requests.push(h.http.get(h.url(&format!("/{tenant}{STREAM}"))));
        }
    }
    let bodies = heads_then_bodies(&h, requests).await;
    assert_eq!(bodies.len(), 20);
    assert_eq!(h.sim.api_request_count(), 2);
    let mut tenants: Vec<String> = h
        .sim
        .api_requests()
        .iter()
        .map(|r| r.tid.clone().unwrap_or_default())
        .collect();
    tenants.sort();
    tenants.dedup();
    assert_eq!(tenants.len(), 2, "one upstream request per tenant");
}

#[tokio::test]
async fn headers_that_change_the_answer_do_not_coalesce() {
    let h = Harness::start().await;
    let url = h.url(&format!("/{CONTOSO}{STREAM}"));
    let requests = vec![
        h.http.get(&url).header("accept", "application/json"),
        h.http.get(&url).header("accept", "text/plain"),
        h.http.get(&url).header("accept", "application/json"),
    ];
    heads_then_bodies(&h, requests).await;
    assert_eq!(h.sim.api_request_count(), 2);
}

#[tokio::test]
async fn no_store_and_range_bypass_coalescing() {
    let h = Harness::start().await;
    let url = h.url(&format!("/{CONTOSO}{STREAM}"));
    let requests = vec![
        h.http.get(&url).header("cache-control", "no-store"),
        h.http.get(&url).header("cache-control", "no-store"),
        h.http
            .get(&url)
            .header("cache-control", "max-age=0, no-cache"),
        h.http.get(&url).header("range", "bytes=0-"),
    ];
    heads_then_bodies(&h, requests).await;
    assert_eq!(h.sim.api_request_count(), 4);
}

async fn cached_harness(ttl: Duration) -> Harness {
    Harness::start_with(SimConfig::demo(), |c| c.cache.ttl = Some(ttl)).await
}

/// The cache stores once the body is complete, just after the client has it: wait for that.
async fn stored(h: &Harness, tenant: &str) {
    let id = h.tenant_id(tenant);
    eventually(BOUND, &format!("something stored for {tenant}"), || async {
        let snapshot = h.proxy.snapshot.load();
        (snapshot.share.cache().unwrap().tenant_bytes(&id) > 0).then_some(())
    })
    .await;
}

fn x_cache(r: &reqwest::Response) -> &str {
    r.headers()
        .get("x-cache")
        .map_or("-", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn cache_miss_then_hit_with_the_same_body() {
    let h = cached_harness(Duration::from_secs(60)).await;
    let path = format!("/{CONTOSO}/api/incidents");
    let first = h.get(&path).await;
    assert_eq!(x_cache(&first), "MISS");
    let first_body = first.bytes().await.unwrap();
    stored(&h, CONTOSO).await;
    let second = h.get(&path).await;
    assert_eq!(second.status(), 200);
    assert_eq!(x_cache(&second), "HIT");
    assert!(second.headers().contains_key("x-request-id"));
    assert_eq!(second.bytes().await.unwrap(), first_body);
    assert_eq!(h.sim.api_request_count(), 1);
}

#[tokio::test]
async fn no_store_bypasses_the_cache() {
    let h = cached_harness(Duration::from_secs(60)).await;
    let path = format!("/{CONTOSO}/api/incidents");
    assert_eq!(x_cache(&h.get(&path).await), "MISS");
    stored(&h, CONTOSO).await;
    let bypass = h
        .http
        .get(h.url(&path))
        .header("cache-control", "no-store")
        .send()
        .await
        .unwrap();
    assert_eq!(x_cache(&bypass), "BYPASS");
    assert_eq!(h.sim.api_request_count(), 2);
}

#[tokio::test]
async fn the_cache_is_never_shared_across_tenants() {
    let h = cached_harness(Duration::from_secs(60)).await;
    assert_eq!(x_cache(&h.get("/contoso/api/incidents").await), "MISS");
    stored(&h, CONTOSO).await;
    assert_eq!(x_cache(&h.get("/fabrikam/api/incidents").await), "MISS");
    assert_eq!(h.sim.api_request_count(), 2);
}

#[tokio::test]
async fn entries_expire() {
    // Exact expiry is unit-tested on paused time (src/cache.rs); here only that a short ttl
    // does end: after at least the ttl, the next request goes upstream.
    let h = cached_harness(Duration::from_millis(200)).await;
    let path = format!("/{CONTOSO}/api/incidents");
    assert_eq!(x_cache(&h.get(&path).await), "MISS");
    stored(&h, CONTOSO).await;
    // Not synchronisation: the ttl passing is what is tested (a wall-clock wait of at least
    // the ttl; the proxy's clock is tokio's, which a test over real sockets cannot pause).
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(x_cache(&h.get(&path).await), "MISS");
    assert_eq!(h.sim.api_request_count(), 2);
}

#[tokio::test]
async fn without_cache_config_there_is_no_x_cache_header() {
    let h = Harness::start().await;
    let r = h.get(&format!("/{CONTOSO}/api/incidents")).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-cache").is_none());
}

/// Generous bounds on waits that end by a signal; never pauses.
const BOUND: Duration = Duration::from_secs(10);

/// The access lines of requests for `path`, and how many of them were coalesced.
fn access_for(logs: &Logs, path: &str) -> (Vec<serde_json::Value>, usize) {
    let lines: Vec<_> = logs
        .access()
        .into_iter()
        .filter(|l| l["path"] == path)
        .collect();
    let coalesced = lines.iter().filter(|l| l["coalesced"] == true).count();
    (lines, coalesced)
}

#[tokio::test]
async fn the_leaders_error_is_every_followers_error() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::start().await;
    let id = h.tenant_id(CONTOSO);
    // The leader waits for a token that will be refused; the others join it meanwhile (they
    // only have to reach the proxy within the hold: nothing in the test waits it out).
    h.sim.set_consent(&id, false);
    h.sim.set_token_delay(&id, Duration::from_secs(1));
    let path = format!("/{CONTOSO}/api/incidents");
    let url = h.url(&path);
    let responses = within(
        BOUND,
        "the answers",
        join_all((0..10).map(|_| h.http.get(&url).send())),
    )
    .await;
    let mut seen = Vec::new();
    for r in responses {
        let r = r.unwrap();
        let status = r.status();
        assert!(r.headers().contains_key("x-request-id"));
        let body: serde_json::Value = within(BOUND, "an error body", r.json()).await.unwrap();
        seen.push((status, support::error_code(&body).to_owned()));
    }
    assert!(seen[0].0.is_server_error(), "{seen:?}");
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
    assert_eq!(h.sim.api_request_count(), 0);
    assert_eq!(h.sim.token_request_count(&id), 1);
    // The same error by coalescing, not because the token slot's own single flight failed ten
    // waiters at once: nine followers were answered with the leader's error.
    let (lines, coalesced) = access_for(&logs, &path);
    assert_eq!(lines.len(), 10, "{lines:#?}");
    assert_eq!(coalesced, 9, "{lines:#?}");
}

#[tokio::test]
async fn followers_of_a_leader_that_went_away_still_get_their_answer() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::start().await;
    let id = h.tenant_id(CONTOSO);
    let path = format!("/{CONTOSO}/api/incidents");
    let url = h.url(&path);
    let get = |url: &str| {
        let request = h.http.get(url).send();
        tokio::spawn(request)
    };
    // A warm token, so the leader's only wait is its upstream request, held at the API
    // before its response head.
    let warm = within(
        BOUND,
        "a first request",
        h.get(&format!("/{CONTOSO}/api/_test/headers")),
    )
    .await;
    assert_eq!(warm.status(), 200);
    h.sim.set_api_delay(&id, Duration::from_secs(60));
    let leader = get(&url);
    eventually(BOUND, "the leader parked", || async {
        (logs.parked_requests() == 1).then_some(())
    })
    .await;
    // Two followers join its flight (parked: the handler awaits nothing before joining).
    let followers = [get(&url), get(&url)];
    eventually(BOUND, "the followers parked", || async {
        (logs.parked_requests() == 3).then_some(())
    })
    .await;
    // The API answers at once from now on; the leader's client goes away before its head.
    h.sim.set_api_delay(&id, Duration::ZERO);
    leader.abort();
    // The followers start over: one leads, the other follows it; both get the answer.
    for follower in followers {
        let response = within(BOUND, "a follower's answer", follower)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = within(BOUND, "a follower's body", response.text()).await;
        assert!(text.unwrap().contains("value"));
    }
    assert_eq!(
        h.sim.api_request_count(),
        2,
        "the leader's, then one for both"
    );
    let (lines, coalesced) = eventually(BOUND, "three access lines", || async {
        let (lines, coalesced) = access_for(&logs, &path);
        (lines.len() == 3).then_some((lines, coalesced))
    })
    .await;
    assert!(
        lines.iter().any(|l| l["status"] == 499),
        "the leader's request ended with its client: {lines:#?}"
    );
    assert_eq!(coalesced, 1, "{lines:#?}");
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

#[tokio::test]
async fn a_follower_joining_a_streaming_leader_gets_the_whole_body() {
    let h = Harness::start().await;
    let url = h.url(&format!("/{CONTOSO}{STREAM}"));
    // The leader streams straight from upstream (no one has joined yet) and has part 1.
    let mut leader = h.http.get(&url).send().await.unwrap();
    let mut leader_body = read_until(&mut leader, "\"part\":1").await;
    // The follower joins mid-body: part 1 is replayed to it, part 2 reaches both.
    let follower = h.http.get(&url).send().await.unwrap();
    assert_eq!(follower.status(), 200);
    h.sim.release_streams();
    leader_body.extend_from_slice(
        &within(BOUND, "the leader's body", leader.bytes())
            .await
            .unwrap(),
    );
    let follower_body = within(BOUND, "the follower's body", follower.bytes())
        .await
        .unwrap();
    assert_eq!(h.sim.api_request_count(), 1, "one upstream request");
    let text = String::from_utf8_lossy(&leader_body);
    assert!(text.contains("\"part\":2"), "{text}");
    assert_eq!(follower_body.as_ref(), leader_body.as_slice());
}

#[tokio::test]
async fn a_follower_outlives_a_streaming_leader_whose_client_left() {
    let h = Harness::start().await;
    let url = h.url(&format!("/{CONTOSO}{STREAM}"));
    let mut leader = h.http.get(&url).send().await.unwrap();
    let part1 = read_until(&mut leader, "\"part\":1").await;
    let follower = h.http.get(&url).send().await.unwrap();
    // The leader's client goes away mid-body; the follower still gets the rest.
    drop(leader);
    h.sim.release_streams();
    let body = within(BOUND, "the follower's body", follower.bytes())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(body.starts_with(&part1), "{text}");
    assert!(text.contains("\"part\":2"), "{text}");
    assert_eq!(h.sim.api_request_count(), 1);
}
