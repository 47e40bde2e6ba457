//! The Defender API subset: token checks, paging, limits, test endpoints and the recorder.

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::sim::SimTenant;

async fn get(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn get_json(url: &str, token: &str) -> (u16, Value) {
    let resp = get(url, Some(token)).await;
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401_and_are_recorded() {
    let sim = start().await;
    let url = format!("{}/api/incidents", sim.base_url());
    let resp = get(&url, None).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Unauthorized");
    assert!(body["error"]["target"].is_string());
    assert_eq!(get(&url, Some("not.a.token")).await.status(), 401);

    // A token from another simulator (another signing key) is refused too.
    let other = start().await;
    let foreign = token(&other, CONTOSO).await;
    assert_eq!(get(&url, Some(&foreign)).await.status(), 401);

    let records = sim.api_requests();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.status == 401 && r.tid.is_none()));
    assert_eq!(records[0].path_and_query, "/api/incidents");
    assert!(
        !format!("{:?}", records[1]).contains("not.a.token"),
        "Debug hides the token"
    );
}

#[tokio::test]
async fn paging_links_are_absolute_and_reach_the_end() {
    let sim = start().await;
    let token = token(&sim, CONTOSO).await;
    let mut url = format!(
        "{}/api/incidents?%24top=10&$filter=status+eq+%27Active%27",
        sim.base_url()
    );
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let (status, body) = get_json(&url, &token).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        assert_eq!(
            body["@odata.context"],
            format!("{}/api/$metadata#Incidents", sim.base_url())
        );
        for incident in body["value"].as_array().unwrap() {
            assert!(incident["incidentName"]
                .as_str()
                .unwrap()
                .contains("contoso"));
            assert!(incident["alerts"].as_array().is_some_and(|a| !a.is_empty()));
            ids.push(incident["incidentId"].as_u64().unwrap());
        }
        match body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(
                    next.starts_with(&format!("{}/api/incidents?$top=10&$skip=", sim.base_url()))
                );
                assert!(next.ends_with("&$filter=status+eq+%27Active%27"), "{next}");
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    ids.dedup();
    assert_eq!(ids.len(), 25);
    let first = &sim.api_requests()[0];
    assert_eq!(
        first.path_and_query,
        "/api/incidents?%24top=10&$filter=status+eq+%27Active%27"
    );
    assert_eq!(first.tid.as_deref(), Some(CONTOSO));
    assert_eq!(
        first.aud.as_deref(),
        Some("https://api.security.microsoft.com")
    );
    assert_eq!(sim.api_request_count(), 3);

    let (status, body) = get_json(&format!("{}/api/incidents", sim.base_url()), &token).await;
    assert_eq!((status, body["value"].as_array().unwrap().len()), (200, 25));
    assert!(body.get("@odata.nextLink").is_none());
    let (status, body) = get_json(
        &format!("{}/api/incidents?$top=101", sim.base_url()),
        &token,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("BadRequest"))
    );
}

#[tokio::test]
async fn each_tenant_sees_its_own_data() {
    let sim = start().await;
    let token = token(&sim, FABRIKAM).await;
    let (status, body) = get_json(&format!("{}/api/machines", sim.base_url()), &token).await;
    assert_eq!(status, 200);
    let machine = &body["value"][0];
    assert!(machine["computerDnsName"]
        .as_str()
        .unwrap()
        .ends_with(".fabrikam.local"));
    let id = machine["id"].as_str().unwrap();
    let (status, one) = get_json(&format!("{}/api/machines/{id}", sim.base_url()), &token).await;
    assert_eq!((status, one["id"].as_str()), (200, Some(id)));
    let (status, alerts) = get_json(
        &format!("{}/api/machines/{id}/alerts", sim.base_url()),
        &token,
    )
    .await;
    assert_eq!(status, 200);
    assert!(alerts["value"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["machineId"] == id));
    let (status, _) = get_json(&format!("{}/api/machines/nope", sim.base_url()), &token).await;
    assert_eq!(status, 404);
    let (status, body) = get_json(&format!("{}/api/alerts?$top=5", sim.base_url()), &token).await;
    assert_eq!((status, body["value"].as_array().unwrap().len()), (200, 5));
    assert_eq!(body["value"][0]["aadTenantId"], FABRIKAM);
    let (status, body) = get_json(&format!("{}/api/nothing-here", sim.base_url()), &token).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ResourceNotFound"))
    );
}

#[tokio::test]
async fn advanced_hunting_runs_queries_and_rejects_bad_bodies() {
    let sim = start().await;
    let token = token(&sim, CONTOSO).await;
    let url = format!("{}/api/advancedhunting/run", sim.base_url());
    let resp = client()
        .post(&url)
        .bearer_auth(&token)
        .body(r#"{"Query":"DeviceInfo | take 3"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["Results"].as_array().unwrap().len(), 3);
    assert_eq!(body["Schema"][0]["Name"], "Timestamp");
    assert!(body["Stats"].is_object());
    let resp = client()
        .post(&url)
        .bearer_auth(&token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(get(&url, Some(&token)).await.status(), 405);
}

#[tokio::test]
async fn revoked_expired_and_roleless_tokens_are_refused() {
    let mut config = SimConfig::demo();
    config.tenants.push(SimTenant {
        name: "noroles".into(),
        id: "33333333-0000-0000-0000-000000000003".into(),
        roles: vec![],
    });
    let sim = Simulator::start(config).await.unwrap();
    let url = format!("{}/api/incidents", sim.base_url());

    let t = token(&sim, "33333333-0000-0000-0000-000000000003").await;
    assert!(claims(&t).get("roles").is_none());
    assert_eq!(get(&url, Some(&t)).await.status(), 403);

    let t = token(&sim, CONTOSO).await;
    assert_eq!(get(&url, Some(&t)).await.status(), 200);
    sim.revoke_tokens(CONTOSO);
    assert_eq!(get(&url, Some(&t)).await.status(), 401);
    let fresh = token(&sim, CONTOSO).await;
    assert_eq!(
        get(&url, Some(&fresh)).await.status(),
        200,
        "only earlier tokens are revoked"
    );

    sim.set_token_lifetime(Duration::ZERO, None);
    let expired = token(&sim, CONTOSO).await;
    assert_eq!(get(&url, Some(&expired)).await.status(), 401);
    let statuses: Vec<u16> = sim.api_requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [403, 200, 401, 200, 401]);
    assert_eq!(
        sim.api_requests()[2].tid.as_deref(),
        Some(CONTOSO),
        "tid of a revoked token is still known"
    );
}

#[tokio::test]
async fn limits_and_forced_429s() {
    let sim = start().await;
    let token_c = token(&sim, CONTOSO).await;
    let url = format!("{}/api/incidents?$top=1", sim.base_url());
    for i in 0..50 {
        assert_eq!(get(&url, Some(&token_c)).await.status(), 200, "request {i}");
    }
    let resp = get(&url, Some(&token_c)).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TooManyRequests");
    // Other classes and tenants are unaffected.
    assert_eq!(
        get(&format!("{}/api/machines", sim.base_url()), Some(&token_c))
            .await
            .status(),
        200
    );
    let token_f = token(&sim, FABRIKAM).await;
    assert_eq!(get(&url, Some(&token_f)).await.status(), 200);

    sim.force_api_429(FABRIKAM, 2, Some("7"));
    for _ in 0..2 {
        let resp = get(
            &format!("{}/api/_test/headers", sim.base_url()),
            Some(&token_f),
        )
        .await;
        assert_eq!(
            (
                resp.status().as_u16(),
                resp.headers()["retry-after"].to_str().unwrap()
            ),
            (429, "7")
        );
    }
    assert_eq!(get(&url, Some(&token_f)).await.status(), 200);
}

#[tokio::test]
async fn test_endpoints_echo_stream_bytes_and_headers() {
    let sim = start().await;
    let token = token(&sim, CONTOSO).await;
    let base = sim.base_url().to_owned();

    let payload = vec![42u8; 300_000];
    let resp = client()
        .put(format!("{base}/api/_test/echo"))
        .bearer_auth(&token)
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let sha = crate::sim::support::sha256_hex(&payload);
    assert_eq!(
        (body["bytes"].as_u64(), body["sha256"].as_str()),
        (Some(300_000), Some(sha.as_str()))
    );
    let rec = &sim.api_requests()[0];
    assert_eq!(
        (rec.body_len, rec.body_sha256.as_str()),
        (300_000, sha.as_str())
    );

    let mut resp = get(&format!("{base}/api/_test/stream"), Some(&token)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.chunk().await.unwrap().unwrap(), "{\"part\":1}\n");
    sim.release_streams();
    assert_eq!(resp.chunk().await.unwrap().unwrap(), "{\"part\":2}\n");
    assert!(resp.chunk().await.unwrap().is_none());

    let resp = get(&format!("{base}/api/_test/bytes?n=200001"), Some(&token)).await;
    assert_eq!(resp.content_length(), Some(200_001));
    assert_eq!(resp.bytes().await.unwrap().len(), 200_001);
    assert_eq!(
        get(&format!("{base}/api/_test/bytes"), Some(&token))
            .await
            .status(),
        400
    );

    let resp = client()
        .get(format!("{base}/api/_test/headers"))
        .bearer_auth(&token)
        .header("x-request-id", "abc")
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["x-request-id"], "abc");
    assert_eq!(
        body["authorization"],
        format!("Bearer …{}", &token[token.len() - 4..])
    );
}

#[tokio::test(start_paused = true)]
async fn api_delay_holds_the_answer() {
    let sim = start().await;
    let t = token(&sim, CONTOSO).await;
    sim.set_api_delay(CONTOSO, Duration::from_secs(120));
    let started = tokio::time::Instant::now();
    let resp = get(&format!("{}/api/machines", sim.base_url()), Some(&t)).await;
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_secs(120));
}
