//! Credentials and the files the config points at: secrets, certificates, trust roots.

use secrecy::ExposeSecret;

use super::{env, parse, problem_on, problems, with, TempDir, APP, CLIENT, TENANT};
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
        .contains("not both"));
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
