//! The three API families: Defender for Endpoint and Graph paths, paging by absolute nextLink on
//! each, the token audience each accepts, their error shapes and their limits.

use serde_json::{json, Value};

use super::*;

const MDE_AUD: &str = "https://api.securitycenter.microsoft.com";
const GRAPH_AUD: &str = "https://graph.microsoft.com";

async fn get(url: &str, token: Option<&str>) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

async fn get_json(url: &str, token: &str) -> (u16, Value) {
    let (status, _, text) = get(url, Some(token)).await;
    (status, serde_json::from_str(&text).unwrap())
}

async fn post_json(url: &str, token: &str, body: &str) -> (u16, Value) {
    let resp = client()
        .post(url)
        .bearer_auth(token)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Follows `@odata.nextLink` from `url` to the last page; every link must be absolute on the
/// simulator. Returns the items and the number of pages.
async fn follow(
    sim: &RunningSim,
    url: &str,
    token: &str,
    next_prefix: &str,
) -> (Vec<Value>, usize) {
    let (mut url, mut items, mut pages) = (url.to_owned(), Vec::new(), 0);
    loop {
        let (status, body) = get_json(&url, token).await;
        assert_eq!(status, 200, "{url}: {body}");
        pages += 1;
        items.extend(body["value"].as_array().unwrap().iter().cloned());
        match body["@odata.nextLink"].as_str() {
            Some(next) => {
                let expected = format!("{}{next_prefix}", sim.base_url());
                assert!(
                    next.starts_with(&expected),
                    "{next} should start with {expected}"
                );
                url = next.to_owned();
            }
            None => return (items, pages),
        }
    }
}

#[tokio::test]
async fn mde_paths_page_and_take_mde_or_xdr_tokens_only() {
    let sim = start().await;
    let base = sim.base_url().to_owned();
    let mde = token_for(&sim, CONTOSO, MDE_SCOPE).await;
    assert_eq!(claims(&mde)["aud"], MDE_AUD);

    let (machines, pages) = follow(
        &sim,
        &format!("{base}/api/machines?$top=3"),
        &mde,
        "/api/machines?$top=3&$skip=",
    )
    .await;
    assert_eq!((machines.len(), pages), (10, 4));
    let (alerts, pages) = follow(
        &sim,
        &format!("{base}/api/alerts?$top=20&$expand=evidence"),
        &mde,
        "/api/alerts?$top=20&$skip=",
    )
    .await;
    assert_eq!((alerts.len(), pages), (50, 3));
    let id = machines[0]["id"].as_str().unwrap();
    let (status, one) = get_json(&format!("{base}/api/machines/{id}"), &mde).await;
    assert_eq!((status, one["id"].as_str()), (200, Some(id)));
    let (status, body) = post_json(
        &format!("{base}/api/advancedqueries/run"),
        &mde,
        r#"{"Query":"DeviceInfo | take 2"}"#,
    )
    .await;
    assert_eq!(
        (status, body["Results"].as_array().map(Vec::len)),
        (200, Some(2))
    );
    assert!(sim
        .api_requests()
        .iter()
        .all(|r| r.status == 200 && r.aud.as_deref() == Some(MDE_AUD)));

    // Defender serves MDE on the XDR host too: an XDR token reaches the same paths.
    let xdr = token(&sim, CONTOSO).await;
    assert_eq!(
        get(&format!("{base}/api/machines"), Some(&xdr)).await.0,
        200
    );
    // An MDE token is no XDR token, and a Graph token neither.
    let graph = token_for(&sim, CONTOSO, GRAPH_SCOPE).await;
    for (path, token) in [
        ("/api/incidents", &mde),
        ("/api/machines", &graph),
        ("/api/alerts", &graph),
    ] {
        let (status, body) = get_json(&format!("{base}{path}"), token).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(body["error"]["code"], "Unauthorized");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("audience"));
    }
    let (status, _) = post_json(
        &format!("{base}/api/advancedhunting/run"),
        &mde,
        r#"{"Query":"x"}"#,
    )
    .await;
    assert_eq!(status, 401);
    let last = sim.api_requests().pop().unwrap();
    assert_eq!((last.status, last.aud.as_deref()), (401, Some(MDE_AUD)));
    // The test helpers take any audience, so they can be reached through every API.
    assert_eq!(
        get(&format!("{base}/api/_test/headers"), Some(&graph))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn graph_collections_page_with_the_link_before_the_values() {
    let sim = start().await;
    let base = sim.base_url().to_owned();
    let graph = token_for(&sim, FABRIKAM, GRAPH_SCOPE).await;

    let url = format!("{base}/v1.0/security/incidents?$top=10&$count=true");
    let (status, _, text) = get(&url, Some(&graph)).await;
    assert_eq!(status, 200, "{text}");
    // Graph's key order: context, count, nextLink, then value.
    let at = |key: &str| text.find(key).unwrap();
    assert!(at("@odata.context") < at("@odata.count"));
    assert!(at("@odata.count") < at("@odata.nextLink") && at("@odata.nextLink") < at("\"value\""));
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["@odata.context"],
        format!("{base}/v1.0/$metadata#security/incidents")
    );
    assert_eq!(body["@odata.count"], 25);
    assert_eq!(
        body["@odata.nextLink"],
        format!("{base}/v1.0/security/incidents?$top=10&$skip=10&$count=true")
    );

    let (incidents, pages) = follow(
        &sim,
        &url,
        &graph,
        "/v1.0/security/incidents?$top=10&$skip=",
    )
    .await;
    assert_eq!((incidents.len(), pages), (25, 3));
    let first = &incidents[0];
    assert!(first["id"].is_string());
    assert!(first["displayName"].as_str().unwrap().contains("fabrikam"));
    assert_eq!(first["tenantId"], FABRIKAM);
    for key in ["createdDateTime", "lastUpdateDateTime", "incidentWebUrl"] {
        assert!(first[key].is_string(), "{key}: {first}");
    }
    let enums = |key: &str, allowed: &[&str]| {
        incidents
            .iter()
            .all(|i| allowed.contains(&i[key].as_str().unwrap()))
    };
    assert!(enums("status", &["active", "inProgress", "resolved"]));
    assert!(enums(
        "severity",
        &["informational", "low", "medium", "high"]
    ));

    let (alerts, pages) = follow(
        &sim,
        &format!("{base}/v1.0/security/alerts_v2?$top=20"),
        &graph,
        "/v1.0/security/alerts_v2?$top=20&$skip=",
    )
    .await;
    assert_eq!((alerts.len(), pages), (50, 3));
    assert_eq!(
        alerts[0]["evidence"][0]["@odata.type"],
        "#microsoft.graph.security.deviceEvidence"
    );
    assert_eq!(alerts[0]["serviceSource"], "microsoftDefenderForEndpoint");

    // One of each by id; an unknown id and an oversized page are Graph-shaped errors.
    let id = first["id"].as_str().unwrap();
    let (status, one) = get_json(&format!("{base}/v1.0/security/incidents/{id}"), &graph).await;
    assert_eq!(
        (status, one["displayName"].clone()),
        (200, first["displayName"].clone())
    );
    let id = alerts[7]["id"].as_str().unwrap();
    let (status, one) = get_json(&format!("{base}/v1.0/security/alerts_v2/{id}"), &graph).await;
    assert_eq!((status, one["id"].as_str()), (200, Some(id)));
    let (status, body) = get_json(&format!("{base}/v1.0/security/incidents/0"), &graph).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NotFound"))
    );
    let (status, body) = get_json(&format!("{base}/v1.0/security/incidents?$top=51"), &graph).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("BadRequest"))
    );
    assert!(body["error"]["innerError"]["request-id"].is_string());

    assert!(sim
        .api_requests()
        .iter()
        .all(|r| r.aud.as_deref() == Some(GRAPH_AUD) && r.tid.as_deref() == Some(FABRIKAM)));
}

#[tokio::test]
async fn graph_paths_need_the_graph_audience_and_answer_in_graph_shape() {
    let sim = start().await;
    let url = format!("{}/v1.0/security/incidents", sim.base_url());
    let xdr = token(&sim, CONTOSO).await;
    let mde = token_for(&sim, CONTOSO, MDE_SCOPE).await;
    for token in [
        Some(xdr.as_str()),
        Some(mde.as_str()),
        None,
        Some("not.a.token"),
    ] {
        let (status, _, text) = get(&url, token).await;
        assert_eq!(status, 401, "{text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            body["error"]["code"], "InvalidAuthenticationToken",
            "{body}"
        );
        assert!(body["error"]["message"].is_string());
        assert!(body["error"]["innerError"]["date"].is_string());
    }
    let auds: Vec<Option<String>> = sim.api_requests().into_iter().map(|r| r.aud).collect();
    assert_eq!(
        auds,
        [
            Some("https://api.security.microsoft.com".to_owned()),
            Some(MDE_AUD.to_owned()),
            None,
            None
        ]
    );
}

#[tokio::test]
async fn graph_hunting_query() {
    let sim = start().await;
    let url = format!("{}/v1.0/security/runHuntingQuery", sim.base_url());
    let graph = token_for(&sim, CONTOSO, GRAPH_SCOPE).await;
    let (status, body) =
        post_json(&url, &graph, r#"{"Query":"DeviceProcessEvents | take 4"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["schema"][0],
        json!({"name": "Timestamp", "type": "DateTime"})
    );
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert!(results[0]["DeviceName"]
        .as_str()
        .unwrap()
        .ends_with(".contoso.local"));
    assert!(body["@odata.context"]
        .as_str()
        .unwrap()
        .starts_with(sim.base_url()));
    // Graph reads property names without regard to case.
    let (status, body) = post_json(&url, &graph, r#"{"query":"x"}"#).await;
    assert_eq!(
        (status, body["results"].as_array().map(Vec::len)),
        (200, Some(5))
    );
    let (status, body) = post_json(&url, &graph, "{not json").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("BadRequest"))
    );
    assert_eq!(get(&url, Some(&graph)).await.0, 405);
    let (status, _, text) = get(
        &format!("{}/v1.0/security/nothing", sim.base_url()),
        Some(&graph),
    )
    .await;
    assert_eq!(status, 404, "{text}");
}

#[tokio::test]
async fn each_family_has_its_own_limits() {
    let sim = start().await;
    let base = sim.base_url().to_owned();
    let graph = token_for(&sim, CONTOSO, GRAPH_SCOPE).await;
    let mde = token_for(&sim, CONTOSO, MDE_SCOPE).await;
    let graph_url = format!("{base}/v1.0/security/incidents?$top=1");
    for i in 0..150 {
        assert_eq!(
            get(&graph_url, Some(&graph)).await.0,
            200,
            "graph request {i}"
        );
    }
    let (status, headers, text) = get(&graph_url, Some(&graph)).await;
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "TooManyRequests");
    assert!(
        body["error"]["innerError"].is_object(),
        "Graph-shaped: {body}"
    );

    let mde_url = format!("{base}/api/machines?$top=1");
    for i in 0..100 {
        assert_eq!(get(&mde_url, Some(&mde)).await.0, 200, "mde request {i}");
    }
    let (status, _, text) = get(&mde_url, Some(&mde)).await;
    assert_eq!(status, 429);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(
        body["error"]["target"].is_string(),
        "Defender-shaped: {body}"
    );

    // Neither touched the XDR incidents class, nor the other tenant's Graph budget.
    let xdr = token(&sim, CONTOSO).await;
    assert_eq!(
        get(&format!("{base}/api/incidents?$top=1"), Some(&xdr))
            .await
            .0,
        200
    );
    let other = token_for(&sim, FABRIKAM, GRAPH_SCOPE).await;
    assert_eq!(get(&graph_url, Some(&other)).await.0, 200);
}
