//! `[listen]`: hardening limits, `[listen.tls]`, who may listen off loopback, and the warnings
//! about secret files other users can read.

use std::time::Duration;

use super::{env, ok, problem_on, problems, with, TempDir, APP, CLIENT, TENANT};
use crate::config::load::parse_str;
use crate::config::{defaults, ConnectionOverflow, ListenLimits, ServerTlsConfig};

pub(super) const KEY_HASH: &str =
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// A server certificate and key (`server.pem`, `server-key.pem`) and a client CA
/// (`client-ca.pem`) in `dir`, owner-only like real key files.
pub(super) fn tls_files(dir: &TempDir) {
    let server = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    dir.write("server.pem", &server.cert.pem());
    let key = dir.write("server-key.pem", &server.key_pair.serialize_pem());
    chmod(&key, 0o600);
    let ca = rcgen::generate_simple_self_signed(vec!["client-ca".into()]).expect("rcgen");
    dir.write("client-ca.pem", &ca.cert.pem());
}

pub(super) fn chmod(path: &std::path::Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

#[test]
fn listen_limits_default() {
    let config = ok(&with(""));
    let limits = &config.listen.limits;
    assert_eq!(*limits, ListenLimits::default());
    assert_eq!(limits.max_header_bytes, defaults::MAX_HEADER_BYTES);
    assert_eq!(limits.header_timeout, defaults::HEADER_TIMEOUT);
    assert_eq!(limits.idle_timeout, defaults::IDLE_TIMEOUT);
    assert_eq!(limits.max_connections, defaults::MAX_CONNECTIONS);
    assert_eq!(limits.on_max_connections, ConnectionOverflow::Queue);
    assert_eq!(limits.max_body_bytes, None);
    assert_eq!(
        limits.h2_max_concurrent_streams,
        defaults::H2_MAX_CONCURRENT_STREAMS
    );
    assert_eq!(
        limits.h2_max_header_list_size,
        defaults::H2_MAX_HEADER_LIST_SIZE
    );
    assert_eq!(config.listen.tls, None);
    assert!(config.clients.is_empty());
    assert!(config.cors.allowed_origins.is_empty());
    assert_eq!(config.cors.max_age, defaults::CORS_MAX_AGE);
    assert_eq!(config.audit, None);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn listen_limits_are_read() {
    let config = ok(&with(
        "[listen]\nmax_header_bytes = 1024\nheader_timeout = \"2s\"\nidle_timeout = \"5m\"\n\
         max_connections = 1\non_max_connections = \"refuse\"\nmax_body_bytes = 1048576\n\
         h2_max_concurrent_streams = 1\nh2_max_header_list_size = 1048576\n\
         body_idle_timeout = \"15s\"",
    ));
    assert_eq!(
        config.listen.limits,
        ListenLimits {
            max_header_bytes: 1024,
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(300),
            max_connections: 1,
            on_max_connections: ConnectionOverflow::Refuse,
            max_body_bytes: Some(1_048_576),
            body_idle_timeout: Duration::from_secs(15),
            h2_max_concurrent_streams: 1,
            h2_max_header_list_size: 1_048_576,
        }
    );
    let config = ok(&with(
        "[listen]\nmax_body_bytes = 0\non_max_connections = \"queue\"\nmax_header_bytes = 1048576",
    ));
    assert_eq!(config.listen.limits.max_body_bytes, None);
    assert_eq!(
        config.listen.limits.on_max_connections,
        ConnectionOverflow::Queue
    );
    assert_eq!(config.listen.limits.max_header_bytes, 1_048_576);
}

#[test]
fn each_listen_limit_is_checked() {
    for (key, value, says) in [
        ("max_header_bytes", "1023", "at least 1024"),
        ("max_header_bytes", "1048577", "at most 1048576"),
        ("max_header_bytes", "-1", "at least 1024"),
        ("header_timeout", "\"0s\"", "greater than zero"),
        ("header_timeout", "\"10\"", "not a duration"),
        ("idle_timeout", "\"0ms\"", "greater than zero"),
        ("max_connections", "0", "at least 1"),
        (
            "on_max_connections",
            "\"drop\"",
            "neither \"queue\" nor \"refuse\"",
        ),
        ("max_body_bytes", "-1", "must not be negative"),
        ("body_idle_timeout", "\"0s\"", "greater than zero"),
        ("body_idle_timeout", "\"soon\"", "not a duration"),
        ("h2_max_concurrent_streams", "0", "at least 1"),
        (
            "h2_max_concurrent_streams",
            "4294967296",
            "at most 4294967295",
        ),
        ("h2_max_header_list_size", "1000", "at least 1024"),
    ] {
        let problems = problems(&with(&format!("[listen]\n{key} = {value}")));
        assert_eq!(problems.len(), 1, "{key} = {value}: {problems:#?}");
        let p = problem_on(&problems, &format!("listen.{key}"));
        assert_eq!(p.line, Some(6), "{key} = {value}");
        assert!(p.message.contains(says), "{key} = {value}: {}", p.message);
    }
}

fn listen_on(addr: &str, extra: &str) -> String {
    format!("[listen]\naddr = \"{addr}\"\n{extra}\n{APP}{TENANT}")
}

const GRAFANA: &str =
    "[[client]]\nname = \"grafana\"\nkey_sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\ntenants = [\"*\"]\n";

#[test]
fn non_loopback_listener_is_accepted_with_clients_or_mtls_only() {
    // Neither: refused, on the addr line, naming the ways out.
    let problems = problems(&listen_on("0.0.0.0:8080", ""));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = problem_on(&problems, "listen.addr");
    assert_eq!(p.line, Some(2));
    for way in ["[[client]]", "client_ca", "allow_unauthenticated"] {
        assert!(p.message.contains(way), "{}", p.message);
    }

    // A client.
    let config = ok(&(listen_on("0.0.0.0:8080", "") + GRAFANA));
    assert!(!config.insecure_listener());
    // Keys over plain HTTP off loopback: allowed, with a warning.
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings[0].starts_with("listen.addr: "));
    assert!(config.warnings[0].contains("[listen.tls]"));

    // mTLS.
    let dir = TempDir::new();
    tls_files(&dir);
    let text = listen_on(
        "[::]:8443",
        "[listen.tls]\ncert = \"server.pem\"\nkey = \"server-key.pem\"\nclient_ca = \"client-ca.pem\"",
    );
    let config = parse_str(&text, &dir.origin(), &env).expect("valid");
    assert!(!config.insecure_listener());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    // TLS without client_ca authenticates nobody.
    let text = listen_on(
        "[::]:8443",
        "[listen.tls]\ncert = \"server.pem\"\nkey = \"server-key.pem\"",
    );
    let errors = parse_str(&text, &dir.origin(), &env).expect_err("no auth");
    problem_on(&errors.problems, "listen.addr");

    // Only the opt-in: starts, and is the insecure case.
    let config = ok(&listen_on("10.0.0.1:8080", "allow_unauthenticated = true"));
    assert!(config.insecure_listener());
    // On loopback, nothing is insecure whatever else is set.
    assert!(!ok(&listen_on("127.0.0.1:8080", "allow_unauthenticated = true")).insecure_listener());
}

#[test]
fn tls_files_are_checked_and_resolved_against_the_config_dir() {
    let dir = TempDir::new();
    tls_files(&dir);
    let text = with(
        "[listen.tls]\ncert = \"server.pem\"\nkey = \"server-key.pem\"\nclient_ca = \"client-ca.pem\"",
    );
    let config = parse_str(&text, &dir.origin(), &env).expect("valid");
    assert_eq!(
        config.listen.tls,
        Some(ServerTlsConfig {
            cert: dir.0.join("server.pem"),
            key: dir.0.join("server-key.pem"),
            client_ca: Some(dir.0.join("client-ca.pem")),
        })
    );
    let text = with("[listen.tls]\ncert = \"server.pem\"\nkey = \"server-key.pem\"");
    let config = parse_str(&text, &dir.origin(), &env).expect("valid");
    assert_eq!(config.listen.tls.expect("tls").client_ca, None);
}

#[test]
fn tls_problems_name_the_file_never_the_key() {
    let dir = TempDir::new();
    tls_files(&dir);
    let origin = dir.origin();

    // A missing key file: named, and no other problem.
    let text = with("[listen.tls]\ncert = \"server.pem\"\nkey = \"missing-key.pem\"");
    let errors = parse_str(&text, &origin, &env).expect_err("missing key");
    assert_eq!(errors.problems.len(), 1, "{errors}");
    let p = problem_on(&errors.problems, "listen.tls.key");
    assert!(p.message.contains("missing-key.pem"), "{}", p.message);
    assert!(p.message.contains("cannot read"), "{}", p.message);
    assert_eq!(p.line, Some(7));

    // A key file that is not a key: its content is not shown.
    dir.write(
        "garbage-key.pem",
        "-----BEGIN PRIVATE KEY-----\nSECRETSTUFF!!\n",
    );
    let text = with("[listen.tls]\ncert = \"server.pem\"\nkey = \"garbage-key.pem\"");
    let errors = parse_str(&text, &origin, &env).expect_err("bad key");
    let p = problem_on(&errors.problems, "listen.tls.key");
    assert!(p.message.contains("garbage-key.pem"), "{}", p.message);
    let shown = format!("{errors} {errors:?}");
    assert!(!shown.contains("SECRETSTUFF"), "{shown}");

    // The key of another certificate.
    let other = rcgen::generate_simple_self_signed(vec!["other".into()]).expect("rcgen");
    dir.write("other-key.pem", &other.key_pair.serialize_pem());
    let text = with("[listen.tls]\ncert = \"server.pem\"\nkey = \"other-key.pem\"");
    let errors = parse_str(&text, &origin, &env).expect_err("mismatch");
    let p = problem_on(&errors.problems, "listen.tls.key");
    assert!(p.message.contains("not the key of"), "{}", p.message);
    let shown = format!("{errors} {errors:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");

    // A certificate file and a client CA without certificates; cert and key are required.
    dir.write("empty.pem", "");
    let text = with(
        "[listen.tls]\ncert = \"empty.pem\"\nkey = \"server-key.pem\"\nclient_ca = \"empty.pem\"",
    );
    let errors = parse_str(&text, &origin, &env).expect_err("empty");
    assert_eq!(errors.problems.len(), 2, "{errors}");
    assert!(problem_on(&errors.problems, "listen.tls.cert")
        .message
        .contains("no PEM certificate"));
    assert_eq!(
        problem_on(&errors.problems, "listen.tls.client_ca").line,
        Some(8)
    );
    let problems = problems(&with("[listen.tls]\nclient_ca = \"/nonexistent/ca.pem\""));
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problem_on(&problems, "listen.tls.cert")
        .message
        .contains("required"));
    assert!(problem_on(&problems, "listen.tls.key")
        .message
        .contains("required"));
    // A missing key points at its table.
    assert_eq!(problem_on(&problems, "listen.tls.key").line, Some(5));
}

#[cfg(unix)]
#[test]
fn secret_files_readable_by_others_are_a_warning() {
    let dir = TempDir::new();
    tls_files(&dir);
    let secret = dir.write("app-secret", "from-file\n");
    let password = dir.write("redis-password", "pw\n");
    let text = format!(
        "[app]\nclient_id = \"{CLIENT}\"\nclient_secret = {{ file = \"app-secret\" }}\n\
         [listen.tls]\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n\
         [rate_limit]\nbackend = \"redis://127.0.0.1:6379\"\nbackend_password = {{ file = \"redis-password\" }}\n{TENANT}"
    );

    chmod(&secret, 0o600);
    chmod(&password, 0o600);
    let config = parse_str(&text, &dir.origin(), &env).expect("valid");
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    chmod(&secret, 0o644);
    chmod(&password, 0o640);
    chmod(&dir.0.join("server-key.pem"), 0o604);
    let config = parse_str(&text, &dir.origin(), &env).expect("a warning, not an error");
    assert_eq!(
        config.warnings,
        [
            format!(
                "listen.tls.key: {} is readable by other users (mode 0604); chmod 600 it",
                dir.0.join("server-key.pem").display()
            ),
            format!(
                "app.client_secret: {} is readable by other users (mode 0644); chmod 600 it",
                secret.display()
            ),
            format!(
                "rate_limit.backend_password: {} is readable by other users (mode 0640); chmod 600 it",
                password.display()
            ),
        ]
    );
    // Never the secret itself.
    assert!(!config.warnings.concat().contains("from-file"));

    // The app's certificate key, and a group-writable file.
    let app = rcgen::generate_simple_self_signed(vec!["app".into()]).expect("rcgen");
    dir.write("app.pem", &app.cert.pem());
    let key = dir.write("app-key.pem", &app.key_pair.serialize_pem());
    chmod(&key, 0o620);
    let text = format!(
        "[app]\nclient_id = \"{CLIENT}\"\ncertificate = {{ cert = \"app.pem\", key = \"app-key.pem\" }}\n{TENANT}"
    );
    let config = parse_str(&text, &dir.origin(), &env).expect("valid");
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(
        config.warnings[0].starts_with("app.certificate.key: ")
            && config.warnings[0].contains("writable by other users (mode 0620)"),
        "{:?}",
        config.warnings
    );
}
