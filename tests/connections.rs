//! Client connections: HTTP/2 told from HTTP/1 by the first bytes (however they arrive), requests
//! whose heads arrive in pieces, and idle or stopping connections of either version.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{raw_request, Harness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An HTTP/2 (prior knowledge) client on a new connection to the proxy.
async fn h2_client(
    h: &Harness,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let stream = TcpStream::connect(h.addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (send, tokio::spawn(conn))
}

fn get(h: &Harness, path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("http://{}{path}", h.addr))
        .body(Empty::new())
        .unwrap()
}

/// Read until the peer closes; `None` if it stays open for `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served_several_requests_on_one_connection() {
    let h = Harness::start().await;
    let (mut send, conn) = h2_client(&h).await;
    for _ in 0..3 {
        let response = send
            .send_request(get(&h, "/contoso/api/_test/headers"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let headers: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(headers.is_object(), "{headers}");
    }
    assert_eq!(h.sim.api_request_count(), 3);
    drop(send);
    let _ = conn.await;
}

#[tokio::test]
async fn a_request_head_arriving_a_few_bytes_at_a_time_is_served() {
    let h = Harness::start().await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    // "P" could start HTTP/2's preface; "PU" no longer can.
    let pieces: [&[u8]; 4] = [
        b"P",
        b"UT /contoso/api/_test/echo HTTP/1.1\r\n",
        b"Host: p\r\nContent-Length: 5\r\nConnection: close\r\n",
        b"\r\nhello",
    ];
    for piece in pieces {
        s.write_all(piece).await.unwrap();
        // Not synchronisation: a pause so the pieces likely arrive as separate reads (the test
        // passes, proving less, if the kernel joins them; nothing outside the proxy can see how
        // much it has read).
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The echo endpoint answers the body's length and SHA-256: all five bytes arrived.
    assert!(answer.contains(r#""bytes":5"#), "{answer}");
    assert!(
        answer.contains("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
        "{answer}"
    );
}

#[tokio::test]
async fn an_http2_preface_arriving_in_pieces_is_http2() {
    let h = Harness::start().await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    // Not synchronisation: the pieces likely arrive as separate reads (see above).
    tokio::time::sleep(Duration::from_millis(30)).await;
    s.write_all(b"\r\nSM\r\n\r\n").await.unwrap();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut frame = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut frame))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        frame[3], 4,
        "the server's first frame is its SETTINGS: {frame:?}"
    );
}

#[tokio::test]
async fn a_cut_short_preface_then_close_ends_the_connection() {
    let h = Harness::start().await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    s.shutdown().await.unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(5))
            .await
            .is_some(),
        "the half-closed connection stayed open"
    );
    // The proxy still serves.
    let answer = raw_request(
        h.addr,
        b"GET /contoso/api/_test/headers HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_idle_timeout() {
    let h = Harness::start_with(support_demo(), |c| {
        c.listen.limits.header_timeout = Duration::from_secs(60);
        c.listen.limits.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let closed = closed_within(&mut s, Duration::from_secs(5)).await;
    let closed = closed.expect("the silent connection stayed open");
    assert!(
        closed >= Duration::from_millis(250),
        "closed early: {closed:?}"
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_at_the_idle_timeout_and_a_busy_one_is_not() {
    let idle = Duration::from_millis(600);
    let h = Harness::start_with(support_demo(), |c| {
        c.listen.limits.idle_timeout = idle;
    })
    .await;
    let (mut send, conn) = h2_client(&h).await;
    // Busy: requests back to back for 2.5 idle timeouts keep it open. The gap between two
    // request starts is one request's time, not a sleep, so a slow machine only shortens the
    // margin (a whole idle timeout) by its latency.
    let started = std::time::Instant::now();
    let mut requests = 0;
    while started.elapsed() < idle * 5 / 2 {
        let response = send
            .send_request(get(&h, "/contoso/api/_test/headers"))
            .await
            .unwrap_or_else(|e| panic!("request {requests} failed (closed while busy?): {e}"));
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
        requests += 1;
    }
    assert!(!conn.is_finished(), "the busy connection was closed");
    // Idle: closed (GOAWAY, then the end) within 1.25 idle timeouts; bounded generously.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
}

#[tokio::test]
async fn stopping_the_proxy_closes_idle_connections_of_both_versions() {
    let h = Harness::start().await;
    let mut h1 = TcpStream::connect(h.addr).await.unwrap();
    h1.write_all(b"GET /contoso/api/_test/headers HTTP/1.1\r\nHost: p\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = h1.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let (mut send, conn) = h2_client(&h).await;
    let response = send
        .send_request(get(&h, "/contoso/api/_test/headers"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let silent = TcpStream::connect(h.addr).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), h.stop())
        .await
        .expect("the proxy drained its idle connections at once");
    assert!(closed_within(&mut h1, Duration::from_secs(5))
        .await
        .is_some());
    assert!(tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .is_ok());
    drop(silent);
}

fn support_demo() -> defender_proxy::sim::SimConfig {
    defender_proxy::sim::SimConfig::demo()
}
