//! `[apps.NAME]`, `[clouds.NAME]`, a tenant's `app` and `cloud`, and `[api.clouds.NAME]`.

use http::Uri;

use super::credentials::env_with;
use super::listen::chmod;
use super::{env, ok, origin, problem_on, problems, with, TempDir, APP, CLIENT, TENANT};
use crate::config::load::parse_str;
use crate::config::{ApiEndpoint, CloudPreset, Credential, KeyFormat, DEFAULT_PROFILE};

const OTHER: &str = "33333333-3333-3333-3333-333333333333";
const AGENCY: &str = "44444444-4444-4444-4444-444444444444";

/// A second tenant, `agency`, on app `app` and cloud `cloud` (either may be empty: not written).
fn agency(app: &str, cloud: &str) -> String {
    let mut text = format!("[[tenant]]\nname = \"agency\"\nid = \"{AGENCY}\"\n");
    if !app.is_empty() {
        text += &format!("app = \"{app}\"\n");
    }
    if !cloud.is_empty() {
        text += &format!("cloud = \"{cloud}\"\n");
    }
    text
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

fn message_has(text: &str, key: &str, parts: &[&str]) -> usize {
    let problems = problems(text);
    let p = problem_on(&problems, key);
    for part in parts {
        assert!(
            p.message.contains(part),
            "{key}: {} lacks {part}",
            p.message
        );
    }
    p.line.expect("a line")
}

#[test]
fn named_apps_take_every_credential_form_of_app() {
    let dir = TempDir::new();
    let generated = rcgen::generate_simple_self_signed(vec!["acme".into()]).expect("rcgen");
    dir.write("acme.pem", &generated.cert.pem());
    let key = dir.write("acme-key.pem", &generated.key_pair.serialize_pem());
    chmod(&key, 0o600);
    let secret = dir.write("beta-secret", "beta-value\n");
    chmod(&secret, 0o644);
    dir.write("gamma-token", "header.payload.signature");
    let text = format!(
        "{APP}\n[apps.acme]\nclient_id = \"{OTHER}\"\n\
         certificate = {{ cert = \"acme.pem\", key = \"acme-key.pem\" }}\n\
         [apps.beta]\nclient_id = \"AAAAAAAA-1111-1111-1111-111111111111\"\n\
         client_secret = {{ file = \"beta-secret\" }}\n\
         [apps.gamma]\nclient_id = \"bbbbbbbb-1111-1111-1111-111111111111\"\n\
         federated_token_file = \"gamma-token\"\n\
         [apps.delta]\nclient_id = \"cccccccc-1111-1111-1111-111111111111\"\n\
         client_secret = {{ env = \"SECRET\" }}\n{TENANT}{}",
        agency("acme", "")
    );
    let config = parse_str(&text, &dir.origin(), &env).expect("valid");
    assert_eq!(config.apps.len(), 4);
    let acme = &config.apps["acme"];
    assert_eq!(acme.client_id, OTHER);
    assert!(
        matches!(&acme.credential, Credential::Certificate(c) if c.key_format == KeyFormat::Pkcs8)
    );
    assert_eq!(
        config.apps["beta"].client_id,
        "aaaaaaaa-1111-1111-1111-111111111111"
    );
    assert!(matches!(
        config.apps["beta"].credential,
        Credential::Secret(_)
    ));
    assert!(matches!(
        config.apps["gamma"].credential,
        Credential::Federated(_)
    ));
    assert!(matches!(
        config.apps["delta"].credential,
        Credential::Secret(_)
    ));
    // Files are watched for a reload, and a loose mode is a warning on the app's own key.
    for file in ["acme.pem", "acme-key.pem", "beta-secret"] {
        assert!(config.watched_files.contains(&dir.0.join(file)), "{file}");
    }
    #[cfg(unix)]
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.starts_with("apps.beta.client_secret: ") && w.contains("chmod 600")),
        "{:?}",
        config.warnings
    );
    // The tenant is on its app; the others on [app].
    let (contoso, agency) = (&config.tenants[0], &config.tenants[1]);
    assert_eq!(agency.app.as_deref(), Some("acme"));
    assert_eq!(config.app_of(agency).0, "acme");
    assert_eq!(config.app_of(agency).1.client_id, OTHER);
    assert_eq!(config.app_of(contoso).0, DEFAULT_PROFILE);
    assert_eq!(config.app_of(contoso).1.client_id, CLIENT);
}

#[test]
fn a_named_apps_problems_are_on_its_own_keys() {
    let text = format!(
        "{APP}\n[apps.acme]\nclient_id = \"nope\"\nclient_secret = \"inline-s3cret\"\n{TENANT}"
    );
    let errors = parse_str(&text, &origin(), &env).expect_err("bad");
    let p = problem_on(&errors.problems, "apps.acme.client_secret");
    assert!(p.message.contains("never written inline"), "{}", p.message);
    assert_eq!(p.line, line_of(&text, "inline-s3cret"));
    assert!(!format!("{errors} {errors:?}").contains("inline-s3cret"));
    let p = problem_on(&errors.problems, "apps.acme.client_id");
    assert!(p.message.contains("`nope` is not a GUID"), "{}", p.message);
    assert_eq!(p.line, line_of(&text, "\"nope\""));

    // Two credentials: on the later one; a certificate without its key: on the key.
    let text = format!(
        "{APP}[apps.acme]\nclient_id = \"{OTHER}\"\nclient_secret = {{ env = \"SECRET\" }}\n\
         federated_token_file = \"t\"\n{TENANT}"
    );
    let line = message_has(
        &text,
        "apps.acme.federated_token_file",
        &[
            "set only one",
            "both client_secret and federated_token_file",
        ],
    );
    assert_eq!(Some(line), line_of(&text, "federated_token_file"));
    let text = format!(
        "{APP}[apps.acme]\nclient_id = \"{OTHER}\"\ncertificate = {{ cert = \"/nonexistent/c.pem\" }}\n{TENANT}"
    );
    message_has(&text, "apps.acme.certificate.key", &["is required"]);
    message_has(&text, "apps.acme.certificate.cert", &["cannot read"]);
}

#[test]
fn named_apps_never_take_the_workload_identity_environment() {
    let dir = TempDir::new();
    let token = dir.write("projected", "header.payload.signature");
    let token = token.display().to_string();
    let vars = [
        ("AZURE_CLIENT_ID", "aaaaaaaa-1111-1111-1111-111111111111"),
        ("AZURE_FEDERATED_TOKEN_FILE", token.as_str()),
    ];
    // [app] may be empty under workload identity; [apps.acme] may not.
    let text = format!("[app]\n[apps.acme]\n{TENANT}");
    let errors = parse_str(&text, &origin(), &env_with(&vars)).expect_err("named app is empty");
    assert_eq!(errors.problems.len(), 2, "{errors}");
    let p = problem_on(&errors.problems, "apps.acme.client_id");
    assert!(p.message.contains("is required"), "{}", p.message);
    assert_eq!(p.line, Some(2));
    let p = problem_on(&errors.problems, "apps.acme");
    assert!(
        p.message.contains("no credential") && p.message.contains("[app]'s only"),
        "{}",
        p.message
    );
    assert_eq!(p.line, Some(2));
}

#[test]
fn app_and_cloud_names() {
    for (table, key) in [("apps", "app"), ("clouds", "cloud")] {
        let body = if table == "apps" {
            format!("client_id = \"{OTHER}\"\nclient_secret = {{ env = \"SECRET\" }}\n")
        } else {
            "cloud = \"gcc\"\n".to_owned()
        };
        for (name, says) in [
            (
                "Acme",
                "may contain only lower-case letters, digits and '-'",
            ),
            ("a_b", "may contain only"),
            ("\"\"", "must not be empty"),
            ("default", "`default` is the name of ["),
        ] {
            let text = with(&format!("[{table}.{name}]\n{body}"));
            let errors = parse_str(&text, &origin(), &env).expect_err(name);
            assert_eq!(errors.problems.len(), 1, "{errors}");
            let p = &errors.problems[0];
            assert!(p.key.starts_with(&format!("{table}.")), "{p:?}");
            assert!(p.message.contains(says), "{}", p.message);
            assert_eq!(p.line, Some(5), "{p:?}");
            if name == "default" {
                assert!(p.message.contains(&format!("[{key}]")), "{}", p.message);
            }
        }
        ok(&with(&format!("[{table}.acme-2]\n{body}")));
    }
}

#[test]
fn a_tenant_names_a_configured_app_and_cloud() {
    let apps = format!(
        "[apps.acme]\nclient_id = \"{OTHER}\"\nclient_secret = {{ env = \"SECRET\" }}\n\
         [apps.beta]\nclient_id = \"{AGENCY}\"\nclient_secret = {{ env = \"SECRET\" }}\n\
         [clouds.gov]\ncloud = \"gcc-high\"\n"
    );
    let text = format!("{}{}", with(&apps), agency("acne", "gvo"));
    let problems = problems(&text);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    let p = problem_on(&problems, "tenant[1].app");
    assert_eq!(p.line, line_of(&text, "app = \"acne\""));
    assert!(
        p.message.contains("`acne` is not a configured app")
            && p.message.contains("`acme`, `beta`")
            && p.message.contains("leave `app` out for [app]"),
        "{}",
        p.message
    );
    let p = problem_on(&problems, "tenant[1].cloud");
    assert_eq!(p.line, line_of(&text, "cloud = \"gvo\""));
    assert!(p.message.contains("configured: `gov`"), "{}", p.message);

    // With none configured, the message says so.
    let text = format!("{}{}", with(""), agency("acme", "gov"));
    let line = message_has(&text, "tenant[1].app", &["there is no [apps.NAME] table"]);
    assert_eq!(Some(line), line_of(&text, "app = "));
    message_has(
        &text,
        "tenant[1].cloud",
        &["there is no [clouds.NAME] table"],
    );

    // `default` is [app] and [cloud], written out.
    let config = ok(&format!("{}{}", with(""), agency("default", "default")));
    assert_eq!(config.tenants[1].app, None);
    assert_eq!(config.tenants[1].cloud, None);

    // A table with a problem of its own gets no second one at its tenant.
    let text = format!(
        "{}{}",
        with("[apps.acme]\nclient_id = \"x\"\nclient_secret = { env = \"SECRET\" }\n"),
        agency("acme", "")
    );
    let problems = super::problems(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    problem_on(&problems, "apps.acme.client_id");
}

#[test]
fn a_client_id_belongs_to_one_app() {
    // [app] and a named app, ids differing in case only: on the later one.
    let upper = CLIENT.to_ascii_uppercase();
    let text = with(&format!(
        "[apps.acme]\nclient_id = \"{upper}\"\nclient_secret = {{ env = \"SECRET\" }}\n"
    ));
    let line = message_has(
        &text,
        "apps.acme.client_id",
        &["already the client id of [app]"],
    );
    assert_eq!(Some(line), line_of(&text, "[apps.acme]").map(|l| l + 1));
    // Two named apps: on the later in the file, not in name order; `[app]` after them counts
    // as later too.
    let text = format!(
        "[apps.zulu]\nclient_id = \"{OTHER}\"\nclient_secret = {{ env = \"SECRET\" }}\n\
         [apps.alpha]\nclient_id = \"{OTHER}\"\nclient_secret = {{ env = \"SECRET\" }}\n\
         [app]\nclient_id = \"{OTHER}\"\nclient_secret = {{ env = \"SECRET\" }}\n{TENANT}"
    );
    let problems = problems(&text);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    let p = problem_on(&problems, "apps.alpha.client_id");
    assert!(p.message.contains("[apps.zulu]"), "{}", p.message);
    assert_eq!(p.line, Some(5));
    let p = problem_on(&problems, "app.client_id");
    assert!(p.message.contains("[apps.zulu]"), "{}", p.message);
    assert_eq!(p.line, Some(8));
}

#[test]
fn cloud_profiles_take_every_key_of_cloud() {
    let text = format!(
        "{}{}",
        with(
            "[clouds.gov]\ncloud = \"gcc-high\"\n\
             [clouds.dod]\ncloud = \"dod\"\ntoken_endpoint = \"v1\"\nscope = \" s \"\n\
             [clouds.sim]\nauthority = \"http://127.0.0.1:9000\"\napi = \"http://127.0.0.1:9001\"\n"
        ),
        agency("", "gov")
    );
    let config = ok(&text);
    let gov = &config.clouds["gov"];
    assert_eq!(gov.cloud, CloudPreset::GccHigh);
    assert_eq!(gov.authority, "https://login.microsoftonline.us");
    assert_eq!(
        gov.api,
        Uri::from_static("https://api-gov.security.microsoft.us")
    );
    assert_eq!(gov.scope, CloudPreset::GccHigh.scope());
    let dod = &config.clouds["dod"];
    assert_eq!(dod.token_endpoint, crate::config::TokenEndpointVersion::V1);
    assert_eq!(dod.scope, "s");
    let sim = &config.clouds["sim"];
    assert_eq!(sim.authority, "http://127.0.0.1:9000");
    assert_eq!(sim.scope, CloudPreset::Public.scope());
    let tenant = &config.tenants[1];
    assert_eq!(config.cloud_of(tenant).0, "gov");
    assert_eq!(config.cloud_of(&config.tenants[0]).0, DEFAULT_PROFILE);
}

#[test]
fn a_cloud_profiles_problems_are_on_its_own_keys() {
    let text = with("[clouds.gov]\napi = \"https://api-gov.security.microsoft.us\"\n");
    let line = message_has(
        &text,
        "clouds.gov",
        &["must name its preset or its authority"],
    );
    assert_eq!(line, 5);
    let text = with(
        "[clouds.gov]\ncloud = \"china\"\nauthority = \"http://login.example.us\"\n\
         token_endpoint = \"v3\"\nscope = \"\"\nca = \"/nonexistent/ca.pem\"\n",
    );
    let problems = problems(&text);
    assert_eq!(problems.len(), 5, "{problems:#?}");
    for (key, says, needle) in [
        ("clouds.gov.cloud", "`china` is not a cloud", "china"),
        ("clouds.gov.authority", "must be https://", "authority"),
        ("clouds.gov.token_endpoint", "neither", "v3"),
        ("clouds.gov.scope", "must not be empty", "scope"),
        ("clouds.gov.ca", "/nonexistent/ca.pem", "ca ="),
    ] {
        let p = problem_on(&problems, key);
        assert!(p.message.contains(says), "{key}: {}", p.message);
        assert_eq!(p.line, line_of(&text, needle), "{key}");
    }
    // A host of another cloud under the preset is a warning on the profile's key.
    let config = ok(&with(
        "[clouds.gov]\ncloud = \"gcc-high\"\napi = \"https://api.security.microsoft.com\"\n",
    ));
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.starts_with("clouds.gov.api: api.security.microsoft.com")),
        "{:?}",
        config.warnings
    );
}

/// `[[api]]`s of Defender for Endpoint, Graph and a Defender XDR host, then `extra` (profiles).
fn known_apis(extra: &str) -> String {
    with(&format!(
        "[[api]]\nname = \"mde\"\nprefix = \"/mde\"\nurl = \"https://api.securitycenter.microsoft.com\"\n\
         [[api]]\nname = \"graph\"\nprefix = \"/graph\"\nurl = \"https://graph.microsoft.com\"\n\
         [[api]]\nname = \"xdr-eu\"\nprefix = \"/xdr\"\nurl = \"https://eu.api.security.microsoft.com\"\n\
         {extra}"
    ))
}

fn endpoint(url: &str) -> ApiEndpoint {
    ApiEndpoint {
        url: url.parse().expect("uri"),
        scope: format!("{url}/.default"),
    }
}

#[test]
fn well_known_apis_are_derived_for_each_preset_in_use() {
    let profiles = "[clouds.gcc]\ncloud = \"gcc\"\n[clouds.high]\ncloud = \"gcc-high\"\n\
                    [clouds.dod]\ncloud = \"dod\"\n[clouds.pub]\ncloud = \"public\"\n\
                    [clouds.unused]\nauthority = \"http://127.0.0.1:9000\"\n";
    let mut text = known_apis(profiles);
    for (i, cloud) in ["gcc", "high", "dod", "pub"].into_iter().enumerate() {
        text += &format!("[[tenant]]\nname = \"t{i}\"\nid = \"4444444{i}-4444-4444-4444-444444444444\"\ncloud = \"{cloud}\"\n");
    }
    let config = ok(&text);
    let (mde, graph, xdr) = (&config.apis[0], &config.apis[1], &config.apis[2]);
    assert_eq!(
        mde.clouds["gcc"],
        endpoint("https://api-gcc.securitycenter.microsoft.us")
    );
    assert_eq!(
        mde.clouds["high"],
        endpoint("https://api-gov.securitycenter.microsoft.us")
    );
    assert_eq!(
        mde.clouds["dod"],
        endpoint("https://api-gov.securitycenter.microsoft.us")
    );
    assert_eq!(
        mde.clouds["pub"],
        endpoint("https://api.securitycenter.microsoft.com")
    );
    assert_eq!(graph.clouds["gcc"], endpoint("https://graph.microsoft.com"));
    assert_eq!(graph.clouds["high"], endpoint("https://graph.microsoft.us"));
    assert_eq!(
        graph.clouds["dod"],
        endpoint("https://dod-graph.microsoft.us")
    );
    assert_eq!(
        xdr.clouds["gcc"],
        endpoint("https://api-gcc.security.microsoft.us")
    );
    assert_eq!(
        xdr.clouds["dod"],
        endpoint("https://api-gov.security.microsoft.us")
    );
    // The public preset keeps the URL, regional host and scope alike.
    assert_eq!(
        xdr.clouds["pub"],
        ApiEndpoint {
            url: Uri::from_static("https://eu.api.security.microsoft.com"),
            scope: "https://api.security.microsoft.com/.default".into(),
        }
    );
    // Only profiles in use get an entry; the runtime looks endpoints up by the tenant's.
    assert!(!mde.clouds.contains_key("unused"));
    assert_eq!(mde.clouds.len(), 4);
    // The runtime's lookup: the tenant's profile, then the API's endpoint there.
    let (cloud, _) = config.cloud_of(&config.tenants[3]);
    assert_eq!(cloud, "dod");
    let dod = endpoint("https://dod-graph.microsoft.us");
    assert_eq!(
        graph.endpoint(Some(cloud)),
        Some((&dod.url, dod.scope.as_str()))
    );
    assert_eq!(
        mde.endpoint(Some(DEFAULT_PROFILE)),
        Some((&mde.url, mde.scope.as_str()))
    );
}

#[test]
fn api_clouds_written_win_and_default_their_scope() {
    let text = format!(
        "{}{}",
        with(
            "[clouds.gov]\ncloud = \"gcc-high\"\n\
             [clouds.sim]\nauthority = \"http://127.0.0.1:9000\"\n\
             [[api]]\nname = \"mde\"\nprefix = \"/mde\"\nurl = \"https://api.securitycenter.microsoft.com\"\n\
             [api.clouds.gov]\nurl = \"https://us.api-gov.securitycenter.microsoft.us\"\n\
             [api.clouds.sim]\nurl = \"http://127.0.0.1:9002\"\nscope = \"api://sim/.default\"\n"
        ),
        agency("", "sim")
    );
    let config = ok(&text);
    let mde = &config.apis[0];
    assert_eq!(
        mde.clouds["gov"],
        ApiEndpoint {
            url: Uri::from_static("https://us.api-gov.securitycenter.microsoft.us"),
            scope: "https://api-gov.securitycenter.microsoft.us/.default".into(),
        }
    );
    assert_eq!(mde.clouds["sim"].scope, "api://sim/.default");
    assert_eq!(
        mde.endpoint(Some("sim")).map(|(u, _)| u.to_string()),
        Some("http://127.0.0.1:9002/".to_owned())
    );
}

#[test]
fn an_api_without_an_endpoint_in_a_used_profile_is_named() {
    // An authority-only profile derives nothing, even for a well-known host.
    let text = format!(
        "{}{}",
        known_apis("[clouds.sim]\nauthority = \"http://127.0.0.1:9000\"\n"),
        agency("", "sim")
    );
    let problems = problems(&text);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    let p = problem_on(&problems, "api[0].clouds.sim");
    assert!(
        p.message.contains("tenant `agency` uses")
            && p.message.contains("names no `cloud` preset")
            && p.message.contains("add [api.clouds.sim]"),
        "{}",
        p.message
    );
    assert_eq!(p.line, line_of(&text, "name = \"mde\""));

    // An API on an unknown host has no gov URL to derive; an unused profile needs none.
    let text = format!(
        "{}{}",
        with(
            "[clouds.gov]\ncloud = \"gcc-high\"\n[clouds.idle]\ncloud = \"dod\"\n\
             [[api]]\nname = \"own\"\nprefix = \"/own\"\nurl = \"https://api.example.com\"\n"
        ),
        agency("", "gov")
    );
    let problems = super::problems(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = problem_on(&problems, "api[0].clouds.gov");
    assert!(
        p.message
            .contains("api.example.com is no Microsoft API host whose gcc-high host"),
        "{}",
        p.message
    );
    assert_eq!(p.line, line_of(&text, "name = \"own\""));

    // On the [[api]]'s line even when it has a table for another profile.
    let text = text.replace(
        "url = \"https://api.example.com\"\n",
        "url = \"https://api.example.com\"\n[api.clouds.idle]\nurl = \"https://idle.example\"\n",
    );
    let problems = super::problems(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(
        problem_on(&problems, "api[0].clouds.gov").line,
        line_of(&text, "name = \"own\"")
    );
}

#[test]
fn api_cloud_tables_are_checked() {
    let text = with(
        "[clouds.gov]\ncloud = \"gcc\"\n\
         [[api]]\nname = \"mde\"\nprefix = \"/mde\"\nurl = \"https://api.securitycenter.microsoft.com\"\n\
         [api.clouds.gov]\nurl = \"http://api.example.us\"\nscope = \" \"\n\
         [api.clouds.gvo]\nurl = \"https://x.example\"\n\
         [api.clouds.default]\nurl = \"https://x.example\"\n\
         [api.clouds.nourl]\nscope = \"s\"\n",
    );
    let problems = problems(&text);
    assert_eq!(problems.len(), 6, "{problems:#?}");
    for (key, says, needle) in [
        (
            "api[0].clouds.gov.url",
            "plain http is only allowed for loopback",
            "api.example.us",
        ),
        (
            "api[0].clouds.gov.scope",
            "must not be empty",
            "scope = \" \"",
        ),
        (
            "api[0].clouds.gvo",
            "no cloud profile `gvo`; configured: `gov`",
            "clouds.gvo",
        ),
        (
            "api[0].clouds.default",
            "`default` is [cloud]",
            "clouds.default",
        ),
        ("api[0].clouds.nourl.url", "is required", "clouds.nourl"),
        (
            "api[0].clouds.nourl",
            "no cloud profile `nourl`",
            "clouds.nourl",
        ),
    ] {
        let p = problem_on(&problems, key);
        assert!(p.message.contains(says), "{key}: {}", p.message);
        assert_eq!(p.line, line_of(&text, needle), "{key}");
    }
}

#[test]
fn unknown_keys_in_the_new_tables_are_named_with_their_line() {
    let text = format!(
        "{}{}",
        with(
            "[apps.acme]\nclient_id = \"x\"\ncolour = 1\n[clouds.gov]\ncloud = \"gcc\"\nurl = \"u\"\n\
             [[api]]\nname = \"mde\"\nprefix = \"/mde\"\nurl = \"https://a.example\"\ncloud = \"gov\"\n\
             [api.clouds.gov]\nurl = \"https://b.example\"\nper_minute = 1\n"
        ),
        "[[tenant]]\nname = \"agency\"\nid = \"44444444-4444-4444-4444-444444444444\"\napps = \"acme\"\n"
    );
    let problems = problems(&text);
    assert_eq!(problems.len(), 5, "{problems:#?}");
    for (key, says, needle) in [
        (
            "apps.acme.colour",
            "unknown key `colour`; expected one of: client_id",
            "colour",
        ),
        (
            "clouds.gov.url",
            "expected one of: cloud, authority",
            "url = \"u\"",
        ),
        ("api[0].cloud", "[api.clouds.NAME]", "cloud = \"gov\""),
        (
            "api[0].clouds.gov.per_minute",
            "expected one of: url, scope",
            "per_minute",
        ),
        ("tenant[1].apps", "app = \\\"NAME\\\"", "apps = "),
    ] {
        let p = problem_on(&problems, key);
        assert!(
            p.message.contains(&says.replace("\\\"", "\"")),
            "{key}: {}",
            p.message
        );
        assert_eq!(p.line, line_of(&text, needle), "{key}");
    }
}
