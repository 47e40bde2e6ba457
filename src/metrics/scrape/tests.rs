//! The scrape renders in bounded chunks whatever the tenant count, and says what the whole text
//! said before it was streamed.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;

use super::{Scrape, CHUNK};
use crate::app::App;
use crate::config::{LimitMode, LimitPolicy, TenantConfig, Windows};
use crate::dev::dev_config;
use crate::proxy::Proxy;
use crate::sim::SimConfig;

/// The dev config (tenants `contoso`, `fabrikam`; APIs `default`, `mde`, `graph`) plus `extra`
/// generated tenants, each with one request counted.
fn proxy(extra: usize, per_tenant_histograms: bool) -> Arc<Proxy> {
    let loopback = "127.0.0.1:0".parse().unwrap();
    let mut config = dev_config(&SimConfig::demo(), "http://127.0.0.1:9", loopback, loopback);
    config.tenants.extend((0..extra).map(|n| TenantConfig {
        app: None,
        cloud: None,
        name: format!("tenant-{n:05}"),
        id: format!("11111111-bbbb-4bbb-8bbb-{n:012}"),
        rate_limit: LimitPolicy::default(),
        source: Default::default(),
    }));
    config.metrics.per_tenant_histograms = per_tenant_histograms;
    let proxy = App::build(&config, None).unwrap().proxy().clone();
    for tenant in proxy.tenants() {
        tenant.apis[0].requests.record(200);
        tenant
            .metrics
            .record_response(200, 1234, Duration::from_millis(7));
    }
    proxy
}

fn chunks(proxy: &Proxy) -> Vec<Bytes> {
    let mut scrape = Scrape::new(proxy.metrics.clone(), proxy.snapshot.load_full());
    let chunks: Vec<Bytes> = std::iter::from_fn(|| scrape.next_chunk()).collect();
    assert!(scrape.is_end());
    chunks
}

fn text(proxy: &Proxy) -> String {
    let bytes: Vec<u8> = chunks(proxy).concat();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn streams_in_bounded_chunks_at_thousands_of_tenants() {
    let proxy = proxy(3000, true);
    let chunks = chunks(&proxy);
    let total: usize = chunks.iter().map(Bytes::len).sum();
    // ~4.5 KB per tenant: megabytes in all, none of it in one piece.
    assert!(total > 10 * 1024 * 1024, "{total} bytes");
    // A chunk ends at the end of the row that passes CHUNK; a row is one tenant's histogram.
    let bound = CHUNK + 2 * 1024;
    for (i, chunk) in chunks.iter().enumerate() {
        assert!(chunk.len() <= bound, "chunk {i}: {} bytes", chunk.len());
        assert!(chunk.ends_with(b"\n"), "chunk {i} ends inside a line");
    }
    assert!(chunks.len() >= total / bound, "{} chunks", chunks.len());
    // Every family once, the last one last.
    let text = String::from_utf8(chunks.concat()).unwrap();
    assert_eq!(text.matches("# TYPE ").count(), 30);
    assert!(text.ends_with("defender_proxy_ratelimit_fallback_decisions_total 0\n"));
    let tenant_rows = text
        .lines()
        .filter(|l| l.starts_with("defender_proxy_response_bytes_total{tenant=\"tenant-"))
        .count();
    assert_eq!(tenant_rows, 3000);
}

/// The API's warnings: counters for each (tenant, API) that answered (zeros too, so the first
/// warning shows in a rate), gauges once a value came; nothing for an API with neither.
#[tokio::test]
async fn upstream_warnings_per_tenant_and_api() {
    let proxy = proxy(0, true);
    let contoso = proxy
        .tenants()
        .into_iter()
        .find(|t| &*t.name == "contoso")
        .unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-ms-throttle-limit-percentage",
        HeaderValue::from_static("0.95"),
    );
    headers.insert("retry-after", HeaderValue::from_static("30"));
    let warned = crate::metrics::UpstreamWarnings::read(http::StatusCode::OK, &headers).unwrap();
    // Graph's (index 2), which answered nothing itself (a legacy hunting request through it).
    contoso.apis[2].warnings.record(&warned);
    let text = text(&proxy);
    for line in [
        "defender_proxy_upstream_throttle_warnings_total{tenant=\"contoso\",api=\"default\"} 0",
        "defender_proxy_upstream_throttle_warnings_total{tenant=\"contoso\",api=\"graph\"} 1",
        "defender_proxy_upstream_throttle_percent{tenant=\"contoso\",api=\"graph\"} 0.95",
        "defender_proxy_upstream_retry_after_total{tenant=\"contoso\",api=\"graph\"} 1",
        "defender_proxy_upstream_retry_after_seconds{tenant=\"contoso\",api=\"graph\"} 30",
        "defender_proxy_upstream_partial_total{tenant=\"fabrikam\",api=\"default\"} 0",
        "# TYPE defender_proxy_upstream_throttle_percent gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let seen = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    // contoso: default (answered) and graph (warned); fabrikam: default; not mde, nor `""`.
    assert_eq!(seen("defender_proxy_upstream_partial_total{"), 3);
    assert_eq!(seen("defender_proxy_upstream_throttle_percent{"), 1);
    assert_eq!(
        seen("defender_proxy_upstream_throttle_timestamp_seconds{"),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn every_family_is_rendered_as_before() {
    let loopback = "127.0.0.1:0".parse().unwrap();
    let mut config = dev_config(&SimConfig::demo(), "http://127.0.0.1:9", loopback, loopback);
    config.tenants[0].rate_limit.mode = LimitMode::Reject;
    config.tenants[0].rate_limit.windows = Windows {
        per_minute: std::num::NonZeroU32::new(2),
        per_hour: None,
        burst: std::num::NonZeroU32::new(1),
    };
    let proxy = App::build(&config, None).unwrap().proxy().clone();
    let contoso = proxy
        .tenants()
        .into_iter()
        .find(|t| &*t.name == "contoso")
        .unwrap();
    contoso
        .limits
        .admit(crate::ratelimit::RouteClass::DEFAULT)
        .await
        .unwrap();
    let _ = contoso
        .limits
        .admit(crate::ratelimit::RouteClass::DEFAULT)
        .await;
    contoso.limits.upstream_throttled(
        crate::ratelimit::RouteClass::DEFAULT,
        Some(&HeaderValue::from_static("5")),
    );
    contoso.apis[0].requests.record(200);
    contoso
        .metrics
        .record_response(200, 10, Duration::from_millis(3));
    let text = text(&proxy);
    for line in [
        "# HELP defender_proxy_request_duration_seconds Time from request to the end of the response body, by tenant.",
        "# TYPE defender_proxy_request_duration_seconds histogram",
        "defender_proxy_requests_total{tenant=\"contoso\",api=\"default\",status=\"200\",status_class=\"2xx\"} 1",
        "defender_proxy_request_duration_seconds_bucket{tenant=\"contoso\",le=\"0.0025\"} 0",
        "defender_proxy_request_duration_seconds_bucket{tenant=\"contoso\",le=\"0.005\"} 1",
        "defender_proxy_request_duration_seconds_bucket{tenant=\"contoso\",le=\"+Inf\"} 1",
        "defender_proxy_request_duration_seconds_sum{tenant=\"contoso\"} 0.003",
        "defender_proxy_request_duration_seconds_count{tenant=\"\"} 0",
        "defender_proxy_upstream_errors_total{tenant=\"fabrikam\",kind=\"token\"} 0",
        "defender_proxy_token_refreshes_total{tenant=\"contoso\",api=\"default\",result=\"failure\"} 0",
        "defender_proxy_tenants 2",
        "defender_proxy_tenant_info{tenant=\"contoso\",app=\"default\",cloud=\"default\"} 1",
        "defender_proxy_hunting_requests_total{tenant=\"contoso\",via=\"graph\"} 0",
        "defender_proxy_reloads_total{result=\"success\"} 0",
        "defender_proxy_ratelimit_admitted_total{tenant=\"contoso\"} 1",
        "defender_proxy_ratelimit_queued_total{tenant=\"contoso\"} 0",
        "defender_proxy_ratelimit_rejected_total{tenant=\"contoso\",reason=\"over_limit\"} 1",
        "defender_proxy_ratelimit_wait_seconds_bucket{tenant=\"contoso\",le=\"0.005\"} 1",
        "defender_proxy_ratelimit_wait_seconds_bucket{tenant=\"contoso\",le=\"+Inf\"} 1",
        "defender_proxy_ratelimit_wait_seconds_count{tenant=\"contoso\"} 1",
        "defender_proxy_ratelimit_upstream_429_total{tenant=\"contoso\"} 1",
        "defender_proxy_ratelimit_paused_seconds{tenant=\"contoso\"} 5",
        "defender_proxy_ratelimit_queue_length{tenant=\"contoso\"} 0",
        "defender_proxy_ratelimit_backend_errors_total 0",
        "defender_proxy_ratelimit_fallback_decisions_total 0",
        "# TYPE defender_proxy_ratelimit_wait_seconds histogram",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn per_api_histograms_have_a_row_per_api_and_none_per_tenant() {
    let proxy = proxy(50, false);
    let text = text(&proxy);
    let histogram_lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("defender_proxy_request_duration_seconds")
                || l.starts_with("defender_proxy_upstream_duration_seconds")
                || l.starts_with("defender_proxy_ratelimit_wait_seconds")
        })
        .collect();
    assert!(histogram_lines.iter().all(|l| !l.contains("tenant=")));
    for api in ["default", "mde", "graph"] {
        let count = format!("defender_proxy_request_duration_seconds_count{{api=\"{api}\"}} 0");
        assert!(text.lines().any(|l| l == count), "missing {count}");
    }
    assert!(text
        .lines()
        .any(|l| l == "defender_proxy_upstream_duration_seconds_count{api=\"\"} 0"));
    assert!(text.contains("by API.\n# TYPE defender_proxy_ratelimit_wait_seconds histogram"));
    // The counters stay per tenant.
    assert!(text
        .lines()
        .any(|l| l == "defender_proxy_response_bytes_total{tenant=\"tenant-00049\"} 1234"));
    // Without 3 histograms of ~14 lines per tenant the text is a fraction of the per-tenant one.
    let per_tenant = self::text(&self::proxy(50, true)).len();
    assert!(
        text.len() * 2 < per_tenant,
        "{} vs {per_tenant}",
        text.len()
    );
}

/// Each request is counted under its own API, and each token slot has its own series.
#[tokio::test]
async fn requests_and_tokens_are_shown_per_api() {
    let loopback = "127.0.0.1:0".parse().unwrap();
    let mut config = dev_config(&SimConfig::demo(), "http://127.0.0.1:9", loopback, loopback);
    // `mde` asks for the default API's scope (as a regional host of it would): one slot.
    config.apis[0].scope = config.cloud.scope.clone();
    let proxy = App::build(&config, None).unwrap().proxy().clone();
    let contoso = proxy
        .tenants()
        .into_iter()
        .find(|t| &*t.name == "contoso")
        .unwrap();
    assert!(Arc::ptr_eq(&contoso.apis[0].token, &contoso.apis[1].token));
    for (api, statuses) in [(0, &[200, 200, 404][..]), (1, &[200]), (2, &[503, 200])] {
        for status in statuses {
            contoso.apis[api].requests.record(*status);
        }
    }
    proxy.metrics.untenanted().record_status_without_api(404);
    let text = text(&proxy);
    let requests: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("defender_proxy_requests_total{"))
        .collect();
    let sc = |class: &str| format!("status_class=\"{class}\"");
    assert_eq!(
        requests,
        [
            format!("defender_proxy_requests_total{{tenant=\"\",api=\"default\",status=\"404\",{}}} 1", sc("4xx")),
            format!("defender_proxy_requests_total{{tenant=\"contoso\",api=\"default\",status=\"200\",{}}} 2", sc("2xx")),
            format!("defender_proxy_requests_total{{tenant=\"contoso\",api=\"default\",status=\"404\",{}}} 1", sc("4xx")),
            format!("defender_proxy_requests_total{{tenant=\"contoso\",api=\"mde\",status=\"200\",{}}} 1", sc("2xx")),
            format!("defender_proxy_requests_total{{tenant=\"contoso\",api=\"graph\",status=\"200\",{}}} 1", sc("2xx")),
            format!("defender_proxy_requests_total{{tenant=\"contoso\",api=\"graph\",status=\"503\",{}}} 1", sc("5xx")),
        ]
    );
    let tokens: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("defender_proxy_token_refreshes_total{tenant=\"contoso\""))
        .collect();
    assert_eq!(
        tokens,
        [
            "defender_proxy_token_refreshes_total{tenant=\"contoso\",api=\"default\",result=\"success\"} 0",
            "defender_proxy_token_refreshes_total{tenant=\"contoso\",api=\"default\",result=\"failure\"} 0",
            "defender_proxy_token_refreshes_total{tenant=\"contoso\",api=\"graph\",result=\"success\"} 0",
            "defender_proxy_token_refreshes_total{tenant=\"contoso\",api=\"graph\",result=\"failure\"} 0",
        ],
        "the shared slot once, under `default`"
    );
}

/// The counters belong to the API's name, not its place in the list: a reload that reorders
/// (or removes) `[[api]]` entries does not move one API's counts under another's label.
#[tokio::test]
async fn a_reload_that_reorders_apis_keeps_each_apis_counts() {
    let loopback = "127.0.0.1:0".parse().unwrap();
    let mut config = dev_config(&SimConfig::demo(), "http://127.0.0.1:9", loopback, loopback);
    let proxy = App::build(&config, None).unwrap().proxy().clone();
    let snapshot = proxy.snapshot.load_full();
    let contoso = snapshot.routes.lookup("contoso").unwrap();
    contoso.apis[1].requests.record(200); // mde
    config.apis.reverse();
    config.apis.truncate(1); // graph only
    let apis = crate::snapshot::api_targets(&config, &proxy.metrics).unwrap();
    let routes = crate::snapshot::route_table(
        &config,
        &apis,
        &proxy.broker,
        &snapshot.limiter,
        &proxy.metrics,
    )
    .unwrap();
    let reloaded = routes.lookup("contoso").unwrap();
    assert_eq!(reloaded.apis.len(), 2);
    assert!(Arc::ptr_eq(
        &reloaded.apis[0].requests,
        &contoso.apis[0].requests
    ));
    assert!(Arc::ptr_eq(
        &reloaded.apis[1].requests,
        &contoso.apis[2].requests
    ));
    assert_eq!(reloaded.apis[1].requests.counts(), []);
    // Kept for the API that went away, as for a tenant that went away.
    let kept = proxy.metrics.tenant("contoso").apis();
    let names: Vec<&str> = kept.iter().map(|api| &*api.name).collect();
    assert_eq!(names, ["default", "mde", "graph"]);
    assert_eq!(kept[1].requests.counts(), [(200, 1)]);
}
