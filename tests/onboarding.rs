//! Consent onboarding (issue 15, item 3), against the simulator: the proxy started from a config
//! file with `[onboarding]` and a `[tenants] file` in a temp dir, the consent callback driven as
//! a customer's browser would after Entra ID's redirect.
//!
//! The callback with a forged `tenant` (unknown, not consented, a token naming another tenant),
//! a bad, tampered or expired state, a declined consent, or too many tries adds nothing: the
//! tenants file is never created, and the page says why. A good callback adds the tenant, which
//! is then served with its own token.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use defender_proxy::onboarding::new_tenant_link;
use defender_proxy::sim::{SimConfig, SimTenant, DEMO_ROLES};
use support::{Harness, Logs};

const BIN: &str = env!("CARGO_BIN_EXE_defender-proxy");
/// A customer that consented to the main app and is not in the proxy's config yet.
const NEWCO_ID: &str = "44444444-0000-4000-8000-00000000c001";
/// A tenant the simulated Entra ID does not know.
const UNKNOWN_ID: &str = "44444444-0000-4000-8000-00000000dead";
const STATE_KEY: &str = "an-onboarding-state-key-of-32-bytes-at-least";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "defender-proxy-onboarding-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The demo simulator plus `newco`, which the proxy's config does not list.
fn sim_config() -> SimConfig {
    let mut config = SimConfig::demo();
    config.tenants.push(SimTenant {
        name: "newco".into(),
        id: NEWCO_ID.into(),
        roles: DEMO_ROLES.iter().map(|r| r.to_string()).collect(),
    });
    config
}

/// The config file: the demo app on the simulator, `contoso` only, `[tenants] file` and
/// `[onboarding]` in `dir`, then `extra`.
fn config_text(sim: &SimConfig, base: &str, dir: &Path, extra: &str) -> String {
    std::fs::write(dir.join("secret"), &sim.client_secret).unwrap();
    std::fs::write(dir.join("state_key"), STATE_KEY).unwrap();
    format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [app]\nclient_id = \"{client}\"\nclient_secret = {{ file = \"{dir}/secret\" }}\n\
         [cloud]\nauthority = \"{base}\"\napi = \"{base}\"\n\
         [tenants]\nfile = \"{dir}/tenants.toml\"\n\
         [onboarding]\naddr = \"127.0.0.1:0\"\n\
         redirect_uri = \"http://127.0.0.1/consent/callback\"\n\
         state_key = {{ file = \"{dir}/state_key\" }}\n{extra}\n\
         [[tenant]]\nname = \"contoso\"\nid = \"{contoso}\"\n",
        client = sim.client_id,
        dir = dir.display(),
        contoso = sim.tenants[0].id,
    )
}

struct Onboarding {
    h: Harness,
    dir: PathBuf,
}

impl Onboarding {
    async fn start(name: &str, extra: &str) -> Onboarding {
        let dir = temp_dir(name);
        let sim = sim_config();
        let path = dir.join("proxy.toml");
        let h = Harness::start_file(sim.clone(), |base| {
            std::fs::write(&path, config_text(&sim, base, &dir, extra)).unwrap();
            path.clone()
        })
        .await;
        Onboarding { h, dir }
    }

    /// The state of `consent-url --new name`'s link, as if issued at `issued`.
    fn state(&self, name: &str, issued: SystemTime) -> String {
        let link = new_tenant_link(&self.h.config, name, None, None, issued).unwrap();
        state_of(&link)
    }

    /// `GET /consent/callback?query` on the onboarding listener: status and page.
    async fn callback(&self, query: &str) -> (u16, String, reqwest::header::HeaderMap) {
        let addr = self.h.onboarding.expect("an onboarding listener");
        get(
            &self.h.http,
            &format!("http://{addr}/consent/callback?{query}"),
        )
        .await
    }

    async fn consent(&self, tenant: &str, state: &str) -> (u16, String) {
        let (status, page, _) = self
            .callback(&format!("admin_consent=True&tenant={tenant}&state={state}"))
            .await;
        (status, page)
    }

    fn tenants_file(&self) -> PathBuf {
        self.dir.join("tenants.toml")
    }

    /// Nothing was written, and `newco` is not served.
    async fn assert_nothing_added(&self) {
        assert!(
            !self.tenants_file().exists(),
            "the tenants file was written"
        );
        let status = self.h.get("/newco/api/incidents").await.status();
        assert_eq!(status, 404);
    }

    async fn stop(self) {
        self.h.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let response = http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.unwrap(), headers)
}

fn state_of(link: &str) -> String {
    let query = link.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned()
}

#[tokio::test]
async fn a_good_callback_adds_the_tenant_and_its_next_request_is_served() {
    let o = Onboarding::start("good", "").await;
    let state = o.state("newco", SystemTime::now());
    let (status, page) = o.consent(NEWCO_ID, &state).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Connected"), "{page}");
    let file = std::fs::read_to_string(o.tenants_file()).unwrap();
    let parsed: toml::Value = toml::from_str(&file).unwrap();
    let tenant = &parsed["tenant"][0];
    assert_eq!(tenant["name"].as_str(), Some("newco"), "{file}");
    assert_eq!(tenant["id"].as_str(), Some(NEWCO_ID), "{file}");

    // Served at once, with a token of its own.
    let response = o.h.get("/newco/api/incidents").await;
    assert_eq!(response.status(), 200);
    let last = o.h.sim.api_requests().pop().unwrap();
    assert_eq!(last.tid.as_deref(), Some(NEWCO_ID));

    // The same link again: harmless.
    let (status, page) = o.consent(NEWCO_ID, &state).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Already connected"), "{page}");
    assert_eq!(std::fs::read_to_string(o.tenants_file()).unwrap(), file);
    o.stop().await;
}

#[tokio::test]
async fn a_forged_tenant_whose_token_request_fails_adds_nothing() {
    let (logs, _guard) = Logs::capture();
    let o = Onboarding::start("forged", "").await;
    let state = o.state("newco", SystemTime::now());

    // Unknown to Entra ID.
    let (status, page) = o.consent(UNKNOWN_ID, &state).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("AADSTS90002"), "{page}");
    assert!(page.contains(UNKNOWN_ID), "{page}");

    // Known, but its admin never consented to the app.
    o.h.sim.set_consent(NEWCO_ID, false);
    let (status, page) = o.consent(NEWCO_ID, &state).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("AADSTS700016: "), "{page}");
    assert!(page.contains("not consented"), "{page}");
    assert!(!page.contains(&state), "the state is never echoed");
    o.assert_nothing_added().await;

    let lines = logs.messages("consent callback");
    let outcomes: Vec<_> = lines.iter().map(|l| l["outcome"].clone()).collect();
    assert_eq!(outcomes, ["token_failed", "token_failed"], "{lines:?}");
    assert_eq!(lines[1]["tenant"], "newco");
    assert_eq!(lines[1]["tenant_id"], NEWCO_ID);
    for line in logs.lines() {
        assert!(!line.to_string().contains(&state), "state logged: {line}");
    }
    o.stop().await;
}

#[tokio::test]
async fn a_token_naming_another_tenant_adds_nothing() {
    let o = Onboarding::start("tid", "").await;
    let contoso = o.h.tenant_id("contoso");
    o.h.sim.set_tid_override(NEWCO_ID, Some(contoso.clone()));
    let state = o.state("newco", SystemTime::now());
    let (status, page) = o.consent(NEWCO_ID, &state).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("not for tenant"), "{page}");
    assert!(!page.contains(&contoso), "{page}");
    o.assert_nothing_added().await;
    o.stop().await;
}

#[tokio::test]
async fn bad_tampered_foreign_or_expired_states_add_nothing() {
    let o = Onboarding::start("state", "").await;
    let good = o.state("newco", SystemTime::now());
    let mut tampered = good.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let eight_days_ago = SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
    let expired = o.state("newco", eight_days_ago);
    // Signed by another proxy's key.
    let mut other = o.h.config.clone();
    other.onboarding.as_mut().unwrap().state_key = "x".repeat(40).into();
    let foreign =
        state_of(&new_tenant_link(&other, "newco", None, None, SystemTime::now()).unwrap());

    for (state, says) in [
        ("", "missing or malformed"),
        ("%%%", "missing or malformed"),
        (tampered.as_str(), "not signed by this proxy"),
        (foreign.as_str(), "not signed by this proxy"),
        (expired.as_str(), "expired"),
    ] {
        let (status, page) = o.consent(NEWCO_ID, state).await;
        assert_eq!(status, 400, "{state}: {page}");
        assert!(page.contains(says), "{state}: {page}");
    }
    // The state is checked first: no token was asked for.
    assert_eq!(o.h.sim.token_request_count(NEWCO_ID), 0);
    o.assert_nothing_added().await;
    o.stop().await;
}

#[tokio::test]
async fn a_declined_consent_adds_nothing() {
    let o = Onboarding::start("declined", "").await;
    let state = o.state("newco", SystemTime::now());
    let description = "AADSTS65004:+User+declined.+<script>alert(1)</script>";
    let (status, page, _) = o
        .callback(&format!(
            "error=access_denied&error_description={description}&state={state}"
        ))
        .await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("Consent declined"), "{page}");
    assert!(!page.contains("script"), "{page}");
    let (status, page) = {
        let q = format!("admin_consent=False&tenant={NEWCO_ID}&state={state}");
        let (s, p, _) = o.callback(&q).await;
        (s, p)
    };
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("Consent declined"), "{page}");
    // No GUID at all.
    let (status, page, _) = o
        .callback(&format!("admin_consent=True&tenant=../x&state={state}"))
        .await;
    assert_eq!(status, 400, "{page}");
    assert_eq!(o.h.sim.token_request_count(NEWCO_ID), 0);
    o.assert_nothing_added().await;
    o.stop().await;
}

#[tokio::test]
async fn names_already_served_are_not_re_pointed_and_a_replay_is_harmless() {
    let o = Onboarding::start("taken", "").await;
    // A link made before `contoso` was added (the config without it).
    let mut before = o.h.config.clone();
    before.tenants.clear();
    let link = new_tenant_link(&before, "contoso", None, None, SystemTime::now()).unwrap();
    let state = state_of(&link);
    let (status, page) = o.consent(NEWCO_ID, &state).await;
    assert_eq!(status, 409, "{page}");
    assert!(
        page.contains("already the name of another tenant"),
        "{page}"
    );
    let contoso = o.h.tenant_id("contoso");
    let (status, page) = o.consent(&contoso, &state).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Already connected"), "{page}");
    o.assert_nothing_added().await;
    o.stop().await;
}

#[tokio::test]
async fn the_callback_is_rate_limited_per_client() {
    let o = Onboarding::start("limit", "").await;
    for _ in 0..10 {
        let (status, _, _) = o.callback("state=bad").await;
        assert_eq!(status, 400);
    }
    let (status, page, headers) = o.callback("state=bad").await;
    assert_eq!(status, 429, "{page}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry), "{retry}");
    o.stop().await;
}

#[tokio::test]
async fn only_the_callback_is_served_there() {
    let o = Onboarding::start("paths", "").await;
    let addr = o.h.onboarding.unwrap();
    for path in [
        "/",
        "/healthz",
        "/contoso/api/incidents",
        "/consent/callback/x",
    ] {
        let (status, page, headers) = get(&o.h.http, &format!("http://{addr}{path}")).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert!(page.contains("Only /consent/callback"), "{page}");
    }
    let post = o.h.http.post(format!("http://{addr}/consent/callback"));
    assert_eq!(post.send().await.unwrap().status(), 404);
    o.stop().await;
}

#[tokio::test]
async fn the_onboarding_listener_serves_tls() {
    let certs_dir = temp_dir("tls-certs");
    let certs = defender_proxy::inbound::certs::write_dev_certs(&certs_dir).unwrap();
    let tls = format!(
        "[onboarding.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        certs.server_cert.display(),
        certs.server_key.display()
    );
    let o = Onboarding::start("tls", &tls).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca_cert).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .use_rustls_tls()
        .build()
        .unwrap();
    let addr = o.h.onboarding.unwrap();
    let url = format!("https://127.0.0.1:{}/consent/callback?state=x", addr.port());
    let (status, page, _) = get(&client, &url).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("malformed"), "{page}");
    // Plain HTTP is not served there.
    assert!(o
        .h
        .http
        .get(format!("http://{addr}/consent/callback"))
        .send()
        .await
        .is_err());
    o.stop().await;
    let _ = std::fs::remove_dir_all(&certs_dir);
}

#[tokio::test]
async fn consent_url_new_prints_the_onboarding_link_or_says_why_not() {
    let dir = temp_dir("cli");
    let sim = sim_config();
    let path = dir.join("proxy.toml");
    std::fs::write(&path, config_text(&sim, "http://127.0.0.1:9", &dir, "")).unwrap();
    let run = |args: &[&str]| {
        let mut command = tokio::process::Command::new(BIN);
        command
            .arg("consent-url")
            .arg("--config")
            .arg(&path)
            .args(args);
        command.output()
    };
    let out = run(&["--new", "newco"]).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let link = String::from_utf8(out.stdout).unwrap();
    assert!(link.starts_with("http://127.0.0.1:9/organizations/v2.0/adminconsent?client_id="));
    assert!(link.contains("&redirect_uri=http%3A%2F%2F127.0.0.1%2Fconsent%2Fcallback&state="));

    for (args, says) in [
        (&["--new", "contoso"][..], "already a tenant"),
        (&["--new", "New_Co"][..], "may contain only"),
        (
            &["--new", "newco", "--app", "nope"][..],
            "no app named `nope`",
        ),
    ] {
        let out = run(args).await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // Without [onboarding].
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("[onboarding]").unwrap();
    let end = text.find("[[tenant]]").unwrap();
    std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let out = run(&["--new", "newco"]).await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [onboarding]"));
    let _ = std::fs::remove_dir_all(&dir);
}
