//! The token broker seen from outside: single flight, warm cache, refresh-ahead, tid check,
//! consent and transient errors, revoked tokens, the v1 endpoint and certificate assertions.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use defender_proxy::sim::SimConfig;
use futures_util::future::join_all;
use support::{error_code, Harness, CONTOSO, FABRIKAM};

#[tokio::test]
async fn hundred_concurrent_cold_requests_make_one_token_request() {
    let h = Harness::start().await;
    let id = h.tenant_id(CONTOSO);
    let requests = (0..100).map(|i| h.get_distinct("/contoso/api/_test/headers", i));
    for r in join_all(requests).await {
        assert_eq!(r.status(), 200);
    }
    assert_eq!(h.sim.token_request_count(&id), 1);
    assert_eq!(h.sim.api_request_count(), 100);
}

#[tokio::test]
async fn thousand_warm_requests_make_no_new_token_request() {
    let h = Harness::start().await;
    let id = h.tenant_id(CONTOSO);
    assert_eq!(h.get("/contoso/api/_test/headers").await.status(), 200);
    assert_eq!(h.sim.token_request_count(&id), 1);
    for batch in 0..20 {
        let requests = (0..50).map(|_| h.get("/contoso/api/_test/headers"));
        for r in join_all(requests).await {
            assert_eq!(r.status(), 200, "batch {batch}");
        }
    }
    assert_eq!(h.sim.token_request_count(&id), 1);
}

#[tokio::test]
async fn refresh_ahead_means_no_request_waits_on_a_slow_token_endpoint() {
    // Tokens live 60 s but Entra says refresh after 1 s: the proxy refreshes in the background.
    let mut sim = SimConfig::demo();
    sim.token_lifetime = Duration::from_secs(60);
    sim.refresh_in = Some(Duration::from_secs(1));
    let h = Harness::start_with(sim, |_| {}).await;
    let id = h.tenant_id(CONTOSO);
    assert_eq!(h.get("/contoso/api/_test/headers").await.status(), 200);
    let first_token = h.sim.api_requests()[0].headers["authorization"].clone();

    // From now on the token endpoint takes 5 s to answer.
    h.sim.set_token_delay(&id, Duration::from_secs(5));
    // Keep using the proxy (only tokens in use are refreshed) until the background refresh has
    // reached the token endpoint.
    let keep_using = async {
        loop {
            assert_eq!(h.get("/contoso/api/_test/headers").await.status(), 200);
        }
    };
    tokio::select! {
        () = h.sim.wait_token_requests_started(&id, 2) => {}
        () = keep_using => {}
    }
    // While that refresh is in flight, requests are answered with the current token at once.
    for _ in 0..20 {
        let started = std::time::Instant::now();
        assert_eq!(h.get("/contoso/api/_test/headers").await.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request waited on the token endpoint"
        );
    }
    // The refresh completes and later requests carry the new token.
    h.sim.wait_token_requests(2).await;
    let mut new_token_seen = false;
    for _ in 0..50 {
        h.get("/contoso/api/_test/headers").await;
        let last = h.sim.api_requests().last().unwrap().headers["authorization"].clone();
        if last != first_token {
            new_token_seen = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(new_token_seen, "the refreshed token is used");
}

#[tokio::test]
async fn tid_mismatch_is_503_and_nothing_is_forwarded() {
    let h = Harness::start().await;
    let id = h.tenant_id(CONTOSO);
    h.sim
        .set_tid_override(&id, Some("99999999-9999-4999-8999-999999999999".into()));
    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), "TokenUnavailable");
    assert_eq!(h.sim.api_request_count(), 0);
}

#[tokio::test]
async fn a_token_that_is_not_base64url_is_503_remembered_and_never_forwarded() {
    let h = Harness::start().await;
    // `€ab`: the fingerprint's last 4 bytes would cut the `€` (a panic quoting the token);
    // `é`: a 2-byte character that HeaderValue takes as obs-text and would send upstream.
    let cases = [(CONTOSO, "€ab"), (FABRIKAM, "é")];
    for (tenant, suffix) in cases {
        let id = h.tenant_id(tenant);
        h.sim.set_token_suffix(&id, Some(suffix.into()));
        // Like any unreadable token: the flight retries it a few times (a garbled answer may
        // be a glitch on the way), then the failure is remembered.
        let mut after_first = 0;
        for round in 1..=2 {
            let r = h.get(&format!("/{tenant}/api/incidents")).await;
            assert_eq!(r.status(), 503, "{tenant} {suffix} round {round}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(error_code(&body), "TokenUnavailable");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("base64url"), "{message}");
            assert!(!message.contains(suffix), "{message}");
            if round == 1 {
                after_first = h.sim.token_request_count(&id);
                assert!(after_first >= 1);
            }
        }
        assert_eq!(
            h.sim.token_request_count(&id),
            after_first,
            "{tenant}: the failure is remembered; the second request made no token request"
        );
    }
    assert_eq!(h.sim.api_request_count(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn no_consent_is_503_with_aadsts_code_and_consent_link_and_no_retry_storm() {
    let h = Harness::start().await;
    let id = h.tenant_id(CONTOSO);
    h.sim.set_consent(&id, false);
    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), "TokenUnavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("AADSTS700016"), "{message}");
    let link = format!(
        "{}/{}/adminconsent?client_id={}",
        h.sim.base_url(),
        id,
        h.sim_config.client_id
    );
    assert!(message.contains(&link), "{message} lacks {link}");

    let burst = (0..30).map(|_| h.get("/contoso/api/incidents"));
    for r in join_all(burst).await {
        assert_eq!(r.status(), 503);
    }
    assert_eq!(
        h.sim.token_request_count(&id),
        1,
        "the failure is remembered, not retried per request"
    );
    assert_eq!(h.sim.api_request_count(), 0);
    // Another tenant is not affected.
    assert_eq!(h.get("/fabrikam/api/incidents").await.status(), 200);
}

#[tokio::test]
async fn a_silent_token_endpoint_is_503_after_one_attempt_timeout_and_retried_in_background() {
    // Token requests are given min(response_timeout, 30 s) = 1 s each.
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.upstream.response_timeout = Duration::from_secs(1);
    })
    .await;
    let id = h.tenant_id(CONTOSO);
    h.sim.set_token_delay(&id, Duration::from_secs(3600));
    let started = std::time::Instant::now();
    let r = h.get("/contoso/api/incidents").await;
    let waited = started.elapsed();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), "TokenUnavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no token within 1s") && message.contains("retrying in the background"),
        "{message}"
    );
    // Waiting through all attempts (MAX_ATTEMPTS = 4 of 1 s each) would take at least 4 s.
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
    // The flight goes on without the client: a second attempt reaches the token endpoint.
    tokio::time::timeout(
        Duration::from_secs(20),
        h.sim.wait_token_requests_started(&id, 2),
    )
    .await
    .expect("the token request is retried in the background");
    assert_eq!(h.sim.api_request_count(), 0);
}

#[tokio::test]
async fn transient_token_errors_recover() {
    let h = Harness::start().await;
    let id = h.tenant_id(CONTOSO);
    h.sim.fail_token_requests(&id, 2);
    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 200);
    assert_eq!(h.sim.token_request_count(&id), 3);
}

#[tokio::test]
async fn revoked_token_gets_a_fresh_one_and_the_request_succeeds() {
    let h = Harness::start().await;
    let id = h.tenant_id(CONTOSO);
    assert_eq!(h.get("/contoso/api/incidents").await.status(), 200);
    h.sim.revoke_tokens(&id);
    let r = h
        .http
        .post(h.url("/contoso/api/_test/echo"))
        .body("small body")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["bytes"], 10, "the kept body was replayed intact");
    assert_eq!(h.sim.token_request_count(&id), 2);
    let statuses: Vec<u16> = h.sim.api_requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 401, 200]);
}

#[tokio::test]
async fn v1_endpoint_sends_resource() {
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.cloud.token_endpoint = defender_proxy::config::TokenEndpointVersion::V1;
    })
    .await;
    assert_eq!(h.get("/contoso/api/incidents").await.status(), 200);
    let token_requests = h.sim.token_requests();
    assert_eq!(token_requests.len(), 1);
    assert_eq!(
        token_requests[0].version,
        defender_proxy::sim::TokenEndpoint::V1
    );
    assert_eq!(
        token_requests[0].scope_or_resource,
        "https://api.security.microsoft.com"
    );
}
