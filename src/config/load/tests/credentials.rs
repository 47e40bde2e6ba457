//! Credentials and the files the config points at: secrets, certificates, trust roots.

use secrecy::ExposeSecret;

use super::{env, origin, parse, problem_on, problems, with, TempDir, APP, CLIENT, TENANT};
use crate::config::load::{load_file, parse_str};
use crate::config::{Credential, KeyFormat};

#[test]
fn inline_secret_is_refused_without_echoing_it() {
    for inline in ["\"hunter2-secret\"", "123456789"] {
        let text = APP.replace("{ env = \"SECRET\" }", inline) + TENANT;
        let errors = parse(&text).expect_err("inline secret");
        let p = problem_on(&errors.problems, "app.client_secret");
        assert!(p.message.contains("never written inline"), "{}", p.message);
        assert_eq!(p.line, Some(4));
        let shown = format!("{errors} {errors:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("123456789"),
            "{shown}"
        );
    }
}

#[test]
fn missing_or_empty_env_var_names_the_variable() {
    for (var, says) in [("NOPE", "NOPE is not set"), ("EMPTY", "EMPTY is empty")] {
        let text = APP.replace("\"SECRET\"", &format!("\"{var}\"")) + TENANT;
        let problems = problems(&text);
        let p = problem_on(&problems, "app.client_secret");
        assert!(p.message.contains(says), "{}", p.message);
    }
}

#[test]
fn secret_file_is_read_relative_to_the_config_and_trimmed() {
    let dir = TempDir::new();
    dir.write("app-secret", "from-file\r\n");
    let text = APP.replace("{ env = \"SECRET\" }", "{ file = \"app-secret\" }") + TENANT;
    let config = parse_str(&text, &dir.0.join("proxy.toml"), &env).expect("valid");
    match &config.app.credential {
        Credential::Secret(secret) => assert_eq!(secret.expose_secret(), "from-file"),
        other => panic!("expected a secret, got {other:?}"),
    }

    dir.write("blank", "\n");
    let text = APP.replace("{ env = \"SECRET\" }", "{ file = \"blank\" }") + TENANT;
    let errors = parse_str(&text, &dir.0.join("proxy.toml"), &env).expect_err("empty file");
    assert!(problem_on(&errors.problems, "app.client_secret")
        .message
        .contains("is empty"));
}

#[test]
fn missing_secret_file_is_named() {
    let text = APP.replace(
        "{ env = \"SECRET\" }",
        "{ file = \"/nonexistent/app-secret\" }",
    ) + TENANT;
    let problems = problems(&text);
    let p = problem_on(&problems, "app.client_secret");
    assert!(
        p.message.contains("/nonexistent/app-secret"),
        "{}",
        p.message
    );
}

#[test]
fn secret_source_must_be_exactly_one() {
    for source in ["{ env = \"SECRET\", file = \"x\" }", "{ }"] {
        let text = APP.replace("{ env = \"SECRET\" }", source) + TENANT;
        problem_on(&problems(&text), "app.client_secret");
    }
}

#[test]
fn credential_is_required_and_unique() {
    let text = format!("[app]\nclient_id = \"{CLIENT}\"\n{TENANT}");
    assert!(problem_on(&problems(&text), "app")
        .message
        .contains("no credential"));
    let text = with("certificate = { cert = \"c.pem\", key = \"k.pem\" }");
    assert!(problem_on(&problems(&text), "app.certificate")
        .message
        .contains("both client_secret and certificate"));
    let text = with("federated_token_file = \"token\"");
    assert!(problem_on(&problems(&text), "app.federated_token_file")
        .message
        .contains("both client_secret and federated_token_file"));
    let text = with(
        "certificate = { cert = \"c.pem\", key = \"k.pem\" }\nfederated_token_file = \"token\"",
    );
    let problems = problems(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problem_on(&problems, "app.federated_token_file")
            .message
            .contains("client_secret, certificate and federated_token_file"),
        "{problems:#?}"
    );
}

/// The test environment plus `vars`.
pub(super) fn env_with<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
            .or_else(|| env(name))
    }
}

const FEDERATED_APP: &str = "[app]\nclient_id = \"11111111-1111-1111-1111-111111111111\"\n";

#[test]
fn federated_token_file_is_a_path_resolved_like_the_others() {
    let dir = TempDir::new();
    let token = dir.write("azure-identity-token", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n");
    let text = format!("{FEDERATED_APP}federated_token_file = \"azure-identity-token\"\n{TENANT}");
    let config = parse_str(&text, &dir.origin(), &env).expect("valid");
    match &config.app.credential {
        Credential::Federated(f) => assert_eq!(f.path, token),
        other => panic!("expected a federated credential, got {other:?}"),
    }
    // Only the path is kept: the token itself is read for every token request.
    assert!(!format!("{config:?}").contains("c2ln"));

    let text = format!(
        "{FEDERATED_APP}federated_token_file = \"{}\"\n{TENANT}",
        token.display()
    );
    let config = parse_str(&text, &origin(), &env).expect("absolute path");
    assert!(matches!(&config.app.credential, Credential::Federated(f) if f.path == token));
}

#[test]
fn federated_token_file_must_be_readable_and_not_empty() {
    let dir = TempDir::new();
    dir.write("blank", "  \n");
    for (file, says) in [
        ("missing-token", "cannot read federated token file"),
        ("blank", "is empty"),
    ] {
        let text = format!("{FEDERATED_APP}federated_token_file = \"{file}\"\n{TENANT}");
        let errors = parse_str(&text, &dir.origin(), &env).expect_err(file);
        let p = problem_on(&errors.problems, "app.federated_token_file");
        assert!(
            p.message.contains(says) && p.message.contains(file),
            "{}",
            p.message
        );
        assert_eq!(p.line, Some(3));
    }
    let text = format!("{FEDERATED_APP}federated_token_file = \" \"\n{TENANT}");
    problem_on(&problems(&text), "app.federated_token_file");
}

#[test]
fn workload_identity_environment_fills_in_what_app_leaves_out() {
    let dir = TempDir::new();
    let token = dir.write("projected", "header.payload.signature");
    let token_path = token.display().to_string();
    let vars = [
        ("AZURE_CLIENT_ID", "AAAAAAAA-1111-1111-1111-111111111111"),
        ("AZURE_FEDERATED_TOKEN_FILE", token_path.as_str()),
    ];
    // An empty [app]: both come from the environment, as the workload identity webhook sets them.
    let text = format!("[app]\n{TENANT}");
    let config = parse_str(&text, &origin(), &env_with(&vars)).expect("valid");
    assert_eq!(config.app.client_id, "aaaaaaaa-1111-1111-1111-111111111111");
    assert!(matches!(&config.app.credential, Credential::Federated(f) if f.path == token));

    // Explicit keys win over the environment.
    let config = parse_str(&with(""), &origin(), &env_with(&vars)).expect("valid");
    assert_eq!(config.app.client_id, CLIENT);
    assert!(matches!(config.app.credential, Credential::Secret(_)));

    // A token file named by the environment that cannot be read is reported with its variable.
    let vars = [("AZURE_FEDERATED_TOKEN_FILE", "/nonexistent/projected")];
    let text = format!("{FEDERATED_APP}{TENANT}");
    let errors = parse_str(&text, &origin(), &env_with(&vars)).expect_err("unreadable");
    let p = problem_on(&errors.problems, "app");
    assert!(
        p.message.contains("/nonexistent/projected")
            && p.message.contains("AZURE_FEDERATED_TOKEN_FILE"),
        "{}",
        p.message
    );

    // Empty variables count as unset, as the Azure SDKs treat them.
    let vars = [("AZURE_CLIENT_ID", ""), ("AZURE_FEDERATED_TOKEN_FILE", "")];
    let errors = parse_str(&format!("[app]\n{TENANT}"), &origin(), &env_with(&vars))
        .expect_err("nothing set");
    assert!(problem_on(&errors.problems, "app.client_id")
        .message
        .contains("AZURE_CLIENT_ID"));
    assert!(problem_on(&errors.problems, "app")
        .message
        .contains("no credential"));

    // A client id from the environment is checked like one from the file.
    let vars = [("AZURE_CLIENT_ID", "not-a-guid")];
    let text = format!("[app]\nclient_secret = {{ env = \"SECRET\" }}\n{TENANT}");
    let errors = parse_str(&text, &origin(), &env_with(&vars)).expect_err("bad id");
    assert!(problem_on(&errors.problems, "app.client_id")
        .message
        .contains("AZURE_CLIENT_ID = `not-a-guid`"));
}

fn cert_config(dir: &TempDir) -> String {
    let app = format!(
        "[app]\nclient_id = \"{CLIENT}\"\ncertificate = {{ cert = \"{}\", key = \"key.pem\" }}\n",
        dir.0.join("cert.pem").display()
    );
    app + TENANT
}

#[test]
fn certificate_credential_loads_pkcs8() {
    let dir = TempDir::new();
    let generated = rcgen::generate_simple_self_signed(vec!["app".into()]).expect("rcgen");
    dir.write("cert.pem", &generated.cert.pem());
    dir.write("key.pem", &generated.key_pair.serialize_pem());
    let config = parse_str(&cert_config(&dir), &dir.0.join("proxy.toml"), &env).expect("valid");
    let Credential::Certificate(cert) = &config.app.credential else {
        panic!("expected a certificate credential");
    };
    assert_eq!(cert.cert_der, generated.cert.der().to_vec());
    assert_eq!(cert.key_format, KeyFormat::Pkcs8);
    assert_eq!(
        cert.key_der.expose_secret().as_slice(),
        generated.key_pair.serialize_der().as_slice()
    );
    assert_eq!(cert.key_path, dir.0.join("key.pem"));
    assert!(!format!("{config:?}").contains(&generated.key_pair.serialize_pem()));
}

#[test]
fn certificate_credential_loads_pkcs1_rsa() {
    use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
    let dir = TempDir::new();
    let generated = rcgen::generate_simple_self_signed(vec!["app".into()]).expect("rcgen");
    dir.write("cert.pem", &generated.cert.pem());
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).expect("rsa key");
    dir.write("key.pem", &key.to_pkcs1_pem(LineEnding::LF).expect("pem"));
    let config = parse_str(&cert_config(&dir), &dir.0.join("proxy.toml"), &env).expect("valid");
    let Credential::Certificate(cert) = &config.app.credential else {
        panic!("expected a certificate credential");
    };
    assert_eq!(cert.key_format, KeyFormat::Pkcs1);
}

#[test]
fn certificate_problems_name_each_file() {
    let dir = TempDir::new();
    dir.write("cert.pem", "not pem at all\n");
    dir.write(
        "key.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    let errors = parse_str(&cert_config(&dir), &dir.0.join("proxy.toml"), &env).expect_err("bad");
    assert_eq!(errors.problems.len(), 2, "{errors}");
    assert!(problem_on(&errors.problems, "app.certificate.cert")
        .message
        .contains("cert.pem"));
    assert!(problem_on(&errors.problems, "app.certificate.key")
        .message
        .contains("no unencrypted private key"));

    let text = format!("[app]\nclient_id = \"{CLIENT}\"\ncertificate = {{ cert = \"/nonexistent/c.pem\" }}\n{TENANT}");
    let problems = problems(&text);
    assert!(problem_on(&problems, "app.certificate.cert")
        .message
        .contains("cannot read"));
    assert!(problem_on(&problems, "app.certificate.key")
        .message
        .contains("required"));
}

#[test]
fn extra_ca_must_hold_certificates() {
    let dir = TempDir::new();
    let generated = rcgen::generate_simple_self_signed(vec!["ca".into()]).expect("rcgen");
    dir.write("ca.pem", &generated.cert.pem());
    dir.write("empty.pem", "");
    let origin = dir.0.join("proxy.toml");
    let config = parse_str(&with("[cloud]\nca = \"ca.pem\""), &origin, &env).expect("valid");
    assert_eq!(config.cloud.ca, Some(dir.0.join("ca.pem")));
    for bad in ["empty.pem", "missing.pem"] {
        let errors = parse_str(&with(&format!("[cloud]\nca = \"{bad}\"")), &origin, &env)
            .expect_err("bad ca");
        problem_on(&errors.problems, "cloud.ca");
    }
}

#[test]
fn load_file_reads_the_file_and_reports_a_missing_one() {
    let dir = TempDir::new();
    let path = dir.write("proxy.toml", &with("").replace("\"SECRET\"", "\"PATH\""));
    // PATH is set in any test environment; a real variable proves std::env is the lookup.
    load_file(&path).expect("valid");
    let errors = load_file(&dir.0.join("missing.toml")).expect_err("missing");
    assert_eq!(errors.problems.len(), 1);
    assert!(
        errors.to_string().contains("cannot read config file"),
        "{errors}"
    );
}
