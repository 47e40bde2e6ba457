//! Bodies that stall or break off, both ways: a silent API body ends the client's response as
//! incomplete after `[upstream] body_idle_timeout`; a silent client body is `408` after
//! `[listen] body_idle_timeout` and aborts the upstream request; a client that half-closes
//! mid-upload is a client error, not an upstream one.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use defender_proxy::sim::SimConfig;
use futures_util::StreamExt;
use support::{eventually, metrics_text, within, Harness, CONTOSO};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BOUND: Duration = Duration::from_secs(10);

fn quick_body_timeouts(c: &mut defender_proxy::config::Config) {
    c.upstream.body_idle_timeout = Duration::from_millis(300);
    c.listen.limits.body_idle_timeout = Duration::from_millis(300);
}

#[tokio::test]
async fn a_silent_api_body_ends_the_response_incomplete_and_is_counted() {
    let h = Harness::start_with(SimConfig::demo(), quick_body_timeouts).await;
    // Part 1 at once, then nothing until released (never, here).
    let r = h.get("/contoso/api/_test/stream").await;
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let first = within(BOUND, "part 1", stream.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"{\"part\":1}\n");
    let end = within(BOUND, "the end of a stalled response", async {
        while let Some(chunk) = stream.next().await {
            chunk?;
        }
        Ok::<_, reqwest::Error>(())
    })
    .await;
    assert!(end.is_err(), "a cut response must not look complete");
    let series = "defender_proxy_upstream_errors_total{tenant=\"contoso\",kind=\"body_timeout\"}";
    eventually(BOUND, "the stall counted", || async {
        (h.metric(series).await == Some(1.0)).then_some(())
    })
    .await;
}

/// Send a request head and `sent` bytes of a body declared `declared` long, then stop (or
/// half-close); the answer as text.
async fn partial_upload(h: &Harness, declared: usize, sent: usize, half_close: bool) -> String {
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "POST /contoso/api/_test/echo HTTP/1.1\r\nHost: p\r\nContent-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![b'x'; sent]).await.unwrap();
    if half_close {
        s.shutdown().await.unwrap();
    }
    let mut answer = Vec::new();
    // The proxy closes the connection after its answer: the body is not read to its end.
    within(BOUND, "the proxy's answer", s.read_to_end(&mut answer))
        .await
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_stalled_upload_is_408_and_nothing_complete_reaches_the_api() {
    let h = Harness::start_with(SimConfig::demo(), quick_body_timeouts).await;
    // Streamed (declared beyond what is kept for a replay) and kept (small) bodies alike.
    for (declared, sent) in [(1024 * 1024, 300 * 1024), (30 * 1024, 10 * 1024)] {
        let answer = partial_upload(&h, declared, sent, false).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"RequestTimeout\""), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    // The streamed one was on its way upstream: aborted, so the API never saw it whole.
    assert!(
        h.sim.api_requests().iter().all(|r| r.body_len == 0),
        "{:?}",
        h.sim.api_requests()
    );
    let request_errors =
        "defender_proxy_upstream_errors_total{tenant=\"contoso\",kind=\"request\"}";
    assert_eq!(h.metric(request_errors).await.unwrap_or(0.0), 0.0);
    let timeouts =
        "defender_proxy_requests_total{tenant=\"contoso\",api=\"default\",status=\"408\"";
    eventually(BOUND, "both 408s counted", || async {
        (h.metric(timeouts).await == Some(2.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_client_that_half_closes_mid_upload_is_a_client_error() {
    let h = Harness::start().await;
    let answer = partial_upload(&h, 1024 * 1024, 300 * 1024, true).await;
    // The client can still read after its half-close: it hears its own fault, not a 502.
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"BadRequest\""), "{answer}");
    let status = "defender_proxy_requests_total{tenant=\"contoso\",api=\"default\",status=\"";
    let logged = eventually(BOUND, "the request counted", || async {
        let text = metrics_text(h.admin).await?;
        text.lines()
            .find(|l| l.starts_with(status))
            .map(|l| l[status.len()..status.len() + 3].to_owned())
    })
    .await;
    assert_eq!(logged, "400", "counted as the client's error");
    for kind in ["request", "connect"] {
        let series =
            format!("defender_proxy_upstream_errors_total{{tenant=\"{CONTOSO}\",kind=\"{kind}\"}}");
        assert_eq!(h.metric(&series).await.unwrap_or(0.0), 0.0, "{kind}");
    }
}
