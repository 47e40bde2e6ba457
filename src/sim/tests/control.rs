//! `/_sim/` control endpoints and shutdown.

use serde_json::{json, Value};

use super::*;
use crate::sim::TokenEndpoint;

async fn post_json(url: &str, body: Value) -> (u16, Value) {
    let resp = client().post(url).json(&body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn tenant_modes_records_and_reset_over_http() {
    let sim = start().await;
    let base = sim.base_url().to_owned();
    let (status, _) = post_json(
        &format!("{base}/_sim/tenants/{CONTOSO}"),
        json!({"consent": false}),
    )
    .await;
    assert_eq!(status, 200);
    let url = sim.token_url(CONTOSO, TokenEndpoint::V2);
    let (status, _, body) = post_form(
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &sim.config().client_id),
            ("scope", SCOPE),
            ("client_secret", &sim.config().client_secret),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error_codes"][0].as_u64()),
        (400, Some(700016))
    );
    let (status, body) = post_json(
        &format!("{base}/_sim/tenants/{CONTOSO}"),
        json!({"bogus": 1}),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let t = token(&sim, FABRIKAM).await;
    client()
        .get(format!("{base}/api/incidents"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let records: Value = client()
        .get(format!("{base}/_sim/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(records["token_requests"].as_array().unwrap().len(), 2);
    assert_eq!(records["token_requests"][0]["error_code"], 700016);
    let api = &records["api_requests"][0];
    assert_eq!(api["tid"], FABRIKAM);
    assert_eq!(
        api["headers"]["authorization"],
        format!("Bearer …{}", &t[t.len() - 4..])
    );
    assert!(!records.to_string().contains(&t));

    let info: Value = client()
        .get(format!("{base}/_sim"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["tenants"][0]["name"], "contoso");
    assert!(!info.to_string().contains(&sim.config().client_secret));

    let (status, _) = post_json(&format!("{base}/_sim/reset"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (sim.api_request_count(), sim.token_requests().len()),
        (0, 0)
    );
    token(&sim, CONTOSO).await; // consent restored by the reset
}

#[tokio::test]
async fn release_over_http_and_shutdown_with_an_open_stream() {
    let sim = start().await;
    let t = token(&sim, CONTOSO).await;
    let base = sim.base_url().to_owned();
    let mut first = client()
        .get(format!("{base}/api/_test/stream"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(first.chunk().await.unwrap().unwrap(), "{\"part\":1}\n");
    let (status, _) = post_json(&format!("{base}/_sim/release"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(first.chunk().await.unwrap().unwrap(), "{\"part\":2}\n");

    let mut pending = client()
        .get(format!("{base}/api/_test/stream"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(pending.chunk().await.unwrap().unwrap(), "{\"part\":1}\n");
    sim.shutdown().await.unwrap();
    assert!(
        pending.chunk().await.is_err(),
        "the open stream is cut, not left hanging"
    );
    assert!(client().get(format!("{base}/_sim")).send().await.is_err());
}
