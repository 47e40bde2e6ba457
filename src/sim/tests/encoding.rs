//! The `gzip_json` mode and `/api/_test/bigjson`: encoded and very large JSON bodies, both
//! streamed.

use std::io::Read as _;

use serde_json::{json, Value};

use super::*;

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

async fn get(url: &str, token: &str, gzip: bool) -> reqwest::Response {
    let mut req = client().get(url).bearer_auth(token);
    if gzip {
        req = req.header("accept-encoding", "br, gzip");
    }
    req.send().await.unwrap()
}

async fn control(sim: &RunningSim, body: Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{}/_sim/config", sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn gzip_json_encodes_successful_json_for_clients_that_accept_it() {
    let sim = start().await;
    let t = token(&sim, CONTOSO).await;
    let url = format!("{}/api/incidents?$top=10", sim.base_url());
    // Off by default: identity even when gzip is offered.
    let resp = get(&url, &t, true).await;
    assert!(resp.headers().get("content-encoding").is_none());
    let plain = resp.bytes().await.unwrap();

    sim.set_gzip_json(true);
    assert!(sim.gzip_json());
    let resp = get(&url, &t, true).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert_eq!(resp.headers()["vary"], "accept-encoding");
    assert!(resp.headers().get("content-length").is_none());
    let encoded = resp.bytes().await.unwrap();
    assert_eq!(&encoded[..2], [0x1f, 0x8b], "gzip magic");
    let decoded = gunzip(&encoded);
    assert_eq!(decoded, plain, "same document, only encoded");
    let body: Value = serde_json::from_slice(&decoded).unwrap();
    assert!(body["@odata.nextLink"]
        .as_str()
        .unwrap()
        .starts_with(sim.base_url()));

    // Graph collections too; not for a client that does not offer gzip, nor for errors.
    let graph = token_for(&sim, CONTOSO, GRAPH_SCOPE).await;
    let graph_url = format!("{}/v1.0/security/incidents?$top=5", sim.base_url());
    let resp = get(&graph_url, &graph, true).await;
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let body: Value = serde_json::from_slice(&gunzip(&resp.bytes().await.unwrap())).unwrap();
    assert_eq!(body["value"].as_array().unwrap().len(), 5);
    let resp = get(&url, &t, false).await;
    assert!(resp.headers().get("content-encoding").is_none());
    assert_eq!(resp.bytes().await.unwrap(), plain);
    let resp = get(&url, "not.a.token", true).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("content-encoding").is_none());
    // `q=0` refuses gzip.
    let resp = client()
        .get(&url)
        .bearer_auth(&t)
        .header("accept-encoding", "gzip;q=0, identity")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn gzip_json_over_the_control_endpoint_and_reset() {
    let mut config = SimConfig::demo();
    config.gzip_json = true;
    let sim = Simulator::start(config).await.unwrap();
    let info = |sim: &RunningSim| {
        let url = format!("{}/_sim", sim.base_url());
        async move {
            let body: Value = client()
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["gzip_json"].clone()
        }
    };
    assert_eq!(info(&sim).await, true);
    assert_eq!(control(&sim, json!({"gzip_json": false})).await.0, 200);
    assert!(!sim.gzip_json());
    assert_eq!(info(&sim).await, false);
    let (status, body) = control(&sim, json!({"gzip": true})).await;
    assert_eq!(status, 400, "{body}");
    // Reset restores the configured value.
    sim.reset_all();
    assert!(sim.gzip_json());
}

#[tokio::test]
async fn bigjson_is_exactly_sized_full_of_absolute_links() {
    let sim = start().await;
    let t = token(&sim, CONTOSO).await;
    let base = sim.base_url().to_owned();
    let resp = get(&format!("{base}/api/_test/bigjson?pages=4"), &t, false).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(4 * 65_536));
    let text = resp.text().await.unwrap();
    assert_eq!(text.len(), 4 * 65_536);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["value"].as_array().unwrap().len(), 4);
    assert_eq!(
        body["@odata.nextLink"],
        format!("{base}/api/_test/bigjson?pages=4&$skip=4")
    );
    // 2 links per item plus the document's own 2, every one on the simulator's host.
    assert_eq!(text.matches("\"@odata.nextLink\":").count(), 5);
    assert_eq!(text.matches("\"@odata.context\":").count(), 5);
    assert_eq!(text.matches(&format!("\"{base}/")).count(), 10);

    for bad in ["", "?pages=0", "?pages=x", "?pages=65537"] {
        let resp = get(&format!("{base}/api/_test/bigjson{bad}"), &t, false).await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn bigjson_is_generated_as_it_is_read_also_when_gzipped() {
    let sim = start().await;
    let t = token(&sim, CONTOSO).await;
    // 4 GiB: only a body made as it is read can answer its first bytes at once.
    let url = format!("{}/api/_test/bigjson?pages=65536", sim.base_url());
    let mut resp = get(&url, &t, false).await;
    assert_eq!(resp.content_length(), Some(1 << 32));
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"{\"@odata.context\":"));
    drop(resp);

    sim.set_gzip_json(true);
    let mut resp = get(&url, &t, true).await;
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let first = resp.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..2], [0x1f, 0x8b]);
    drop(resp);

    // A small one decodes to exactly the identity document.
    let url = format!("{}/api/_test/bigjson?pages=16", sim.base_url());
    let encoded = get(&url, &t, true).await.bytes().await.unwrap();
    sim.set_gzip_json(false);
    let plain = get(&url, &t, true).await.bytes().await.unwrap();
    assert_eq!(plain.len(), 16 * 65_536);
    assert_eq!(gunzip(&encoded), plain);
}
