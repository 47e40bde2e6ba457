//! The admin API's `/tenants` and the `[tenants] file` it writes (issue 15): tenants added and
//! removed without editing the config, validated like it, written atomically, applied like a
//! reload, shared by replicas that watch the same file.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use defender_proxy::sim::SimConfig;
use serde_json::{json, Value};
use support::{error_code, eventually, Harness, TempDir, CONTOSO, FABRIKAM};

const ADMIN_KEY: &str = "dpk_test-admin-key-for-the-tenants-api";

/// The proxy from a config file in `dir` with only contoso, the tenants file `tenants.toml`
/// next to it, and `extra` appended (say `[reload] watch = true`).
async fn start(dir: &TempDir, file: &str, extra: &str) -> Harness {
    let sim = SimConfig::demo();
    let secret = dir.path("secret");
    std::fs::write(&secret, &sim.client_secret).unwrap();
    let path = dir.path(file);
    let key_hash = defender_proxy::inbound::auth::key_sha256_hex(ADMIN_KEY);
    let contoso = sim
        .tenants
        .iter()
        .find(|t| t.name == CONTOSO)
        .unwrap()
        .id
        .clone();
    let tenants = dir.path("tenants.toml");
    Harness::start_file(sim.clone(), |base| {
        let text = format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n\
             [admin]\naddr = \"127.0.0.1:0\"\nkey_sha256 = \"{key_hash}\"\n\
             [app]\nclient_id = \"{}\"\nclient_secret = {{ file = \"{}\" }}\n\
             [cloud]\nauthority = \"{base}\"\napi = \"{base}\"\n\
             [tenants]\nfile = \"{}\"\n\
             [[tenant]]\nname = \"{CONTOSO}\"\nid = \"{contoso}\"\n{extra}\n",
            sim.client_id,
            secret.display(),
            tenants.display(),
        );
        std::fs::write(&path, text).unwrap();
        path.clone()
    })
    .await
}

fn admin_url(h: &Harness, path: &str) -> String {
    format!("http://{}{}", h.admin, path)
}

async fn put(h: &Harness, name: &str, body: &str) -> reqwest::Response {
    h.http
        .put(admin_url(h, &format!("/tenants/{name}")))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn delete(h: &Harness, name: &str) -> reqwest::Response {
    h.http
        .delete(admin_url(h, &format!("/tenants/{name}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
}

async fn get_json(h: &Harness, path: &str) -> (u16, Value) {
    let response = h
        .http
        .get(admin_url(h, path))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn fabrikam_body(h: &Harness) -> String {
    json!({ "id": h.tenant_id(FABRIKAM) }).to_string()
}

#[tokio::test]
async fn a_put_tenant_is_served_with_its_own_token_and_a_deleted_one_is_gone() {
    let dir = TempDir::new("tenants-put");
    let h = start(&dir, "proxy.toml", "").await;
    assert_eq!(h.get("/contoso/api/incidents").await.status(), 200);
    assert_eq!(h.get("/fabrikam/api/incidents").await.status(), 404);
    let contoso_tokens = h.sim.token_request_count(&h.tenant_id(CONTOSO));

    let created = put(&h, FABRIKAM, &fabrikam_body(&h)).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["name"], FABRIKAM);
    assert_eq!(created["source"], "file");
    assert_eq!(h.get("/fabrikam/api/incidents").await.status(), 200);
    let fabrikam = h.tenant_id(FABRIKAM);
    assert!(h.sim.token_request_count(&fabrikam) >= 1);
    assert!(h
        .sim
        .api_requests()
        .iter()
        .any(|r| r.tid.as_deref() == Some(fabrikam.as_str())));
    // The same PUT again replaces it.
    assert_eq!(put(&h, FABRIKAM, &fabrikam_body(&h)).await.status(), 200);

    let (status, list) = get_json(&h, "/tenants").await;
    assert_eq!(status, 200);
    let names: Vec<(&str, &str)> = list["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["source"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [(CONTOSO, "config"), (FABRIKAM, "file")]);
    let (status, one) = get_json(&h, "/tenants/fabrikam").await;
    assert_eq!((status, one["id"].as_str()), (200, Some(fabrikam.as_str())));
    assert_eq!(get_json(&h, "/tenants/acme").await.0, 404);

    // The file parses as a tenants file, written by the proxy.
    let text = std::fs::read_to_string(dir.path("tenants.toml")).unwrap();
    assert!(text.contains(&fabrikam), "{text}");

    assert_eq!(delete(&h, FABRIKAM).await.status(), 204);
    let gone = h.get("/fabrikam/api/incidents").await;
    assert_eq!(gone.status(), 404);
    assert_eq!(error_code(&gone.json().await.unwrap()), "UnknownTenant");
    assert_eq!(delete(&h, FABRIKAM).await.status(), 404);
    // Other tenants kept their token through both changes.
    assert_eq!(h.get("/contoso/api/incidents").await.status(), 200);
    assert_eq!(
        h.sim.token_request_count(&h.tenant_id(CONTOSO)),
        contoso_tokens
    );
    h.stop().await;
}

#[tokio::test]
async fn a_request_in_flight_for_a_deleted_tenant_completes() {
    let dir = TempDir::new("tenants-inflight");
    let h = start(&dir, "proxy.toml", "").await;
    assert_eq!(put(&h, FABRIKAM, &fabrikam_body(&h)).await.status(), 201);
    let fabrikam = h.tenant_id(FABRIKAM);
    h.sim.set_api_delay(&fabrikam, Duration::from_millis(800));
    let url = h.url("/fabrikam/api/incidents");
    let http = h.http.clone();
    let in_flight = tokio::spawn(async move { http.get(url).send().await.unwrap().status() });
    // Its token was fetched: the request has its tenant and is on its way upstream.
    eventually(Duration::from_secs(10), "the token request", || async {
        (h.sim.token_request_count(&fabrikam) >= 1).then_some(())
    })
    .await;
    assert_eq!(delete(&h, FABRIKAM).await.status(), 204);
    assert_eq!(in_flight.await.unwrap(), 200);
    assert_eq!(h.get("/fabrikam/api/incidents").await.status(), 404);
    h.stop().await;
}

#[tokio::test]
async fn the_tenants_file_survives_a_restart() {
    let dir = TempDir::new("tenants-restart");
    let h = start(&dir, "proxy.toml", "").await;
    assert_eq!(put(&h, FABRIKAM, &fabrikam_body(&h)).await.status(), 201);
    h.stop().await;
    let h = start(&dir, "proxy.toml", "").await;
    assert_eq!(h.get("/fabrikam/api/incidents").await.status(), 200);
    let (_, one) = get_json(&h, "/tenants/fabrikam").await;
    assert_eq!(one["source"], "file");
    h.stop().await;
}

#[tokio::test]
async fn concurrent_puts_both_land() {
    let dir = TempDir::new("tenants-concurrent");
    let h = start(&dir, "proxy.toml", "").await;
    let ids = [
        "22222222-aaaa-4aaa-8aaa-000000000001",
        "22222222-aaaa-4aaa-8aaa-000000000002",
    ];
    let bodies: Vec<String> = ids
        .iter()
        .map(|id| json!({ "id": id }).to_string())
        .collect();
    let (a, b) = tokio::join!(put(&h, "alpha", &bodies[0]), put(&h, "beta", &bodies[1]));
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (201, 201));
    let text = std::fs::read_to_string(dir.path("tenants.toml")).unwrap();
    assert!(ids.iter().all(|id| text.contains(id)), "{text}");
    for name in ["alpha", "beta"] {
        assert_eq!(get_json(&h, &format!("/tenants/{name}")).await.0, 200);
    }
    h.stop().await;
}

#[tokio::test]
async fn a_write_that_fails_changes_nothing_and_answers_500() {
    let dir = TempDir::new("tenants-write-error");
    let h = start(&dir, "proxy.toml", "").await;
    assert_eq!(
        put(
            &h,
            "alpha",
            &json!({"id": "22222222-aaaa-4aaa-8aaa-000000000001"}).to_string()
        )
        .await
        .status(),
        201
    );
    let before = std::fs::read_to_string(dir.path("tenants.toml")).unwrap();
    // The temporary file the write goes through cannot be made (a folder is in its place):
    // this works as root too, where a read-only folder would not stop the write.
    let temp = dir.path(&format!(".tenants.toml.{}.tmp", std::process::id()));
    std::fs::create_dir_all(&temp).unwrap();
    let failed = put(&h, FABRIKAM, &fabrikam_body(&h)).await;
    assert_eq!(failed.status(), 500);
    assert_eq!(error_code(&failed.json().await.unwrap()), "InternalError");
    assert_eq!(
        std::fs::read_to_string(dir.path("tenants.toml")).unwrap(),
        before
    );
    assert_eq!(h.get("/fabrikam/api/incidents").await.status(), 404);
    assert_eq!(get_json(&h, "/tenants/alpha").await.0, 200);
    std::fs::remove_dir(&temp).unwrap();
    assert_eq!(put(&h, FABRIKAM, &fabrikam_body(&h)).await.status(), 201);
    h.stop().await;
}

#[tokio::test]
async fn no_or_a_wrong_admin_key_is_401_and_writes_nothing() {
    let dir = TempDir::new("tenants-auth");
    let h = start(&dir, "proxy.toml", "").await;
    let url = admin_url(&h, "/tenants/fabrikam");
    let body = fabrikam_body(&h);
    for auth in [None, Some("Bearer wrong-key"), Some("Basic Zm9vOmJhcg==")] {
        let mut request = h.http.put(&url).body(body.clone());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let refused = request.send().await.unwrap();
        assert_eq!(refused.status(), 401, "{auth:?}");
        assert_eq!(error_code(&refused.json().await.unwrap()), "Unauthorized");
        let refused = h
            .http
            .delete(admin_url(&h, "/tenants/contoso"))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
    }
    // A wrong key is refused for reading too, even on loopback.
    let wrong = h
        .http
        .get(admin_url(&h, "/tenants"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(!dir.path("tenants.toml").exists());
    assert_eq!(h.get("/fabrikam/api/incidents").await.status(), 404);
    h.stop().await;
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field_and_writes_nothing() {
    let dir = TempDir::new("tenants-bad-input");
    let h = start(&dir, "proxy.toml", "").await;
    let contoso = h.tenant_id(CONTOSO);
    let big = json!({ "id": "x".repeat(70 * 1024) }).to_string();
    let cases: [(&str, String, &str); 7] = [
        ("acme", "{not json".to_owned(), "not a tenant"),
        (
            "acme",
            json!({"id": "22222222-aaaa-4aaa-8aaa-000000000001", "colour": 1}).to_string(),
            "colour",
        ),
        (
            "acme",
            json!({"id": "not-a-guid"}).to_string(),
            "id: `not-a-guid` is not a GUID",
        ),
        (
            "api",
            json!({"id": "22222222-aaaa-4aaa-8aaa-000000000001"}).to_string(),
            "reserved",
        ),
        (
            "acme",
            json!({"id": contoso}).to_string(),
            "is already the id of tenant[0] of the config file",
        ),
        (
            "acme",
            json!({"id": "22222222-aaaa-4aaa-8aaa-000000000001", "app": "nope"}).to_string(),
            "app",
        ),
        ("acme", big, "larger than 64 KiB"),
    ];
    for (name, body, says) in cases {
        let refused = put(&h, name, &body).await;
        assert_eq!(refused.status(), 400, "{name} {says}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(error_code(&body), "BadRequest");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message:?} should say {says:?}");
    }
    assert!(!dir.path("tenants.toml").exists());
    h.stop().await;
}

#[tokio::test]
async fn tenants_of_the_config_file_are_read_only_here() {
    let dir = TempDir::new("tenants-readonly");
    let h = start(&dir, "proxy.toml", "").await;
    let body = json!({ "id": h.tenant_id(CONTOSO) }).to_string();
    let refused = put(&h, CONTOSO, &body).await;
    assert_eq!(refused.status(), 409);
    assert_eq!(error_code(&refused.json().await.unwrap()), "Conflict");
    assert_eq!(delete(&h, CONTOSO).await.status(), 409);
    assert_eq!(h.get("/contoso/api/incidents").await.status(), 200);
    h.stop().await;
}

#[tokio::test]
async fn a_change_on_one_replica_is_served_by_another_that_watches_the_same_file() {
    let dir = TempDir::new("tenants-replicas");
    let a = start(&dir, "a.toml", "[reload]\nwatch = true\n").await;
    let b = start(&dir, "b.toml", "[reload]\nwatch = true\n").await;
    assert_eq!(put(&a, FABRIKAM, &fabrikam_body(&a)).await.status(), 201);
    // The watcher looks every 2 s: served well within 10 s.
    eventually(
        Duration::from_secs(10),
        "replica b serves fabrikam",
        || async { (b.get("/fabrikam/api/incidents").await.status() == 200).then_some(()) },
    )
    .await;
    assert_eq!(delete(&a, FABRIKAM).await.status(), 204);
    eventually(
        Duration::from_secs(10),
        "replica b forgets fabrikam",
        || async { (b.get("/fabrikam/api/incidents").await.status() == 404).then_some(()) },
    )
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn get_tenants_shows_a_failing_tenants_aadsts_code_and_consent_link() {
    let dir = TempDir::new("tenants-status");
    let h = start(&dir, "proxy.toml", "").await;
    let fabrikam = h.tenant_id(FABRIKAM);
    h.sim.set_consent(&fabrikam, false);
    assert_eq!(put(&h, FABRIKAM, &fabrikam_body(&h)).await.status(), 201);
    assert_eq!(h.get("/fabrikam/api/incidents").await.status(), 503);
    assert_eq!(h.get("/contoso/api/incidents").await.status(), 200);

    let (status, one) = get_json(&h, "/tenants/fabrikam").await;
    assert_eq!(status, 200);
    let token = &one["tokens"][0];
    assert_eq!(token["state"], "failing", "{one}");
    let code = token["error"]["code"].as_str().unwrap();
    assert!(code.starts_with("AADSTS"), "{token}");
    assert!(!token["error"]["meaning"].as_str().unwrap().is_empty());
    let consent = token["consent_url"].as_str().unwrap();
    assert!(
        consent.contains("adminconsent") && consent.contains(&fabrikam),
        "{consent}"
    );
    assert_eq!(one["requests"]["errors"], 1);
    assert_eq!(one["health"], "failing");

    let (_, contoso) = get_json(&h, "/tenants/contoso").await;
    assert_eq!(contoso["tokens"][0]["state"], "valid", "{contoso}");
    assert!(contoso["tokens"][0]["expires_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert!(contoso["requests"]["last_at"].is_string());
    assert!(contoso["rate_limit"]["windows"].is_array());
    h.stop().await;
}

#[tokio::test]
async fn every_change_is_audited_with_who_and_the_admin_key_is_never_logged() {
    let (logs, _guard) = support::Logs::capture();
    let dir = TempDir::new("tenants-audit");
    let audit = dir.path("audit.log");
    let h = start(
        &dir,
        "proxy.toml",
        &format!("[audit]\nfile = \"{}\"\n", audit.display()),
    )
    .await;
    assert_eq!(put(&h, FABRIKAM, &fabrikam_body(&h)).await.status(), 201);
    assert_eq!(put(&h, FABRIKAM, &fabrikam_body(&h)).await.status(), 200);
    assert_eq!(delete(&h, FABRIKAM).await.status(), 204);
    let refused = h
        .http
        .delete(admin_url(&h, "/tenants/x"))
        .bearer_auth("dpk_wrong-key")
        .send();
    assert_eq!(refused.await.unwrap().status(), 401);
    h.proxy
        .snapshot
        .load()
        .audit
        .as_ref()
        .unwrap()
        .flush()
        .await;

    let text = std::fs::read_to_string(&audit).unwrap();
    let changes: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l.get("event").is_some())
        .collect();
    let events: Vec<&str> = changes
        .iter()
        .map(|c| c["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["tenant_created", "tenant_replaced", "tenant_deleted"]
    );
    let hash = defender_proxy::inbound::auth::key_sha256_hex(ADMIN_KEY);
    for change in &changes {
        assert_eq!(change["tenant"], FABRIKAM);
        assert_eq!(change["who"], format!("admin key sha256:{}", &hash[..8]));
    }
    assert_eq!(
        logs.messages("tenants changed").len(),
        3,
        "the log was captured"
    );
    let everything = format!("{text}{:?}", logs.lines());
    assert!(!everything.contains(ADMIN_KEY) && !everything.contains("dpk_wrong-key"));
    assert!(!everything.contains(&hash), "not even the whole hash");
    h.stop().await;
}
