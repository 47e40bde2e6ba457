//! What is forwarded: header hygiene, request ids, bodies both ways (streamed), upstream failure.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use defender_proxy::sim::SimConfig;
use futures_util::StreamExt;
use support::{error_code, eventually, raw_request, Harness};

#[tokio::test]
async fn client_credentials_tenant_header_and_hop_by_hop_never_reach_the_api() {
    let h = Harness::start().await;
    let req = "GET /api/incidents HTTP/1.1\r\n\
               Host: proxy.local\r\n\
               Authorization: Bearer client-own-credential\r\n\
               X-Defender-Tenant: contoso\r\n\
               Connection: keep-alive, X-Hop-Secret\r\n\
               X-Hop-Secret: must-not-pass\r\n\
               Keep-Alive: timeout=5\r\n\
               TE: trailers\r\n\
               Proxy-Authorization: Basic abc\r\n\
               Upgrade: websocket\r\n\
               Trailer: X-Checksum\r\n\
               X-End-To-End: kept\r\n\
               \r\n";
    let answer = raw_request(h.addr, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let seen = &h.sim.api_requests()[0];
    let headers = &seen.headers;
    for gone in [
        "x-defender-tenant",
        "x-hop-secret",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            headers.get(gone).is_none(),
            "{gone} reached the API: {headers:?}"
        );
    }
    let auth = headers.get_all("authorization").iter().collect::<Vec<_>>();
    assert_eq!(auth.len(), 1);
    assert!(
        auth[0].to_str().unwrap().starts_with("Bearer ey"),
        "the tenant's JWT, not the client's"
    );
    assert!(!auth[0].to_str().unwrap().contains("client-own-credential"));
    assert_eq!(headers["x-end-to-end"], "kept");
    assert_eq!(headers["host"], h.sim.addr().to_string());
}

#[tokio::test]
async fn request_id_is_kept_or_generated_and_sent_both_ways() {
    let h = Harness::start().await;
    let r = h
        .http
        .get(h.url("/contoso/api/incidents"))
        .header("X-Request-Id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-123");
    let r = h.get("/contoso/api/incidents").await;
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 32);
    let seen = h.sim.api_requests();
    assert_eq!(seen[0].headers["x-request-id"], "req-123");
    assert_eq!(seen[1].headers["x-request-id"], generated.as_str());
    // Errors carry it too.
    let r = h
        .http
        .get(h.url("/acme/x"))
        .header("X-Request-Id", "req-404")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-404");
}

#[tokio::test]
async fn one_mib_post_body_arrives_intact() {
    let h = Harness::start().await;
    let body: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let expected = sha256_hex(&body);
    // Once with a length, once chunked (a stream of unknown length).
    let r = h
        .http
        .post(h.url("/contoso/api/_test/echo"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["bytes"], 1024 * 1024);
    assert_eq!(echo["sha256"], expected);

    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    let stream = futures_util::stream::iter(chunks);
    let r = h
        .http
        .post(h.url("/contoso/api/_test/echo"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["sha256"], expected);
    let seen = h.sim.api_requests();
    assert!(seen
        .iter()
        .all(|s| s.body_len == 1024 * 1024 && s.body_sha256 == expected));
}

#[tokio::test]
async fn first_byte_reaches_client_while_api_still_sending() {
    let h = Harness::start().await;
    let r = h.get("/contoso/api/_test/stream").await;
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    // The simulator holds the rest of the body until released: if the proxy buffered the whole
    // body, this first read would never complete.
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("first chunk arrived before the API finished")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"{\"part\":1}\n");
    h.sim.release_streams();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, b"{\"part\":2}\n");
}

#[tokio::test]
async fn upstream_down_is_502_json() {
    // An API address nothing listens on: bind a port, then free it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.cloud.api = format!("http://{closed}").parse().unwrap();
    })
    .await;
    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), "UpstreamUnavailable");
}

#[tokio::test]
async fn upstream_down_logs_its_cause_and_tells_the_client_only_that() {
    let (logs, _guard) = support::Logs::capture();
    // A port bound but not listening: connections to it are refused, and no other process can
    // take it while the test runs (as it could a port bound and freed).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = socket.local_addr().unwrap();
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.cloud.api = format!("http://{closed}").parse().unwrap();
    })
    .await;
    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    // The client's message is as before: no cause, no address.
    assert_eq!(
        body["error"]["message"],
        "the Defender API could not be reached: connection failed"
    );
    // The operator's log line has the cause, down to the OS error.
    let failed = logs.messages("request failed");
    assert_eq!(failed.len(), 1, "{:#?}", logs.lines());
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("the Defender API could not be reached: connection failed: "),
        "{error}"
    );
    assert!(
        error.to_ascii_lowercase().contains("connection refused") && error.contains("os error"),
        "{error}"
    );
    assert!(
        !error.contains("Bearer") && !error.contains("eyJ"),
        "{error}"
    );
}

#[tokio::test]
async fn api_errors_pass_through_untouched() {
    let h = Harness::start().await;
    let r = h.get("/contoso/api/no-such-endpoint").await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_ne!(
        body["error"]["target"], "defender-proxy",
        "the API's own error, not ours"
    );
}

fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn slow_api_is_504_after_the_response_timeout() {
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.upstream.response_timeout = Duration::from_millis(300);
    })
    .await;
    h.sim
        .set_api_delay(&h.tenant_id(support::CONTOSO), Duration::from_secs(30));
    let started = std::time::Instant::now();
    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 504);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), "UpstreamTimeout");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn abandoned_request_is_still_logged_and_counted() {
    let h = Harness::start().await;
    h.sim
        .set_api_delay(&h.tenant_id(support::CONTOSO), Duration::from_secs(30));
    // The client gives up while the proxy waits for the API.
    let gave_up = h
        .http
        .get(h.url("/contoso/api/incidents"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gave_up.is_err());
    // The proxy notices the closed connection (asynchronously) and counts the request as 499
    // (client closed).
    let series = "defender_proxy_requests_total{tenant=\"contoso\",api=\"default\",status=\"499\",status_class=\"4xx\"}";
    eventually(
        Duration::from_secs(10),
        "the abandoned request counted",
        || async { (h.metric(series).await == Some(1.0)).then_some(()) },
    )
    .await;
}
