//! Traces (`[telemetry]`): a loopback OTLP/HTTP receiver gets one trace per request with its
//! child spans, the client's W3C trace continued and passed upstream, no secret in any byte;
//! a dead collector costs requests nothing and its dropped spans are counted.
//!
//! Each test installs the trace layer of its own proxy as the subscriber of its own thread (the
//! harness runs the proxy on the test's current-thread runtime), so tests do not share spans.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use defender_proxy::config::{
    ClientConfig, ClientCredential, TelemetryConfig, TenantAllow, TraceProtocol,
};
use defender_proxy::sim::SimConfig;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;
use support::{eventually, Harness};
use tracing_subscriber::layer::SubscriberExt as _;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const CLIENT_KEY: &str = "client-key-that-must-stay-secret";
const QUERY_SECRET: &str = "secret-value";

/// One OTLP request the receiver got: its content type and body.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// A tiny OTLP/HTTP receiver on loopback: keeps every request body, answers 200.
async fn receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let sink = sink.clone();
                async move {
                    let kind = req.headers()[http::header::CONTENT_TYPE]
                        .to_str()
                        .unwrap()
                        .to_owned();
                    assert_eq!(req.uri().path(), "/v1/traces");
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    sink.lock().unwrap().push((kind.clone(), body));
                    let answer = if kind.contains("json") { "{}" } else { "" };
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(answer))))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
        }
    });
    (addr, received)
}

fn telemetry(addr: SocketAddr, protocol: TraceProtocol) -> TelemetryConfig {
    TelemetryConfig {
        endpoint: format!("http://{addr}/v1/traces").parse().unwrap(),
        protocol,
        service_name: "proxy-under-test".into(),
        sample_ratio: 1.0,
    }
}

/// The proxy with traces to `addr`, and a client that must send `CLIENT_KEY`.
async fn start(addr: SocketAddr, protocol: TraceProtocol) -> Harness {
    Harness::start_with(SimConfig::demo(), |c| {
        c.telemetry = Some(telemetry(addr, protocol));
        let hash = ring::digest::digest(&ring::digest::SHA256, CLIENT_KEY.as_bytes());
        c.clients = vec![ClientConfig {
            name: "soc".into(),
            credential: ClientCredential::KeySha256(hash.as_ref().try_into().unwrap()),
            tenants: TenantAllow::All,
            methods: None,
        }];
    })
    .await
}

/// This test thread's subscriber: the proxy's trace layer only.
fn install(h: &Harness) -> tracing::subscriber::DefaultGuard {
    let layer = h.app.telemetry().expect("telemetry is on").layer();
    tracing::subscriber::set_default(tracing_subscriber::registry().with(layer))
}

async fn traced_get(h: &Harness, path: &str) -> reqwest::Response {
    h.http
        .get(h.url(path))
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .header("tracestate", "vendor=opaque")
        .header("x-api-key", CLIENT_KEY)
        .send()
        .await
        .unwrap()
}

/// Every span in the JSON bodies received so far.
fn spans(received: &Received) -> Vec<Value> {
    let mut out = vec![];
    for (_, body) in received.lock().unwrap().iter() {
        let doc: Value = serde_json::from_slice(body).unwrap();
        for rs in doc["resourceSpans"].as_array().unwrap() {
            for ss in rs["scopeSpans"].as_array().unwrap() {
                out.extend(ss["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    out
}

/// An attribute's value as text (OTLP JSON writes 64-bit integers as strings).
fn attr(span: &Value, key: &str) -> Option<String> {
    let attrs = span["attributes"].as_array()?;
    let kv = attrs.iter().find(|kv| kv["key"] == key)?;
    match kv["value"].as_object()?.values().next()? {
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

/// Flush until the request span (which ends with its body, after the client has the answer)
/// has arrived.
async fn exported(h: &Harness, received: &Received) -> Vec<Value> {
    let telemetry = h.app.telemetry().unwrap().clone();
    eventually(Duration::from_secs(20), "the request's spans", || {
        let telemetry = telemetry.clone();
        async move {
            telemetry.flush().await;
            let spans = spans(received);
            (!named(&spans, "request").is_empty()).then_some(spans)
        }
    })
    .await
}

#[tokio::test]
async fn one_trace_per_request_continued_from_the_client_and_sent_upstream() {
    let (addr, received) = receiver().await;
    let h = start(addr, TraceProtocol::Json).await;
    let _subscriber = install(&h);

    let path = format!("/contoso/api/incidents?$filter={QUERY_SECRET}");
    let response = traced_get(&h, &path).await;
    assert_eq!(response.status(), 200);
    let size = response.bytes().await.unwrap().len();
    let spans = exported(&h, &received).await;

    // The request span continues the client's trace, its children hang under it.
    let requests = named(&spans, "request");
    assert_eq!(requests.len(), 1, "{spans:#?}");
    let request = requests[0];
    assert_eq!(request["traceId"], TRACE_ID);
    assert_eq!(request["parentSpanId"], CLIENT_SPAN);
    assert_eq!(request["kind"], 2, "a server span");
    assert_eq!(attr(request, "tenant").unwrap(), "contoso");
    assert_eq!(attr(request, "api").unwrap(), "default");
    assert_eq!(attr(request, "http.request.method").unwrap(), "GET");
    assert_eq!(attr(request, "url.path").unwrap(), "/contoso/api/incidents");
    assert_eq!(attr(request, "http.response.status_code").unwrap(), "200");
    let bytes = attr(request, "http.response.body.size").unwrap();
    assert_eq!(bytes, size.to_string());
    for name in ["rate_limit", "token", "upstream"] {
        let child = named(&spans, name);
        assert_eq!(child.len(), 1, "{name}: {spans:#?}");
        assert_eq!(child[0]["traceId"], TRACE_ID, "{name}");
        assert_eq!(child[0]["parentSpanId"], request["spanId"], "{name}");
    }
    let token = named(&spans, "token")[0];
    assert_eq!(
        attr(token, "token.cached").unwrap(),
        "false",
        "the first token is fetched"
    );
    let upstream = named(&spans, "upstream")[0];
    assert_eq!(upstream["kind"], 3, "a client span");
    assert_eq!(attr(upstream, "http.response.status_code").unwrap(), "200");

    // Upstream got the upstream span's traceparent, and the client's tracestate.
    let seen = h.sim.api_requests();
    assert_eq!(seen.len(), 1);
    let traceparent = seen[0].headers["traceparent"].to_str().unwrap();
    let span_id = upstream["spanId"].as_str().unwrap();
    assert_eq!(traceparent, format!("00-{TRACE_ID}-{span_id}-01"));
    assert_eq!(seen[0].headers["tracestate"], "vendor=opaque");

    // No secret in any byte sent to the collector.
    let bearer = seen[0].headers["authorization"].to_str().unwrap();
    let token_text = bearer.strip_prefix("Bearer ").unwrap();
    let secrets = [
        h.sim_config.client_secret.as_str(),
        token_text,
        CLIENT_KEY,
        QUERY_SECRET,
    ];
    assert_no_secret(&received, &secrets);

    // A second request: the token from the cache.
    received.lock().unwrap().clear();
    assert_eq!(traced_get(&h, "/contoso/api/alerts").await.status(), 200);
    let spans = exported(&h, &received).await;
    assert_eq!(
        attr(named(&spans, "token")[0], "token.cached").unwrap(),
        "true"
    );
    assert!(
        h.metric("defender_proxy_trace_spans_exported_total")
            .await
            .unwrap()
            >= 8.0
    );
    drop(_subscriber);
    h.stop().await;
}

fn assert_no_secret(received: &Received, secrets: &[&str]) {
    let received = received.lock().unwrap();
    assert!(!received.is_empty());
    for (_, body) in received.iter() {
        for secret in secrets {
            assert!(!secret.is_empty());
            let found = body.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "a secret ({} bytes) was exported", secret.len());
        }
    }
}

#[tokio::test]
async fn protobuf_is_sent_too() {
    let (addr, received) = receiver().await;
    let h = start(addr, TraceProtocol::Protobuf).await;
    let _subscriber = install(&h);
    let path = format!("/contoso/api/incidents?$filter={QUERY_SECRET}");
    assert_eq!(traced_get(&h, &path).await.status(), 200);
    let telemetry = h.app.telemetry().unwrap().clone();
    let trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&TRACE_ID[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let has_trace = |received: &Received| {
        received.lock().unwrap().iter().any(|(kind, body)| {
            kind == "application/x-protobuf"
                && body.windows(16).any(|w| w == trace_id.as_slice())
                && body.windows(7).any(|w| w == b"request")
        })
    };
    eventually(Duration::from_secs(20), "protobuf spans", || {
        let telemetry = telemetry.clone();
        let received = received.clone();
        async move {
            telemetry.flush().await;
            has_trace(&received).then_some(())
        }
    })
    .await;
    let secret = h.sim_config.client_secret.clone();
    assert_no_secret(&received, &[&secret, CLIENT_KEY, QUERY_SECRET]);
    drop(_subscriber);
    h.stop().await;
}

#[tokio::test]
async fn a_dead_collector_costs_requests_nothing_and_its_spans_are_counted() {
    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let h = start(closed, TraceProtocol::Json).await;
    let _subscriber = install(&h);
    for i in 0..20 {
        let started = Instant::now();
        let path = format!("/contoso/api/incidents?n={i}");
        assert_eq!(traced_get(&h, &path).await.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request waited on the export"
        );
    }
    let telemetry = h.app.telemetry().unwrap().clone();
    let failed = eventually(Duration::from_secs(30), "failed spans counted", || {
        let telemetry = telemetry.clone();
        let h = &h;
        async move {
            telemetry.flush().await;
            let series = "defender_proxy_trace_spans_dropped_total{reason=\"export_failed\"}";
            h.metric(series).await.filter(|n| *n > 0.0)
        }
    })
    .await;
    assert!(failed >= 1.0);
    assert_eq!(
        h.metric("defender_proxy_trace_spans_exported_total").await,
        Some(0.0)
    );
    drop(_subscriber);
    h.stop().await;
}

#[tokio::test]
async fn without_telemetry_the_clients_trace_headers_pass_as_they_are() {
    let h = Harness::start().await;
    assert!(h.app.telemetry().is_none());
    let response = h
        .http
        .get(h.url("/contoso/api/incidents"))
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .header("tracestate", "vendor=opaque")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = h.sim.api_requests();
    assert_eq!(
        seen[0].headers["traceparent"].to_str().unwrap(),
        format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")
    );
    assert_eq!(seen[0].headers["tracestate"], "vendor=opaque");
    assert_eq!(
        h.metric("defender_proxy_trace_spans_exported_total").await,
        Some(0.0)
    );
    h.stop().await;
}
