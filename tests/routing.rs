//! Routing: path prefix and header, by name and by id; unknown tenants; path attacks;
//! absolute-form and CONNECT. Nothing refused may reach the API.

#![allow(clippy::unwrap_used)]

mod support;

use support::{error_code, raw_request, Harness, CONTOSO, FABRIKAM};

#[tokio::test]
async fn prefix_by_name_and_id_reaches_the_right_tenant() {
    let h = Harness::start().await;
    let contoso_id = h.tenant_id(CONTOSO);
    let fabrikam_id = h.tenant_id(FABRIKAM);

    let r = h.get("/contoso/api/incidents?$top=2").await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["value"].as_array().unwrap().len(), 2);

    let r = h.get(&format!("/{fabrikam_id}/api/machines")).await;
    assert_eq!(r.status(), 200);

    let seen = h.sim.api_requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path_and_query, "/api/incidents?$top=2");
    assert_eq!(seen[0].tid.as_deref(), Some(contoso_id.as_str()));
    assert_eq!(seen[1].path_and_query, "/api/machines");
    assert_eq!(seen[1].tid.as_deref(), Some(fabrikam_id.as_str()));
}

#[tokio::test]
async fn header_by_name_and_id_forwards_path_unchanged() {
    let h = Harness::start().await;
    let fabrikam_id = h.tenant_id(FABRIKAM);
    for key in [FABRIKAM.to_string(), fabrikam_id.to_uppercase()] {
        let r = h
            .http
            .get(h.url("/api/alerts?%24filter=severity+eq+%27High%27"))
            .header("X-Defender-Tenant", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{key}");
    }
    for seen in h.sim.api_requests() {
        // Query forwarded byte for byte (`%24`, `+`, `%27` untouched).
        assert_eq!(
            seen.path_and_query,
            "/api/alerts?%24filter=severity+eq+%27High%27"
        );
        assert_eq!(seen.tid.as_deref(), Some(fabrikam_id.as_str()));
        assert!(seen.headers.get("x-defender-tenant").is_none());
    }
}

#[tokio::test]
async fn default_tenant_applies_when_nothing_else_does() {
    let h = Harness::start_with(defender_proxy::sim::SimConfig::demo(), |c| {
        c.routing.default_tenant = Some(FABRIKAM.into());
    })
    .await;
    let r = h.get("/api/incidents").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        h.sim.api_requests()[0].tid.as_deref(),
        Some(h.tenant_id(FABRIKAM).as_str())
    );
    // A prefix still wins over the default.
    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        h.sim.api_requests()[1].tid.as_deref(),
        Some(h.tenant_id(CONTOSO).as_str())
    );
}

#[tokio::test]
async fn unknown_tenant_is_404_json_and_not_forwarded() {
    let h = Harness::start().await;
    let r = h.get("/acme/api/incidents").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), "UnknownTenant");
    assert_eq!(
        body["error"]["message"],
        "no tenant named 'acme' is configured"
    );
    assert_eq!(body["error"]["target"], "defender-proxy");

    let r = h
        .http
        .get(h.url("/api/incidents"))
        .header("X-Defender-Tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), "UnknownTenant");
    // The header wins over a valid prefix: an unknown header tenant is never "corrected".
    let r = h
        .http
        .get(h.url("/contoso/api/incidents"))
        .header("X-Defender-Tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(h.sim.api_request_count(), 0);
    assert_eq!(h.sim.token_requests().len(), 0);
}

#[tokio::test]
async fn path_attacks_are_400_and_not_forwarded() {
    let h = Harness::start().await;
    let attacks = [
        "/contoso/../fabrikam/api/incidents",
        "/contoso/api/../../x",
        "/contoso/api/./incidents",
        "/contoso/%2e%2e/fabrikam/api/incidents",
        "/contoso/api/%2E%2e/x",
        "/contoso//api/incidents",
        "//contoso/api/incidents",
        "/contoso/api\\..\\x",
        "/contoso/api/%5c..%5cx",
        "/contoso/api/..%2f..%2fx",
        "/contoso/api/%61dvancedhunting/run",
    ];
    for path in attacks {
        let req = format!("GET {path} HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n");
        let answer = raw_request(h.addr, req.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("\"code\":\"BadPath\""), "{path}: {answer}");
    }
    assert_eq!(h.sim.api_request_count(), 0);
}

#[tokio::test]
async fn absolute_form_and_connect_refused_and_not_forwarded() {
    let h = Harness::start().await;
    let abs = format!(
        "GET http://{}/contoso/api/incidents HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        h.sim.addr(),
        h.sim.addr()
    );
    let answer = raw_request(h.addr, abs.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"code\":\"BadRequest\""), "{answer}");

    let connect = format!(
        "CONNECT {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        h.sim.addr(),
        h.sim.addr()
    );
    let answer = raw_request(h.addr, connect.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"code\":\"BadRequest\""), "{answer}");
    assert_eq!(h.sim.api_request_count(), 0);
    assert_eq!(h.sim.token_requests().len(), 0);
}

#[tokio::test]
async fn more_than_one_tenant_header_value_is_400_and_not_forwarded() {
    let h = Harness::start().await;
    let attempts = [
        // Two lines: a gateway's, then the client's.
        "GET /api/incidents HTTP/1.1\r\nHost: x\r\nX-Defender-Tenant: contoso\r\nX-Defender-Tenant: fabrikam\r\n\r\n",
        // The second in another case.
        "GET /api/incidents HTTP/1.1\r\nHost: x\r\nX-Defender-Tenant: contoso\r\nx-defender-tenant: fabrikam\r\n\r\n",
        // Split off by a bare LF.
        "GET /api/incidents HTTP/1.1\r\nHost: x\r\nX-Defender-Tenant: contoso\nX-Defender-Tenant: fabrikam\r\n\r\n",
        // A list in one line.
        "GET /api/incidents HTTP/1.1\r\nHost: x\r\nX-Defender-Tenant: contoso, fabrikam\r\n\r\n",
        // The same tenant twice is still two values.
        "GET /api/incidents HTTP/1.1\r\nHost: x\r\nX-Defender-Tenant: contoso\r\nX-Defender-Tenant: contoso\r\n\r\n",
    ];
    for attempt in attempts {
        let answer = raw_request(h.addr, attempt.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{attempt:?} -> {answer}"
        );
        assert!(answer.contains("\"BadRequest\""), "{answer}");
    }
    assert_eq!(h.sim.api_request_count(), 0);
    assert_eq!(h.sim.token_requests().len(), 0);

    // One value is still fine.
    let r = h
        .http
        .get(h.url("/api/incidents"))
        .header("X-Defender-Tenant", CONTOSO)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn http11_without_host_or_with_two_hosts_is_400_and_not_forwarded() {
    let h = Harness::start().await;
    for attempt in [
        "GET /contoso/api/incidents HTTP/1.1\r\n\r\n",
        "GET /contoso/api/incidents HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /contoso/api/incidents HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let answer = raw_request(h.addr, attempt.as_bytes()).await;
        assert!(answer.contains(" 400 "), "{attempt:?} -> {answer}");
        assert!(answer.contains("\"BadRequest\""), "{answer}");
        assert!(
            answer.contains("Host"),
            "the message names the header: {answer}"
        );
    }
    assert_eq!(h.sim.api_request_count(), 0);
}

#[tokio::test]
async fn http10_without_host_gets_links_to_the_proxy_itself() {
    let h = Harness::start().await;
    let answer = raw_request(
        h.addr,
        b"GET /contoso/api/incidents?$top=1 HTTP/1.0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    let next = body["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("http://{}/contoso/api/incidents?", h.addr)),
        "{next}"
    );
    assert!(!next.contains(&h.sim.addr().to_string()), "{next}");
}
