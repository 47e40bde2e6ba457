//! Advanced hunting: Graph's `runHuntingQuery` (shape, role, body, forced 429 and CPU-quota
//! answers, streaming) and the legacy endpoints (same rows, retired on request).

use serde_json::{json, Value};

use super::*;

const GRAPH_AUD: &str = "https://graph.microsoft.com";

async fn post(url: &str, token: &str, body: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

fn graph_url(sim: &RunningSim) -> String {
    format!("{}/v1.0/security/runHuntingQuery", sim.base_url())
}

#[tokio::test]
async fn graph_hunting_shape_matches_the_legacy_rows_and_is_recorded() {
    let sim = start().await;
    let graph = token_for(&sim, CONTOSO, GRAPH_SCOPE).await;
    let (status, _, body) = post(
        &graph_url(&sim),
        &graph,
        r#"{"Query":"DeviceInfo | take 3","Timespan":"P30D"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["@odata.context"],
        format!(
            "{}/v1.0/$metadata#microsoft.graph.security.huntingQueryResults",
            sim.base_url()
        )
    );
    assert_eq!(
        body["schema"][4],
        json!({"name": "ReportId", "type": "Int64"})
    );
    let rows = body["results"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows[0]["DeviceName"]
        .as_str()
        .unwrap()
        .ends_with(".contoso.local"));

    for path in ["/api/advancedhunting/run", "/api/advancedqueries/run"] {
        let xdr = token(&sim, CONTOSO).await;
        let url = format!("{}{path}", sim.base_url());
        let (status, _, legacy) = post(&url, &xdr, r#"{"Query":"DeviceInfo | take 3"}"#).await;
        assert_eq!(status, 200, "{legacy}");
        assert_eq!(legacy["Results"], body["results"], "{path}: the same rows");
        assert_eq!(
            legacy["Schema"][0],
            json!({"Name": "Timestamp", "Type": "DateTime"})
        );
        assert_eq!(
            legacy["Stats"]["dataset_statistics"][0]["table_row_count"],
            3
        );
    }
    // Another tenant gets its own rows.
    let other = token_for(&sim, FABRIKAM, GRAPH_SCOPE).await;
    let (_, _, theirs) = post(&graph_url(&sim), &other, r#"{"Query":"T | take 3"}"#).await;
    assert_ne!(theirs["results"], body["results"]);

    let record = sim
        .api_requests()
        .into_iter()
        .find(|r| r.path_and_query == "/v1.0/security/runHuntingQuery")
        .unwrap();
    assert_eq!(
        (record.aud.as_deref(), record.tid.as_deref(), record.status),
        (Some(GRAPH_AUD), Some(CONTOSO), 200)
    );
    // A non-Graph token is refused in Graph's shape.
    let xdr = token(&sim, CONTOSO).await;
    let (status, _, body) = post(&graph_url(&sim), &xdr, r#"{"Query":"T"}"#).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("InvalidAuthenticationToken"))
    );
}

#[tokio::test]
async fn graph_hunting_needs_the_threat_hunting_role() {
    let sim = start().await;
    sim.set_threat_hunting_granted(CONTOSO, false);
    let graph = token_for(&sim, CONTOSO, GRAPH_SCOPE).await;
    let roles = claims(&graph)["roles"].clone();
    assert!(!roles
        .as_array()
        .unwrap()
        .contains(&json!("ThreatHunting.Read.All")));
    assert!(roles
        .as_array()
        .unwrap()
        .contains(&json!("SecurityIncident.Read.All")));
    let (status, _, body) = post(&graph_url(&sim), &graph, r#"{"Query":"T"}"#).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "Forbidden");
    assert!(
        body["error"]["innerError"].is_object(),
        "Graph-shaped: {body}"
    );
    // The other Graph paths still work with the remaining roles; the other tenant is untouched.
    let incidents = format!("{}/v1.0/security/incidents", sim.base_url());
    let resp = client()
        .get(&incidents)
        .bearer_auth(&graph)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let theirs = token_for(&sim, FABRIKAM, GRAPH_SCOPE).await;
    assert_eq!(
        post(&graph_url(&sim), &theirs, r#"{"Query":"T"}"#).await.0,
        200
    );

    // Granted again (by the control endpoint): a fresh token carries it, the old one not.
    let resp = client()
        .post(format!("{}/_sim/tenants/{CONTOSO}", sim.base_url()))
        .body(r#"{"threat_hunting_role": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        post(&graph_url(&sim), &graph, r#"{"Query":"T"}"#).await.0,
        403
    );
    let fresh = token_for(&sim, CONTOSO, GRAPH_SCOPE).await;
    assert_eq!(
        post(&graph_url(&sim), &fresh, r#"{"Query":"T"}"#).await.0,
        200
    );

    // A role the config does not have can be granted too.
    let mut config = SimConfig::demo();
    config.tenants[0].roles = vec!["Incident.Read.All".into()];
    let sim = Simulator::start(config).await.unwrap();
    let t = token_for(&sim, CONTOSO, GRAPH_SCOPE).await;
    assert_eq!(post(&graph_url(&sim), &t, r#"{"Query":"T"}"#).await.0, 403);
    sim.set_threat_hunting_granted(CONTOSO, true);
    let t = token_for(&sim, CONTOSO, GRAPH_SCOPE).await;
    assert_eq!(
        claims(&t)["roles"],
        json!(["Incident.Read.All", "ThreatHunting.Read.All"])
    );
    assert_eq!(post(&graph_url(&sim), &t, r#"{"Query":"T"}"#).await.0, 200);
}

#[tokio::test]
async fn graph_hunting_without_query_is_a_bad_request() {
    let sim = start().await;
    let graph = token_for(&sim, CONTOSO, GRAPH_SCOPE).await;
    for body in [
        r#"{"Timespan":"P1D"}"#,
        r#"{"Query":"  "}"#,
        "{not json",
        "",
    ] {
        let (status, _, answer) = post(&graph_url(&sim), &graph, body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "BadRequest");
        assert!(answer["error"]["innerError"]["request-id"].is_string());
    }
}

#[tokio::test]
async fn graph_hunting_429_then_quota_400_then_rows() {
    let sim = start().await;
    let graph = token_for(&sim, CONTOSO, GRAPH_SCOPE).await;
    sim.fail_hunting_429(CONTOSO, 2, 7);
    sim.fail_hunting_quota(CONTOSO, 1);
    let query = r#"{"Query":"T | take 2"}"#;
    for _ in 0..2 {
        let (status, headers, body) = post(&graph_url(&sim), &graph, query).await;
        assert_eq!(status, 429);
        assert_eq!(headers["retry-after"], "7");
        assert_eq!(body["error"]["code"], "TooManyRequests");
        assert_eq!(body["error"]["message"], "Please retry again later.");
    }
    // Other tenants and other Graph paths are not throttled.
    let other = token_for(&sim, FABRIKAM, GRAPH_SCOPE).await;
    assert_eq!(post(&graph_url(&sim), &other, query).await.0, 200);
    let (status, headers, body) = post(&graph_url(&sim), &graph, query).await;
    assert_eq!(status, 400);
    assert!(!headers.contains_key("retry-after"));
    assert_eq!(body["error"]["code"], "BadRequest");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Query execution has exceeded the allowed limits"));
    let (status, _, body) = post(&graph_url(&sim), &graph, query).await;
    assert_eq!(
        (status, body["results"].as_array().map(Vec::len)),
        (200, Some(2))
    );

    // The same modes through `/_sim/`.
    let resp = client()
        .post(format!("{}/_sim/tenants/{CONTOSO}", sim.base_url()))
        .body(r#"{"hunting_429": 1, "hunting_retry_after": 3, "hunting_quota": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, headers, _) = post(&graph_url(&sim), &graph, query).await;
    assert_eq!(
        (status, &headers["retry-after"]),
        (429, &"3".parse().unwrap())
    );
    assert_eq!(post(&graph_url(&sim), &graph, query).await.0, 400);
    assert_eq!(post(&graph_url(&sim), &graph, query).await.0, 200);
}

#[tokio::test]
async fn legacy_hunting_answers_as_retired_on_request() {
    let sim = start().await;
    let xdr = token(&sim, CONTOSO).await;
    let mde = token_for(&sim, CONTOSO, MDE_SCOPE).await;
    let xdr_url = format!("{}/api/advancedhunting/run", sim.base_url());
    let mde_url = format!("{}/api/advancedqueries/run", sim.base_url());
    let query = r#"{"Query":"T"}"#;
    sim.set_legacy_hunting_retired(CONTOSO, true);
    for (url, token) in [(&xdr_url, &xdr), (&mde_url, &mde)] {
        let (status, _, body) = post(url, token, query).await;
        assert_eq!(status, 410, "{url}: {body}");
        assert_eq!(body["error"]["code"], "Gone");
        assert!(
            body["error"]["target"].is_string(),
            "Defender-shaped: {body}"
        );
    }
    // Graph hunting and the other tenant still work.
    let graph = token_for(&sim, CONTOSO, GRAPH_SCOPE).await;
    assert_eq!(post(&graph_url(&sim), &graph, query).await.0, 200);
    let theirs = token(&sim, FABRIKAM).await;
    assert_eq!(post(&xdr_url, &theirs, query).await.0, 200);
    // Switched back through `/_sim/`.
    let resp = client()
        .post(format!("{}/_sim/tenants/{CONTOSO}", sim.base_url()))
        .body(r#"{"legacy_hunting_retired": false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(post(&xdr_url, &xdr, query).await.0, 200);
}

#[tokio::test]
async fn graph_hunting_streams_many_rows() {
    let sim = start().await;
    let graph = token_for(&sim, CONTOSO, GRAPH_SCOPE).await;
    let mut resp = client()
        .post(graph_url(&sim))
        .bearer_auth(&graph)
        .body(r#"{"Query":"DeviceInfo | take 300000"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.content_length().is_none(), "chunked, not one buffer");
    let (mut total, mut chunks, mut biggest) = (0usize, 0usize, 0usize);
    let mut first = Vec::new();
    let mut last = Vec::new();
    let mut commas = 0usize;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        if first.is_empty() {
            first = chunk.to_vec();
        }
        total += chunk.len();
        chunks += 1;
        biggest = biggest.max(chunk.len());
        // Counted across chunk boundaries too: `last` still holds the previous chunk.
        if last.last() == Some(&b'}') && chunk.first() == Some(&b',') {
            commas += 1;
        }
        commas += chunk.windows(2).filter(|w| w == b"},").count();
        last = chunk.to_vec();
    }
    assert!(total >= 50 * 1000 * 1000, "{total} bytes");
    assert!(chunks > 100, "{chunks} chunks");
    assert!(biggest < 1024 * 1024, "frames stay small: {biggest}");
    assert!(first.starts_with(b"{\"@odata.context\":"));
    assert!(last.ends_with(b"\"ReportId\":300000}]}"));
    // One `},` between rows, plus one closing each of the five schema columns but the last.
    assert_eq!(commas, 300_000 - 1 + 4);
}

#[tokio::test]
async fn a_held_hunting_answer_stops_before_its_frame_until_released() {
    let sim = start().await;
    let graph = token_for(&sim, CONTOSO, GRAPH_SCOPE).await;
    sim.hold_hunting_streams(Some(1));
    let mut resp = client()
        .post(graph_url(&sim))
        .bearer_auth(&graph)
        .body(r#"{"Query":"DeviceInfo | take 2000"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Everything before the held frame arrives; then nothing more until the release.
    let mut got = Vec::new();
    while let Ok(chunk) =
        tokio::time::timeout(std::time::Duration::from_millis(300), resp.chunk()).await
    {
        got.extend_from_slice(&chunk.unwrap().expect("the body is not over while held"));
    }
    let held = String::from_utf8_lossy(&got).into_owned();
    assert!(held.contains("\"ReportId\":512}"), "frame 0 sent");
    assert!(
        !held.contains("\"ReportId\":513}"),
        "frame 1 held: {}",
        held.len()
    );
    sim.release_streams();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    let body: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(body["results"].as_array().unwrap().len(), 2000);
    // The record keeps the small body that was sent.
    let record = sim.api_requests().pop().unwrap();
    assert_eq!(
        record.body.as_deref(),
        Some(&br#"{"Query":"DeviceInfo | take 2000"}"#[..])
    );
    // Answers started after `None` are not held.
    sim.hold_hunting_streams(None);
    let (status, _, body) = post(&graph_url(&sim), &graph, r#"{"Query":"T | take 600"}"#).await;
    assert_eq!(
        (status, body["results"].as_array().map(Vec::len)),
        (200, Some(600))
    );
}
