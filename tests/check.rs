//! `defender-proxy check`, the binary against an in-process simulator: one line per tenant with
//! its verdict, the AADSTS error and consent link of a tenant without consent, `tid` and `roles`
//! judged, `--json`, and the exit codes (0 all passed, 1 any failed, 2 bad config).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Output;

use defender_proxy::check::NO_ROLES;
use defender_proxy::sim::{RunningSim, SimConfig, SimTenant, Simulator};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_defender-proxy");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "defender-proxy-check-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A config for every tenant of the simulator, the simulator as Entra ID and API.
fn config_text(sim: &RunningSim) -> String {
    let mut text = format!(
        "[app]\nclient_id = \"{}\"\nclient_secret = {{ env = \"TEST_APP_SECRET\" }}\n\
         [cloud]\nauthority = \"{base}\"\napi = \"{base}\"\n",
        sim.config().client_id,
        base = sim.base_url()
    );
    for t in &sim.config().tenants {
        text.push_str(&format!(
            "[[tenant]]\nname = \"{}\"\nid = \"{}\"\n",
            t.name, t.id
        ));
    }
    text
}

/// Runs `defender-proxy check --config <config> [extra]` with the app secret in its environment.
async fn check(name: &str, config: &str, secret: Option<&str>, extra: &[&str]) -> Output {
    let dir = temp_dir(name);
    let path = dir.join("proxy.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["check", "--config"])
        .arg(&path)
        .args(extra)
        .env_remove("DEFENDER_PROXY_CONFIG")
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("AZURE_FEDERATED_TOKEN_FILE");
    match secret {
        Some(secret) => command.env("TEST_APP_SECRET", secret),
        None => command.env_remove("TEST_APP_SECRET"),
    };
    let out = command.output().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The report line of tenant `name`.
fn line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{text}"))
}

fn tenant(name: &str, n: u32, roles: &[&str]) -> SimTenant {
    SimTenant {
        name: name.into(),
        id: format!("11111111-aaaa-4aaa-8aaa-{n:012}"),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

#[tokio::test]
async fn a_tenant_without_consent_fails_with_its_code_and_consent_link() {
    let sim = Simulator::start(SimConfig::demo()).await.unwrap();
    let fabrikam = sim.config().tenants[1].id.clone();
    sim.set_consent(&fabrikam, false);
    let secret = sim.config().client_secret.clone();
    let config = config_text(&sim);

    let out = check("consent", &config, Some(&secret), &[]).await;
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().count(), 2, "{text}");
    let contoso = line(&text, "contoso");
    assert!(
        contoso.contains(" ok ")
            && contoso.contains("tid ok")
            && contoso.contains("roles: Incident.Read.All, AdvancedHunting.Read.All"),
        "{contoso}"
    );
    let consent = format!(
        "consent: {}/{fabrikam}/adminconsent?client_id={}",
        sim.base_url(),
        sim.config().client_id
    );
    let failed = line(&text, "fabrikam");
    assert!(
        failed.contains(" FAIL ")
            && failed.contains("AADSTS700016: the app is not consented")
            && failed.ends_with(&consent),
        "{failed}"
    );
    assert!(
        !text.contains(&secret) && !text.contains("Bearer"),
        "{text}"
    );

    let out = check("consent-json", &config, Some(&secret), &["--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let tenants = report["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 2, "{report:#}");
    assert_eq!(
        (
            &tenants[0]["name"],
            &tenants[0]["verdict"],
            &tenants[0]["tid_ok"]
        ),
        (&"contoso".into(), &"ok".into(), &true.into())
    );
    assert!(tenants[0]["roles"]
        .as_array()
        .unwrap()
        .contains(&"AdvancedHunting.Read.All".into()));
    assert_eq!(tenants[1]["name"], "fabrikam");
    assert_eq!(tenants[1]["verdict"], "fail");
    assert_eq!(tenants[1]["aadsts"], 700016);
    assert!(tenants[1]["meaning"]
        .as_str()
        .unwrap()
        .contains("not consented"));
    assert_eq!(
        tenants[1]["consent_url"].as_str(),
        consent.strip_prefix("consent: ")
    );
    assert!(!stdout(&out).contains(&secret));
}

#[tokio::test]
async fn all_tenants_passing_exit_zero_even_with_a_missing_role() {
    let mut sim_config = SimConfig::demo();
    // Write access satisfies the read need; advanced hunting is not granted.
    sim_config
        .tenants
        .push(tenant("partial", 3, &["Incident.ReadWrite.All"]));
    let sim = Simulator::start(sim_config).await.unwrap();
    let secret = sim.config().client_secret.clone();

    let out = check("good", &config_text(&sim), Some(&secret), &[]).await;
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(line(&text, "contoso").contains(" ok "), "{text}");
    assert!(line(&text, "fabrikam").contains(" ok "), "{text}");
    let partial = line(&text, "partial");
    assert!(
        partial.contains(" WARN ")
            && partial.contains("roles: Incident.ReadWrite.All")
            && partial.contains("missing: AdvancedHunting.Read.All"),
        "{partial}"
    );
    // Every tenant got exactly one token request, nothing else was called.
    assert_eq!(sim.total_token_request_count(), 3);
    assert_eq!(sim.api_request_count(), 0);
}

#[tokio::test]
async fn a_token_without_roles_or_for_another_tenant_fails() {
    let mut sim_config = SimConfig::demo();
    sim_config.tenants.push(tenant("noroles", 4, &[]));
    let sim = Simulator::start(sim_config).await.unwrap();
    let fabrikam = sim.config().tenants[1].id.clone();
    sim.set_tid_override(
        &fabrikam,
        Some("99999999-9999-4999-8999-999999999999".into()),
    );
    let secret = sim.config().client_secret.clone();

    let out = check("roles", &config_text(&sim), Some(&secret), &[]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(line(&text, "contoso").contains(" ok "), "{text}");
    let noroles = line(&text, "noroles");
    assert!(
        noroles.contains(" FAIL ")
            && noroles.contains("tid ok")
            && noroles.contains(NO_ROLES)
            && noroles.contains("adminconsent?client_id="),
        "{noroles}"
    );
    let mismatch = line(&text, "fabrikam");
    assert!(
        mismatch.contains(" FAIL ")
            && mismatch.contains("tid mismatch")
            && mismatch.contains("99999999-9999-4999-8999-999999999999"),
        "{mismatch}"
    );
    let out = check("roles-json", &config_text(&sim), Some(&secret), &["--json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let noroles = &report["tenants"][2];
    assert_eq!(
        (&noroles["verdict"], &noroles["roles"]),
        (&"fail".into(), &serde_json::json!([]))
    );
    assert_eq!(report["tenants"][1]["tid_ok"], false);
}

#[tokio::test]
async fn a_bad_config_exits_two_before_any_token_request() {
    let sim = Simulator::start(SimConfig::demo()).await.unwrap();
    let out = check("bad", &config_text(&sim), None, &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TEST_APP_SECRET"), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(sim.total_token_request_count(), 0);
}
