//! Inbound security: TLS and mTLS, client keys, tenant and method allowlists, CORS, request
//! hardening (header size, slowloris, smuggling, connection limit) and the audit log.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use defender_proxy::config::{
    AuditTarget, ClientConfig, ClientCredential, ConnectionOverflow, CorsConfig, ServerTlsConfig,
    TenantAllow,
};
use defender_proxy::inbound::auth::hash_key;
use defender_proxy::inbound::certs::write_dev_certs;
use defender_proxy::sim::SimConfig;
use support::{error_code, eventually, raw_request, Harness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sha256(key: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    digest.as_ref().try_into().unwrap()
}

fn key_client(
    name: &str,
    key: &str,
    tenants: TenantAllow,
    methods: Option<Vec<http::Method>>,
) -> ClientConfig {
    ClientConfig {
        name: name.into(),
        credential: ClientCredential::KeySha256(sha256(key)),
        tenants,
        methods,
    }
}

fn tls_client(dir: &Path, with_identity_from: Option<&Path>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(ca)
        .use_rustls_tls();
    if let Some(id_dir) = with_identity_from {
        let mut pem = std::fs::read(id_dir.join("client.pem")).unwrap();
        pem.extend(std::fs::read(id_dir.join("client-key.pem")).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

/// Wait (polling the file, since the audit writer runs on its own) for `n` audit lines.
async fn audit_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    eventually(
        Duration::from_secs(10),
        &format!("{n} audit lines"),
        || async {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            (lines.len() >= n).then_some(lines)
        },
    )
    .await
}

#[tokio::test]
async fn tls_listener_serves_https() {
    let dir = support::TempDir::new("tls");
    write_dev_certs(&dir).unwrap();
    let certs = dir.to_path_buf();
    let h = Harness::start_with(SimConfig::demo(), move |c| {
        c.listen.tls = Some(ServerTlsConfig {
            cert: certs.join("server.pem"),
            key: certs.join("server-key.pem"),
            client_ca: None,
        });
    })
    .await;
    let client = tls_client(&dir, None);
    let r = client
        .get(format!(
            "https://localhost:{}/contoso/api/incidents",
            h.addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP on the TLS port gets nowhere.
    let plain = h.http.get(h.url("/contoso/api/incidents")).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    assert_eq!(h.sim.api_request_count(), 1);
}

#[tokio::test]
async fn mtls_refuses_missing_and_foreign_certificates_and_names_the_client() {
    let dir = support::TempDir::new("mtls");
    write_dev_certs(&dir).unwrap();
    let other = support::TempDir::new("mtls-other");
    write_dev_certs(&other).unwrap();
    let audit = dir.join("audit.jsonl");
    let (certs, audit_path) = (dir.to_path_buf(), audit.clone());
    let h = Harness::start_with(SimConfig::demo(), move |c| {
        c.listen.tls = Some(ServerTlsConfig {
            cert: certs.join("server.pem"),
            key: certs.join("server-key.pem"),
            client_ca: Some(certs.join("ca.pem")),
        });
        c.clients = vec![ClientConfig {
            name: "soc-dashboard".into(),
            credential: ClientCredential::CertSubject("dev-client".into()),
            tenants: TenantAllow::All,
            methods: None,
        }];
        c.audit = Some(AuditTarget::File(audit_path));
    })
    .await;
    let url = format!(
        "https://localhost:{}/contoso/api/incidents?$top=1",
        h.addr.port()
    );

    assert!(
        tls_client(&dir, None).get(&url).send().await.is_err(),
        "no client certificate: refused"
    );
    assert!(
        tls_client(&dir, Some(&other))
            .get(&url)
            .send()
            .await
            .is_err(),
        "certificate of another CA: refused"
    );
    let r = tls_client(&dir, Some(&dir)).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.sim.api_request_count(), 1);

    let lines = audit_lines(&audit, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["client"], "soc-dashboard");
    assert_eq!(line["tenant"], "contoso");
    assert_eq!(line["path"], "/contoso/api/incidents", "never the query");
    for field in [
        "time",
        "request_id",
        "peer",
        "method",
        "status",
        "bytes",
        "duration_ms",
    ] {
        assert!(!line[field].is_null(), "{field} missing: {line}");
    }
}

#[tokio::test]
async fn api_keys_allowlists_and_no_secret_in_the_audit_log() {
    let dir = support::TempDir::new("keys");
    let audit = dir.join("audit.jsonl");
    let audit_path = audit.clone();
    let h = Harness::start_with(SimConfig::demo(), move |c| {
        c.clients = vec![
            key_client(
                "grafana",
                "grafana-key-1",
                TenantAllow::Only(vec!["contoso".into()]),
                Some(vec![http::Method::GET]),
            ),
            key_client("automation", "automation-key-2", TenantAllow::All, None),
        ];
        c.audit = Some(AuditTarget::File(audit_path));
    })
    .await;
    let get = |key: Option<(&'static str, &'static str)>, path: &str| {
        let mut r = h.http.get(h.url(path));
        if let Some((header, value)) = key {
            r = r.header(header, value);
        }
        r.send()
    };

    // Missing and wrong keys: 401, nothing forwarded.
    let r = get(None, "/contoso/api/incidents").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(&r.json().await.unwrap()), "Unauthorized");
    let r = get(
        Some(("authorization", "Bearer wrong-key")),
        "/contoso/api/incidents",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(h.sim.api_request_count(), 0);

    // Right key, both ways of presenting it; the key never reaches the API.
    let r = get(
        Some(("authorization", "Bearer grafana-key-1")),
        "/contoso/api/incidents",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = get(
        Some(("x-api-key", "grafana-key-1")),
        "/contoso/api/incidents",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    for seen in h.sim.api_requests() {
        assert!(seen.headers.get("x-api-key").is_none());
        assert!(!seen.headers["authorization"]
            .to_str()
            .unwrap()
            .contains("grafana-key-1"));
    }

    // Tenant allowlist and read-only methods: 403, nothing forwarded.
    let r = get(
        Some(("x-api-key", "grafana-key-1")),
        "/fabrikam/api/incidents",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(&r.json().await.unwrap()), "Forbidden");
    let r = h
        .http
        .post(h.url("/contoso/api/advancedhunting/run"))
        .header("x-api-key", "grafana-key-1")
        .body("{\"Query\":\"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(h.sim.api_request_count(), 2);
    // Another client may.
    let r = h
        .http
        .post(h.url("/fabrikam/api/advancedhunting/run"))
        .header("x-api-key", "automation-key-2")
        .body("{\"Query\":\"DeviceInfo\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let lines = audit_lines(&audit, 7).await;
    assert_eq!(lines.len(), 7);
    let text = std::fs::read_to_string(&audit).unwrap();
    for secret in ["grafana-key-1", "automation-key-2", "wrong-key", "Bearer"] {
        assert!(!text.contains(secret), "{secret} reached the audit log");
    }
    assert_eq!(lines[0]["client"], serde_json::Value::Null);
    assert_eq!(lines[2]["client"], "grafana");
    assert_eq!(lines[4]["status"], 403);
}

#[test]
fn hash_key_makes_a_key_and_its_hash() {
    let (key, hash) = hash_key();
    assert!(key.len() >= 32);
    let expected: String = sha256(&key).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hash, expected);
    assert_ne!(hash_key().0, key);
}

#[tokio::test]
async fn cors_preflight_allowed_and_denied() {
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.cors = CorsConfig {
            allowed_origins: vec!["https://dash.soc.example".into()],
            max_age: Duration::from_secs(600),
        };
    })
    .await;
    let preflight = |origin: &'static str| {
        h.http
            .request(http::Method::OPTIONS, h.url("/contoso/api/incidents"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "x-api-key")
            .send()
    };
    let r = preflight("https://dash.soc.example").await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://dash.soc.example"
    );
    let r = preflight("https://evil.example").await.unwrap();
    assert!(!r.status().is_success());
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert_eq!(
        h.sim.api_request_count(),
        0,
        "preflights are answered by the proxy"
    );

    let r = h
        .http
        .get(h.url("/contoso/api/incidents"))
        .header("origin", "https://dash.soc.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://dash.soc.example"
    );
    let r = h
        .http
        .get(h.url("/contoso/api/incidents"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn huge_headers_are_431_and_not_forwarded() {
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.listen.limits.max_header_bytes = 8 * 1024
    })
    .await;
    let big = "a".repeat(12 * 1024);
    let req = format!("GET /contoso/api/incidents HTTP/1.1\r\nHost: p\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    let answer = raw_request(h.addr, req.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert_eq!(h.sim.api_request_count(), 0);
}

#[tokio::test]
async fn slowloris_connection_is_closed_within_the_header_timeout() {
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.listen.limits.header_timeout = Duration::from_millis(500)
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    stream
        .write_all(b"GET /contoso/api/incidents HTTP/1.1\r\nHost: p\r\nX-Slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // Keep dribbling a byte now and then; the proxy must still close at the deadline.
    let mut buf = [0u8; 1024];
    let closed = loop {
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => break true, // an error response then close is fine too
            Err(_) => {
                if started.elapsed() > Duration::from_secs(10) {
                    break false;
                }
                if stream.write_all(b"x").await.is_err() {
                    break true;
                }
            }
        }
    };
    assert!(closed, "still open after 10 s");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        started.elapsed()
    );
    assert_eq!(h.sim.api_request_count(), 0);
}

#[tokio::test]
async fn smuggling_attempts_are_refused_and_not_forwarded() {
    let h = Harness::start().await;
    let attempts = [
        "POST /contoso/api/_test/echo HTTP/1.1\r\nHost: p\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
        "POST /contoso/api/_test/echo HTTP/1.1\r\nHost: p\r\nContent-Length: 4\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde",
        "POST /contoso/api/_test/echo HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\nConnection: close\r\n\r\n0\r\n\r\n",
    ];
    for attempt in attempts {
        let answer = raw_request(h.addr, attempt.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{attempt:?} -> {answer}"
        );
    }
    assert_eq!(h.sim.api_request_count(), 0);
}

#[tokio::test]
async fn body_over_the_limit_is_413_and_not_forwarded() {
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.listen.limits.max_body_bytes = Some(1024)
    })
    .await;
    let r = h
        .http
        .post(h.url("/contoso/api/_test/echo"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(h.sim.api_request_count(), 0);
    let r = h
        .http
        .post(h.url("/contoso/api/_test/echo"))
        .body(vec![b'x'; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.listen.limits.max_connections = 2;
        c.listen.limits.on_max_connections = ConnectionOverflow::Refuse;
    })
    .await;
    let request = b"GET /contoso/api/_test/headers HTTP/1.1\r\nHost: p\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    let mut third = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let _ = third.write_all(request).await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the third connection is closed without an answer");
    // A place frees up when a connection closes.
    drop(held.pop());
    let answer = {
        let mut tries = 0;
        loop {
            let answer = raw_request(
                h.addr,
                b"GET /contoso/api/_test/headers HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
            )
            .await;
            tries += 1;
            if answer.starts_with("HTTP/1.1 200") || tries > 50 {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // Header timeout far away, idle timeout short: only the idle watch can close it in time.
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.listen.limits.header_timeout = Duration::from_secs(60);
        c.listen.limits.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"GET /contoso/api/_test/headers HTTP/1.1\r\nHost: p\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let started = std::time::Instant::now();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => continue, // rest of the first response
            Err(_) => break false,
        }
    };
    assert!(closed, "the idle connection stayed open");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_in_queue_mode() {
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.listen.limits.max_connections = 1;
        c.listen.limits.on_max_connections = ConnectionOverflow::Queue;
    })
    .await;
    let request = b"GET /contoso/api/_test/headers HTTP/1.1\r\nHost: p\r\n\r\n";
    let mut first = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut buf = [0u8; 64];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The second connection is not served while the first holds the only place...
    let mut second = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    second.write_all(request).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf)).await;
    assert!(waited.is_err(), "served beyond max_connections");
    // ...and is served, not refused, once the first closes.
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(10), second.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}
