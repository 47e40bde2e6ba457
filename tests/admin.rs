//! The admin listener: health, readiness, and metrics that count requests and token refreshes.

#![allow(clippy::unwrap_used)]

mod support;

use support::Harness;

#[tokio::test]
async fn health_ready_and_metrics() {
    let h = Harness::start().await;
    let admin = |path: &str| format!("http://{}{}", h.admin, path);
    assert_eq!(
        h.http.get(admin("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        h.http.get(admin("/readyz")).send().await.unwrap().status(),
        200
    );

    assert_eq!(h.get("/contoso/api/incidents").await.status(), 200);
    assert_eq!(h.get("/contoso/api/incidents").await.status(), 200);
    assert_eq!(h.get("/acme/api/incidents").await.status(), 404);

    let text = h
        .http
        .get(admin("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("defender_proxy_requests_total{tenant=\"contoso\",status=\"200\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("defender_proxy_requests_total{tenant=\"\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "defender_proxy_token_refreshes_total{tenant=\"contoso\",result=\"success\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "defender_proxy_token_refreshes_total{tenant=\"fabrikam\",result=\"success\"} 0"
        ),
        "{text}"
    );
    assert!(text.contains("# TYPE defender_proxy_request_duration_seconds histogram"));
    // The data port does not serve admin paths.
    assert_eq!(h.get("/metrics").await.status(), 404);
    h.stop().await;
}
