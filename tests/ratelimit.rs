//! Rate limiting seen from outside: reject and queue modes, bounds, route classes, tenant
//! isolation and upstream 429 pauses. Timing assertions are lower bounds (a slow machine can
//! only make gaps longer), so they cannot flake; exact timing is unit-tested on paused time.

#![allow(clippy::unwrap_used)]

mod support;

use std::num::NonZeroU32;
use std::time::Duration;

use defender_proxy::config::{LimitMode, RouteLimit, Windows};
use defender_proxy::sim::SimConfig;
use futures_util::future::join_all;
use support::{error_code, set_policy, Harness, CONTOSO};

fn nz(n: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(n)
}

fn windows(per_minute: u32, burst: u32) -> Windows {
    Windows {
        per_minute: nz(per_minute),
        per_hour: None,
        burst: nz(burst),
    }
}

const PATH: &str = "/contoso/api/_test/headers";

#[tokio::test]
async fn reject_mode_lets_exactly_the_burst_through_then_429_with_retry_after() {
    let h = Harness::start_with(SimConfig::demo(), |c| {
        set_policy(c, |p| {
            p.windows = windows(10, 3);
            p.mode = LimitMode::Reject;
        })
    })
    .await;
    let responses = join_all((0..10).map(|i| h.get_distinct(PATH, i))).await;
    let mut ok = 0;
    for r in responses {
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                let retry_after: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&retry_after), "{retry_after}");
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(error_code(&body), "RateLimited");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(
        h.sim.api_request_count(),
        3,
        "rejected requests are not forwarded"
    );
}

#[tokio::test]
async fn queue_mode_spaces_requests_at_the_limit_and_loses_none() {
    // 600/minute with a burst of 1: one request every 60/599 s.
    let h = Harness::start_with(SimConfig::demo(), |c| {
        set_policy(c, |p| p.windows = windows(600, 1))
    })
    .await;
    let responses = join_all((0..6).map(|i| h.get_distinct(PATH, i))).await;
    assert!(responses.iter().all(|r| r.status() == 200));
    let mut arrivals: Vec<_> = h.sim.api_requests().iter().map(|r| r.received_at).collect();
    assert_eq!(arrivals.len(), 6);
    arrivals.sort();
    let interval = Duration::from_secs(60).div_f64(599.0);
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= interval.mul_f64(0.9), "gap {gap:?} < {interval:?}");
    }
}

#[tokio::test]
async fn queue_bounds_max_queue_and_max_wait_answer_429() {
    // One request per second after the first; two may wait.
    let h = Harness::start_with(SimConfig::demo(), |c| {
        set_policy(c, |p| {
            p.windows = windows(61, 1);
            p.max_queue = 2;
        })
    })
    .await;
    let responses = join_all((0..6).map(|i| h.get_distinct(PATH, i))).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );

    // max_wait 1.5 s: the first passes, the second waits ~1 s, the third would wait ~2 s.
    let h = Harness::start_with(SimConfig::demo(), |c| {
        set_policy(c, |p| {
            p.windows = windows(61, 1);
            p.max_wait = Duration::from_millis(1500);
        })
    })
    .await;
    let responses = join_all((0..3).map(|i| h.get_distinct(PATH, i))).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    let limited = responses.iter().find(|r| r.status() == 429).unwrap();
    assert!(limited.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn route_class_limit_applies_only_to_its_prefix() {
    let h = Harness::start_with(SimConfig::demo(), |c| {
        set_policy(c, |p| p.mode = LimitMode::Reject);
        c.rate_limit.routes = vec![RouteLimit {
            path_prefix: "/api/_test/headers".into(),
            windows: windows(10, 1),
        }];
    })
    .await;
    assert_eq!(h.get(PATH).await.status(), 200);
    // The class is matched case-insensitively: a different spelling cannot dodge it.
    assert_eq!(h.get("/contoso/api/_TEST/headers").await.status(), 429);
    // Other paths of the same tenant are not in that class (and unlimited here).
    for _ in 0..5 {
        let r = h
            .http
            .post(h.url("/contoso/api/_test/echo"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn one_tenants_limit_and_pause_never_slow_another() {
    let h = Harness::start_with(SimConfig::demo(), |c| {
        set_policy(c, |p| p.mode = LimitMode::Reject);
        let contoso = c.tenants.iter_mut().find(|t| t.name == CONTOSO).unwrap();
        contoso.rate_limit.windows = windows(10, 1);
    })
    .await;
    assert_eq!(h.get(PATH).await.status(), 200);
    assert_eq!(h.get(PATH).await.status(), 429);
    for _ in 0..20 {
        assert_eq!(h.get("/fabrikam/api/_test/headers").await.status(), 200);
    }
}

#[tokio::test]
async fn upstream_429_with_retry_after_pauses_only_that_tenant() {
    let h = Harness::start().await;
    let contoso = h.tenant_id(CONTOSO);
    h.sim.force_api_429(&contoso, 1, Some("2"));
    let r = h.get(PATH).await;
    assert_eq!(r.status(), 429, "the API's own 429 passes through");
    assert_eq!(r.headers()["retry-after"], "2");
    let throttled_at = h.sim.api_requests()[0].received_at;

    // Another tenant is not paused.
    assert_eq!(h.get("/fabrikam/api/_test/headers").await.status(), 200);
    // Queue mode: the next contoso request waits for the pause, then goes through.
    let r = h.get(PATH).await;
    assert_eq!(r.status(), 200);
    let seen = h.sim.api_requests();
    let next_contoso = seen
        .iter()
        .filter(|r| r.tid.as_deref() == Some(contoso.as_str()))
        .nth(1)
        .unwrap();
    let gap = next_contoso.received_at - throttled_at;
    assert!(
        gap >= Duration::from_millis(1900),
        "sent {gap:?} after the 429"
    );
}

#[tokio::test]
async fn upstream_pause_in_reject_mode_rejects_with_the_remaining_pause() {
    let h = Harness::start_with(SimConfig::demo(), |c| {
        set_policy(c, |p| p.mode = LimitMode::Reject)
    })
    .await;
    h.sim.force_api_429(&h.tenant_id(CONTOSO), 1, Some("30"));
    assert_eq!(h.get(PATH).await.status(), 429);
    let r = h.get(PATH).await;
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((25..=30).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        error_code(&body),
        "RateLimited",
        "the proxy's own 429 this time"
    );
    assert_eq!(
        h.sim.api_request_count(),
        1,
        "nothing sent during the pause"
    );
}
