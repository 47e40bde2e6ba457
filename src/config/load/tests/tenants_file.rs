//! `[tenants] file`, `[admin] key_sha256` and `[onboarding]`.

use super::*;
use crate::config::TenantSource;

const FABRIKAM: &str = "33333333-3333-3333-3333-333333333333";

/// The config with `[tenants] file = "tenants.toml"` in `dir`, plus `extra`.
fn with_file(dir: &TempDir, extra: &str) -> String {
    let _ = dir;
    with(&format!("[tenants]\nfile = \"tenants.toml\"\n{extra}"))
}

fn parse_in(dir: &TempDir, text: &str) -> Result<Config, ConfigErrors> {
    parse_str(text, &dir.origin(), &env)
}

#[test]
fn the_tenants_file_is_merged_after_the_configs_own_and_watched() {
    let dir = TempDir::new();
    let file = dir.write(
        "tenants.toml",
        &format!("[[tenant]]\nname = \"fabrikam\"\nid = \"{FABRIKAM}\"\ncloud = \"default\"\n"),
    );
    let config = parse_in(&dir, &with_file(&dir, "")).unwrap();
    let found: Vec<(&str, TenantSource)> = config
        .tenants
        .iter()
        .map(|t| (t.name.as_str(), t.source))
        .collect();
    assert_eq!(
        found,
        [
            ("contoso", TenantSource::Config),
            ("fabrikam", TenantSource::File)
        ]
    );
    assert_eq!(config.tenants_file.as_deref(), Some(file.as_path()));
    assert!(config.watched_files.contains(&file));
}

#[test]
fn a_missing_tenants_file_is_an_empty_list_and_the_config_may_have_no_tenant_then() {
    let dir = TempDir::new();
    let text = format!("{APP}\n[tenants]\nfile = \"tenants.toml\"\n");
    let config = parse_in(&dir, &text).unwrap();
    assert!(config.tenants.is_empty());
    // Without a tenants file, no tenant at all is still a problem.
    assert!(parse_in(&dir, APP).is_err());
}

#[test]
fn problems_in_the_tenants_file_name_it_its_line_and_its_tenant() {
    let dir = TempDir::new();
    let path = dir.write(
        "tenants.toml",
        &format!(
            "[[tenant]]\nname = \"contoso\"\nid = \"{FABRIKAM}\"\n\n\
             [[tenant]]\nname = \"acme\"\nid = \"not-a-guid\"\n"
        ),
    );
    let problems = parse_in(&dir, &with_file(&dir, "")).unwrap_err().problems;
    let name = problem_on(&problems, "tenant[0].name");
    assert_eq!(name.file.as_deref(), Some(path.as_path()));
    assert_eq!(name.line, Some(2));
    assert!(
        name.message.contains("tenant[0] of the config file"),
        "{}",
        name.message
    );
    let id = problem_on(&problems, "tenant[1].id");
    assert_eq!(
        (id.file.as_deref(), id.line),
        (Some(path.as_path()), Some(7))
    );
    let shown = id.to_string();
    assert!(
        shown.starts_with(&format!("{}: line 7: tenant[1].id:", path.display())),
        "{shown}"
    );
}

#[test]
fn an_id_in_both_files_names_both_places() {
    let dir = TempDir::new();
    let path = dir.write(
        "tenants.toml",
        &format!("[[tenant]]\nname = \"other\"\nid = \"{CONTOSO}\"\n"),
    );
    let problems = parse_in(&dir, &with_file(&dir, "")).unwrap_err().problems;
    let id = problem_on(&problems, "tenant[0].id");
    assert_eq!(id.file.as_deref(), Some(path.as_path()));
    assert!(id
        .message
        .contains("already the id of tenant[0] of the config file"));
}

#[test]
fn a_tenants_file_that_is_not_tenants_is_refused() {
    let dir = TempDir::new();
    for (text, key) in [
        (
            "[[tenant]]\nname = \"a\"\nid = \"x\"\ncolour = 1\n",
            "tenant[0].colour",
        ),
        ("[listen]\naddr = \"0.0.0.0:1\"\n", "listen"),
        ("[[tenant]\n", ""),
    ] {
        let path = dir.write("tenants.toml", text);
        let problems = parse_in(&dir, &with_file(&dir, "")).unwrap_err().problems;
        let p = problem_on(&problems, key);
        assert_eq!(p.file.as_deref(), Some(path.as_path()), "{text}: {p:?}");
    }
    // Unreadable (a folder): a problem on the key that names it.
    std::fs::remove_file(dir.0.join("tenants.toml")).unwrap();
    std::fs::create_dir(dir.0.join("tenants.toml")).unwrap();
    let problems = parse_in(&dir, &with_file(&dir, "")).unwrap_err().problems;
    assert!(problem_on(&problems, "tenants.file")
        .message
        .contains("cannot read"));
}

#[test]
fn the_admin_api_off_loopback_needs_a_key() {
    let hash = "a".repeat(64);
    let found = problems(&with("[admin]\naddr = \"0.0.0.0:9090\"\n"));
    let p = problem_on(&found, "admin.key_sha256");
    assert!(p.message.contains("hash-key") && p.message.contains("allow_unauthenticated"));
    let config = ok(&with(&format!(
        "[admin]\naddr = \"0.0.0.0:9090\"\nkey_sha256 = \"{hash}\"\n"
    )));
    assert_eq!(config.admin.key_sha256, Some([0xaa; 32]));
    let config = ok(&with(
        "[admin]\naddr = \"0.0.0.0:9090\"\nallow_unauthenticated = true\n",
    ));
    assert!(config.admin.key_sha256.is_none() && config.admin.allow_unauthenticated);
    assert!(ok(&with("[admin]\naddr = \"127.0.0.1:9090\"\n"))
        .admin
        .key_sha256
        .is_none());
    let found = problems(&with("[admin]\nkey_sha256 = \"dpk_the-key-itself\"\n"));
    let p = problem_on(&found, "admin.key_sha256");
    assert!(
        !p.message.contains("dpk_the-key-itself"),
        "the value is not echoed"
    );
}

#[test]
fn onboarding_needs_a_tenants_file_a_redirect_uri_and_a_long_state_key() {
    let dir = TempDir::new();
    let good = "[onboarding]\naddr = \"127.0.0.1:8443\"\n\
                redirect_uri = \"https://onboard.soc.example/consent/callback\"\n\
                state_key = { env = \"STATE_KEY\" }\n";
    let config = parse_in(&dir, &with_file(&dir, good)).unwrap();
    let onboarding = config.onboarding.unwrap();
    assert_eq!(onboarding.addr.port(), 8443);
    assert!(
        !format!("{onboarding:?}").contains("kkkk"),
        "the key is not in Debug"
    );

    let problems = parse_in(&dir, &with(good)).unwrap_err().problems;
    assert!(problem_on(&problems, "onboarding")
        .message
        .contains("[tenants] file"));
    let short = good.replace("STATE_KEY", "SECRET");
    let problems = parse_in(&dir, &with_file(&dir, &short))
        .unwrap_err()
        .problems;
    assert!(problem_on(&problems, "onboarding.state_key")
        .message
        .contains("shorter"));
    let plain = good.replace("https://onboard.soc.example", "http://onboard.soc.example");
    let problems = parse_in(&dir, &with_file(&dir, &plain))
        .unwrap_err()
        .problems;
    problem_on(&problems, "onboarding.redirect_uri");
    let local = good.replace("https://onboard.soc.example", "http://127.0.0.1:8443");
    assert!(parse_in(&dir, &with_file(&dir, &local)).is_ok());
    let clash = good.replace("127.0.0.1:8443", "127.0.0.1:9090");
    let problems = parse_in(&dir, &with_file(&dir, &clash))
        .unwrap_err()
        .problems;
    problem_on(&problems, "onboarding.addr");
}
