//! The admin listener: health, readiness, and metrics that count requests and token refreshes.

#![allow(clippy::unwrap_used)]

mod support;

use defender_proxy::sim::SimConfig;
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
        text.contains("defender_proxy_requests_total{tenant=\"contoso\",api=\"default\",status=\"200\",status_class=\"2xx\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("defender_proxy_requests_total{tenant=\"\",api=\"default\",status=\"404\",status_class=\"4xx\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "defender_proxy_token_refreshes_total{tenant=\"contoso\",api=\"default\",result=\"success\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "defender_proxy_token_refreshes_total{tenant=\"fabrikam\",api=\"default\",result=\"success\"} 0"
        ),
        "{text}"
    );
    assert!(text.contains("# TYPE defender_proxy_request_duration_seconds histogram"));
    // Every documented family is exposed.
    for family in [
        "defender_proxy_build_info",
        "defender_proxy_requests_total",
        "defender_proxy_response_bytes_total",
        "defender_proxy_request_duration_seconds",
        "defender_proxy_upstream_duration_seconds",
        "defender_proxy_upstream_errors_total",
        "defender_proxy_token_refreshes_total",
        "defender_proxy_token_expiry_seconds",
        "defender_proxy_connections_open",
        "defender_proxy_reloads_total",
        "defender_proxy_ratelimit_admitted_total",
        "defender_proxy_ratelimit_rejected_total",
        "defender_proxy_ratelimit_wait_seconds",
        "defender_proxy_ratelimit_backend_errors_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }
    assert!(
        text.contains("defender_proxy_upstream_duration_seconds_count{tenant=\"contoso\"} 2"),
        "{text}"
    );
    // The data port does not serve admin paths.
    assert_eq!(h.get("/metrics").await.status(), 404);
    h.stop().await;
}

#[tokio::test]
async fn per_api_histograms_when_per_tenant_ones_are_off() {
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.metrics.per_tenant_histograms = false;
    })
    .await;
    for path in [
        "/contoso/api/incidents",
        "/fabrikam/api/incidents",
        "/contoso/mde/api/machines",
        "/acme/api/incidents",
    ] {
        let _ = h.get(path).await.bytes().await.unwrap();
    }
    let text = h
        .http
        .get(format!("http://{}/metrics", h.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let histograms = [
        "defender_proxy_request_duration_seconds",
        "defender_proxy_upstream_duration_seconds",
        "defender_proxy_ratelimit_wait_seconds",
    ];
    for family in histograms {
        assert!(
            text.contains(&format!("# TYPE {family} histogram")),
            "{family}"
        );
        let samples: Vec<&str> = text.lines().filter(|l| l.starts_with(family)).collect();
        assert!(!samples.is_empty(), "{family}");
        for sample in samples {
            assert!(sample.contains("{api=\""), "{sample}");
            assert!(!sample.contains("tenant="), "{sample}");
        }
    }
    for line in [
        // Two tenants on the default API, one request on mde, one that found no tenant.
        "defender_proxy_request_duration_seconds_count{api=\"default\"} 2",
        "defender_proxy_request_duration_seconds_count{api=\"mde\"} 1",
        "defender_proxy_request_duration_seconds_count{api=\"graph\"} 0",
        "defender_proxy_request_duration_seconds_count{api=\"\"} 1",
        "defender_proxy_upstream_duration_seconds_count{api=\"default\"} 2",
        "defender_proxy_ratelimit_wait_seconds_count{api=\"mde\"} 1",
        // The counters stay per tenant (and `requests_total` per API too).
        "defender_proxy_requests_total{tenant=\"contoso\",api=\"default\",status=\"200\",status_class=\"2xx\"} 1",
        "defender_proxy_requests_total{tenant=\"contoso\",api=\"mde\",status=\"200\",status_class=\"2xx\"} 1",
        "defender_proxy_upstream_errors_total{tenant=\"\",kind=\"token\"} 0",
        "defender_proxy_upstream_errors_total{tenant=\"fabrikam\",kind=\"connect\"} 0",
        "defender_proxy_ratelimit_admitted_total{tenant=\"contoso\"} 2",
        "defender_proxy_token_refreshes_total{tenant=\"fabrikam\",api=\"default\",result=\"success\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("defender_proxy_request_duration_seconds_count{tenant="));
    h.stop().await;
}

/// Requests are counted under the API they went to, and each (tenant, API) token slot has its
/// own refresh and expiry series.
#[tokio::test]
async fn requests_and_tokens_are_counted_per_api() {
    let h = Harness::start().await;
    for (path, status) in [
        ("/contoso/api/incidents", 200),
        ("/contoso/api/incidents?$top=1", 200),
        ("/contoso/mde/api/machines", 200),
        ("/contoso/graph/v1.0/security/incidents", 200),
        ("/fabrikam/mde/api/machines", 200),
        ("/acme/mde/api/machines", 404),
    ] {
        let response = h.get(path).await;
        assert_eq!(response.status(), status, "{path}");
        let _ = response.bytes().await.unwrap();
    }
    let text = h
        .http
        .get(format!("http://{}/metrics", h.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = |family: &str, filter: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{family}{{{filter}")))
            .map(str::to_owned)
            .collect()
    };
    let ok = |tenant: &str, api: &str, n: u32| {
        format!(
            "defender_proxy_requests_total{{tenant=\"{tenant}\",api=\"{api}\",status=\"200\",status_class=\"2xx\"}} {n}"
        )
    };
    assert_eq!(
        series("defender_proxy_requests_total", "tenant=\"contoso\""),
        [
            ok("contoso", "default", 2),
            ok("contoso", "mde", 1),
            ok("contoso", "graph", 1)
        ],
        "{text}"
    );
    assert_eq!(
        series("defender_proxy_requests_total", "tenant=\"fabrikam\""),
        [ok("fabrikam", "mde", 1)],
        "{text}"
    );
    // A request that found no tenant has no API; it keeps the label it always had.
    assert_eq!(
        series("defender_proxy_requests_total", "tenant=\"\""),
        ["defender_proxy_requests_total{tenant=\"\",api=\"default\",status=\"404\",status_class=\"4xx\"} 1"],
        "{text}"
    );

    // One token request per (tenant, scope), each in its own series.
    let refreshes = |tenant: &str, api: &str, ok: u32| {
        [
            format!("defender_proxy_token_refreshes_total{{tenant=\"{tenant}\",api=\"{api}\",result=\"success\"}} {ok}"),
            format!("defender_proxy_token_refreshes_total{{tenant=\"{tenant}\",api=\"{api}\",result=\"failure\"}} 0"),
        ]
    };
    assert_eq!(
        series("defender_proxy_token_refreshes_total", "tenant=\"contoso\""),
        [
            refreshes("contoso", "default", 1),
            refreshes("contoso", "mde", 1),
            refreshes("contoso", "graph", 1)
        ]
        .concat(),
        "{text}"
    );
    assert_eq!(
        series(
            "defender_proxy_token_refreshes_total",
            "tenant=\"fabrikam\""
        ),
        [
            refreshes("fabrikam", "default", 0),
            refreshes("fabrikam", "mde", 1),
            refreshes("fabrikam", "graph", 0)
        ]
        .concat(),
        "{text}"
    );
    assert_eq!(h.sim.token_request_count(&h.tenant_id(support::CONTOSO)), 3);
    assert_eq!(
        h.sim.token_request_count(&h.tenant_id(support::FABRIKAM)),
        1
    );

    // A gauge for each slot that holds a token, and only those.
    let expiry: Vec<(String, f64)> = series("defender_proxy_token_expiry_seconds", "")
        .iter()
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect();
    let names: Vec<&str> = expiry.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "defender_proxy_token_expiry_seconds{tenant=\"contoso\",api=\"default\"}",
            "defender_proxy_token_expiry_seconds{tenant=\"contoso\",api=\"mde\"}",
            "defender_proxy_token_expiry_seconds{tenant=\"contoso\",api=\"graph\"}",
            "defender_proxy_token_expiry_seconds{tenant=\"fabrikam\",api=\"mde\"}",
        ],
        "{text}"
    );
    assert!(expiry.iter().all(|(_, left)| *left > 60.0), "{expiry:?}");
    h.stop().await;
}
