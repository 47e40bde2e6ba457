//! `defender-proxy check`, the binary against an in-process simulator: one line per tenant with
//! its verdict, the AADSTS error and consent link of a tenant without consent, `tid` and `roles`
//! judged, `--json`, and the exit codes (0 all passed, 1 any failed, 2 bad config); and, with
//! the Graph `[[api]]` configured, each tenant's Graph hunting readiness (token, role, consent
//! link) and the `WARN` it makes with `via = "graph"`.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use defender_proxy::check::{self, TenantCheck, Verdict, NO_ROLES};
use defender_proxy::config::{Config, HuntingVia};
use defender_proxy::sim::{RunningSim, SimConfig, SimTenant, Simulator, THREAT_HUNTING_ROLE};
use support::within;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_defender-proxy");

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

/// [`config_text`] plus the Graph `[[api]]` advanced hunting goes through (the default
/// `graph_api = "graph"`), at the simulator with Graph's audience.
fn config_text_with_graph(sim: &RunningSim) -> String {
    format!(
        "{}[[api]]\nname = \"graph\"\nprefix = \"/graph\"\nurl = \"{}\"\n\
         scope = \"https://graph.microsoft.com/.default\"\n",
        config_text(sim),
        sim.base_url()
    )
}

/// [`config_text_with_graph`] loaded in-process with `via` set directly: this version's
/// validation still refuses `via = "graph" | "auto"` in a file.
fn graph_config(sim: &RunningSim, via: HuntingVia) -> Config {
    let secret = sim.config().client_secret.clone();
    let env = move |name: &str| (name == "TEST_APP_SECRET").then(|| secret.clone());
    let mut config =
        defender_proxy::config::parse_str(&config_text_with_graph(sim), Path::new("x.toml"), &env)
            .unwrap();
    config.hunting.via = via;
    config
}

fn by_name<'a>(checks: &'a [TenantCheck], name: &str) -> &'a TenantCheck {
    checks.iter().find(|c| c.name == name).unwrap()
}

/// Runs `defender-proxy check --config <config> [extra]` with the app secret in its environment.
async fn check(name: &str, config: &str, secret: Option<&str>, extra: &[&str]) -> Output {
    let dir = support::TempDir::new(name);
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

/// The hunting line under tenant `name`'s line.
fn hunting_line<'a>(text: &'a str, name: &str) -> &'a str {
    let mut lines = text.lines();
    lines.find(|l| l.split_whitespace().next() == Some(name));
    lines
        .next()
        .filter(|l| l.starts_with("  hunting via "))
        .unwrap_or_else(|| panic!("no hunting line under {name} in:\n{text}"))
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

#[tokio::test]
async fn graph_hunting_readiness_is_shown_per_tenant_with_the_consent_link() {
    let sim = Simulator::start(SimConfig::demo()).await.unwrap();
    let fabrikam = sim.config().tenants[1].id.clone();
    sim.set_threat_hunting_granted(&fabrikam, false);
    let secret = sim.config().client_secret.clone();
    let config = config_text_with_graph(&sim);

    // `via` is legacy (the default): readiness is shown, the verdicts are the main token's.
    let out = check("hunting", &config, Some(&secret), &[]).await;
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(line(&text, "contoso").contains(" ok "), "{text}");
    assert_eq!(
        hunting_line(&text, "contoso"),
        "  hunting via legacy: ready"
    );
    assert!(line(&text, "fabrikam").contains(" ok "), "{text}");
    let consent = format!(
        "; consent: {}/{fabrikam}/adminconsent?client_id={}",
        sim.base_url(),
        sim.config().client_id
    );
    let unready = hunting_line(&text, "fabrikam");
    assert!(
        unready.starts_with(
            "  hunting via legacy: not ready: the Graph token lacks ThreatHunting.Read.All: "
        ) && unready.contains("2027-02-01")
            && unready.ends_with(&consent),
        "{unready}"
    );
    assert!(
        !text.contains(&secret) && !text.contains("Bearer"),
        "{text}"
    );
    // One token per tenant and audience, no API call.
    assert_eq!(sim.token_request_count(&fabrikam), 2);
    assert_eq!(sim.total_token_request_count(), 4);
    assert_eq!(sim.api_request_count(), 0);

    let out = check("hunting-json", &config, Some(&secret), &["--json"]).await;
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ready = &report["tenants"][0]["hunting"];
    assert_eq!(
        (
            &ready["via"],
            &ready["ready"],
            &ready["graph_token"],
            &ready["role"]
        ),
        (&"legacy".into(), &true.into(), &true.into(), &true.into())
    );
    assert_eq!(
        (&ready["problem"], &ready["consent_url"]),
        (&"".into(), &serde_json::Value::Null)
    );
    let unready = &report["tenants"][1]["hunting"];
    assert_eq!(
        (&unready["ready"], &unready["graph_token"], &unready["role"]),
        (&false.into(), &true.into(), &false.into())
    );
    assert_eq!(
        unready["consent_url"].as_str(),
        consent.strip_prefix("; consent: ")
    );
    assert!(!stdout(&out).contains(&secret));
}

#[tokio::test]
async fn without_the_graph_api_there_is_no_hunting_check() {
    let sim = Simulator::start(SimConfig::demo()).await.unwrap();
    let mut config = graph_config(&sim, HuntingVia::Graph);
    config.apis.clear();
    let checks = check::run(&config).await.unwrap();
    assert!(checks
        .iter()
        .all(|c| c.hunting.is_none() && c.verdict == Verdict::Ok));
    assert!(!check::render_text(&checks).contains("hunting"));
    assert!(!check::render_json(&checks).contains("hunting"));
    assert_eq!(sim.total_token_request_count(), 2);
}

#[tokio::test]
async fn via_graph_a_tenant_without_threat_hunting_warns_and_auto_does_not() {
    let mut sim_config = SimConfig::demo();
    sim_config
        .tenants
        .push(tenant("noconsent", 5, &["Incident.Read.All"]));
    let sim = Simulator::start(sim_config).await.unwrap();
    let fabrikam = sim.config().tenants[1].id.clone();
    let noconsent = sim.config().tenants[2].id.clone();
    sim.set_role(&fabrikam, THREAT_HUNTING_ROLE, false);
    sim.set_consent(&noconsent, false);

    let checks = check::run(&graph_config(&sim, HuntingVia::Graph))
        .await
        .unwrap();
    let contoso = by_name(&checks, "contoso");
    assert_eq!(contoso.verdict, Verdict::Ok);
    assert!(contoso.hunting.as_ref().unwrap().ready);
    let warned = by_name(&checks, "fabrikam");
    assert_eq!(warned.verdict, Verdict::Warn, "{warned:?}");
    let hunting = warned.hunting.as_ref().unwrap();
    assert!((hunting.graph_token, hunting.role, hunting.ready) == (true, false, false));
    assert!(
        hunting
            .problem
            .ends_with("legacy hunting requests answer 403 through Graph"),
        "{}",
        hunting.problem
    );
    assert!(hunting.consent_url.as_ref().unwrap().contains(&fabrikam));
    // Without consent the main token fails too: FAIL stays FAIL, the Graph token's code is named.
    let failed = by_name(&checks, "noconsent");
    assert_eq!(failed.verdict, Verdict::Fail);
    let hunting = failed.hunting.as_ref().unwrap();
    assert!(!hunting.graph_token && !hunting.ready);
    assert!(
        hunting
            .problem
            .starts_with("no Graph token: AADSTS700016: the app is not consented"),
        "{}",
        hunting.problem
    );
    assert!(hunting.consent_url.as_ref().unwrap().contains(&noconsent));
    assert!(check::all_passed(&checks[..2]));
    let text = check::render_text(&checks);
    assert!(line(&text, "fabrikam").contains(" WARN "), "{text}");
    assert!(
        hunting_line(&text, "fabrikam").starts_with("  hunting via graph: not ready: "),
        "{text}"
    );

    // `auto`: the same tenant stays on the legacy API; its verdict is the main token's.
    let checks = check::run(&graph_config(&sim, HuntingVia::Auto))
        .await
        .unwrap();
    let fabrikam = by_name(&checks, "fabrikam");
    assert_eq!(fabrikam.verdict, Verdict::Ok);
    let hunting = fabrikam.hunting.as_ref().unwrap();
    assert!(!hunting.ready);
    assert!(
        hunting
            .problem
            .ends_with("stays on the legacy API until consented"),
        "{}",
        hunting.problem
    );
}

#[tokio::test]
async fn the_graph_token_is_requested_alongside_the_main_one() {
    let mut sim_config = SimConfig::demo();
    sim_config.tenants.truncate(1);
    let sim = Simulator::start(sim_config).await.unwrap();
    let contoso = sim.config().tenants[0].id.clone();
    // Both of contoso's token requests are held: the second one can only arrive if it was sent
    // without waiting for the first.
    sim.set_token_delay(&contoso, Duration::from_secs(600));
    let config = graph_config(&sim, HuntingVia::Auto);
    let both_started = within(
        Duration::from_secs(10),
        "both token requests in flight",
        sim.wait_token_requests_started(&contoso, 2),
    );
    tokio::select! {
        _ = check::run(&config) => panic!("check finished while its token requests were held"),
        () = both_started => {}
    }
}
