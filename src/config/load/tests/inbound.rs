//! `[[client]]`, `[cors]`, `[audit]`, and a hardened config using all of them.

use std::time::Duration;

use http::Method;

use super::listen::{chmod, tls_files, KEY_HASH};
use super::{env, ok, parse, problem_on, problems, with, TempDir, APP, CLIENT, CONTOSO};
use crate::config::load::parse_str;
use crate::config::{AuditTarget, ClientConfig, ClientCredential, ConnectionOverflow, TenantAllow};

const FABRIKAM: &str = "33333333-3333-3333-3333-333333333333";
const OTHER_HASH: &str = "2C26B46B68FFC68FF99B453C1D30413413422D706483BFA0F98A5E886266E7AE";

/// `APP`, two tenants (contoso, fabrikam), then `extra`: `[[client]]` starts at line 12.
fn two_tenants(extra: &str) -> String {
    format!(
        "{APP}[[tenant]]\nname = \"contoso\"\nid = \"{CONTOSO}\"\n\
         [[tenant]]\nname = \"fabrikam\"\nid = \"{FABRIKAM}\"\n\n{extra}"
    )
}

fn client(body: &str) -> String {
    two_tenants(&format!("[[client]]\n{body}"))
}

#[test]
fn clients_by_tenant_name_or_id_or_all() {
    let text = two_tenants(&format!(
        "[[client]]\nname = \"grafana\"\nkey_sha256 = \"{KEY_HASH}\"\n\
         tenants = [\"contoso\", \"{}\", \"fabrikam\"]\nmethods = [\"GET\", \"HEAD\", \"GET\"]\n\
         [[client]]\nname = \"soar-2\"\nkey_sha256 = \"{OTHER_HASH}\"\ntenants = [\"*\"]\n",
        FABRIKAM.to_uppercase()
    ));
    let config = ok(&text);
    let mut hash = [0u8; 32];
    hash[..4].copy_from_slice(&[0x9f, 0x86, 0xd0, 0x81]);
    let ClientCredential::KeySha256(first) = config.clients[0].credential else {
        panic!("expected a key");
    };
    assert_eq!(first[..4], hash[..4]);
    assert_eq!(first[31], 0x08);
    assert_eq!(
        config.clients[0],
        ClientConfig {
            name: "grafana".into(),
            credential: ClientCredential::KeySha256(first),
            // The id became a name; the repeat is gone.
            tenants: TenantAllow::Only(vec!["contoso".into(), "fabrikam".into()]),
            methods: Some(vec![Method::GET, Method::HEAD]),
        }
    );
    assert!(config.clients[0].allows_method(&Method::HEAD));
    assert!(!config.clients[0].allows_method(&Method::POST));
    assert!(config.clients[0].tenants.allows("fabrikam"));
    assert!(!config.clients[0].tenants.allows("acme"));
    let soar = &config.clients[1];
    assert_eq!(soar.tenants, TenantAllow::All);
    assert!(soar.tenants.allows("anything"));
    assert_eq!(soar.methods, None);
    assert!(soar.allows_method(&Method::DELETE));
    // Upper-case hex is the same hash.
    let ClientCredential::KeySha256(second) = soar.credential else {
        panic!("expected a key");
    };
    assert_eq!(second[0], 0x2c);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn client_debug_shows_a_hash_prefix_only() {
    let config = ok(&client(&format!(
        "name = \"grafana\"\nkey_sha256 = \"{KEY_HASH}\"\ntenants = [\"*\"]"
    )));
    let shown = format!("{config:?}");
    assert!(shown.contains("KeySha256(9f86d081…)"), "{shown}");
    assert!(!shown.contains(&KEY_HASH[..9]), "{shown}");
    assert_eq!(
        format!("{:?}", ClientCredential::CertSubject("a.example".into())),
        "CertSubject(\"a.example\")"
    );
}

#[test]
fn each_client_rule_is_one_problem_with_its_line() {
    let key = format!("key_sha256 = \"{KEY_HASH}\"");
    for (body, on, line, says) in [
        (
            format!("{key}\ntenants = [\"*\"]"),
            "client[0].name",
            13,
            "required",
        ),
        (
            format!("name = \"Grafana\"\n{key}\ntenants = [\"*\"]"),
            "client[0].name",
            13,
            "lower-case",
        ),
        (
            format!("name = \"-g\"\n{key}\ntenants = [\"*\"]"),
            "client[0].name",
            13,
            "start with",
        ),
        (
            "name = \"g\"\ntenants = [\"*\"]".into(),
            "client[0]",
            13,
            "no credential",
        ),
        (
            format!("name = \"g\"\n{key}\ncert_subject = \"g.example\"\ntenants = [\"*\"]"),
            "client[0].cert_subject",
            15,
            "not both",
        ),
        (
            "name = \"g\"\nkey_sha256 = \"abc\"\ntenants = [\"*\"]".into(),
            "client[0].key_sha256",
            14,
            "64 hex digits",
        ),
        (
            format!(
                "name = \"g\"\nkey_sha256 = \"{}zz\"\ntenants = [\"*\"]",
                &KEY_HASH[..62]
            ),
            "client[0].key_sha256",
            14,
            "64 hex digits",
        ),
        (
            "name = \"g\"\ncert_subject = \"g.example\"\ntenants = [\"*\"]".into(),
            "client[0].cert_subject",
            14,
            "needs [listen.tls] client_ca",
        ),
        (
            "name = \"g\"\ncert_subject = \" \"\ntenants = [\"*\"]".into(),
            "client[0].cert_subject",
            14,
            "empty",
        ),
        (
            format!("name = \"g\"\n{key}"),
            "client[0].tenants",
            13,
            "required",
        ),
        (
            format!("name = \"g\"\n{key}\ntenants = []"),
            "client[0].tenants",
            15,
            "not be empty",
        ),
        (
            format!("name = \"g\"\n{key}\ntenants = [\"*\", \"contoso\"]"),
            "client[0].tenants",
            15,
            "stand alone",
        ),
        (
            format!("name = \"g\"\n{key}\ntenants = [\"contoso\", \"acme\"]"),
            "client[0].tenants[1]",
            15,
            "no tenant named `acme`",
        ),
        (
            format!("name = \"g\"\n{key}\ntenants = [\"*\"]\nmethods = []"),
            "client[0].methods",
            16,
            "not be empty",
        ),
        (
            format!("name = \"g\"\n{key}\ntenants = [\"*\"]\nmethods = [\"GET\", \"get\"]"),
            "client[0].methods[1]",
            16,
            "upper-case (`GET`)",
        ),
        (
            format!("name = \"g\"\n{key}\ntenants = [\"*\"]\nmethods = [\"G T\"]"),
            "client[0].methods[0]",
            16,
            "not an HTTP method",
        ),
    ] {
        let problems = problems(&client(&body));
        assert_eq!(problems.len(), 1, "{body}: {problems:#?}");
        let p = problem_on(&problems, on);
        assert_eq!(p.line, Some(line), "{body}");
        assert!(p.message.contains(says), "{body}: {}", p.message);
    }
}

#[test]
fn a_pasted_key_is_never_echoed() {
    let problems = problems(&client(
        "name = \"g\"\nkey_sha256 = \"my-very-secret-client-key\"\ntenants = [\"*\"]",
    ));
    let shown = format!("{problems:?}");
    assert!(!shown.contains("my-very-secret"), "{shown}");
    // The key itself under `key`: pointed at key_sha256, not echoed either.
    let misplaced = self::problems(&client(
        "name = \"g\"\nkey = \"my-very-secret-client-key\"\ntenants = [\"*\"]",
    ));
    assert_eq!(misplaced.len(), 1, "{misplaced:#?}");
    let p = problem_on(&misplaced, "client[0].key");
    assert_eq!(p.line, Some(14));
    assert!(p.message.contains("key_sha256"), "{}", p.message);
    assert!(!format!("{misplaced:?}").contains("my-very-secret"));
}

#[test]
fn client_names_and_keys_are_unique() {
    let problems = problems(&two_tenants(&format!(
        "[[client]]\nname = \"g\"\nkey_sha256 = \"{KEY_HASH}\"\ntenants = [\"*\"]\n\
         [[client]]\nname = \"g\"\nkey_sha256 = \"{}\"\ntenants = [\"*\"]\n",
        KEY_HASH.to_uppercase()
    )));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    let name = problem_on(&problems, "client[1].name");
    assert!(name.message.contains("client[0]"), "{}", name.message);
    assert_eq!(name.line, Some(17));
    let key = problem_on(&problems, "client[1].key_sha256");
    assert!(
        key.message.contains("same key hash as client[0]"),
        "{}",
        key.message
    );
    assert_eq!(key.line, Some(18));
    assert!(!format!("{problems:?}").contains(KEY_HASH));
}

#[test]
fn cert_subject_clients_need_client_ca_and_differ() {
    let dir = TempDir::new();
    tls_files(&dir);
    let tls = "[listen.tls]\ncert = \"server.pem\"\nkey = \"server-key.pem\"\nclient_ca = \"client-ca.pem\"\n";
    let text = two_tenants(&format!(
        "{tls}[[client]]\nname = \"grafana\"\ncert_subject = \"grafana.soc.example\"\n\
         tenants = [\"contoso\"]\nmethods = [\"GET\"]\n"
    ));
    let config = parse_str(&text, &dir.origin(), &env).expect("valid");
    assert_eq!(
        config.clients[0].credential,
        ClientCredential::CertSubject("grafana.soc.example".into())
    );

    let text = two_tenants(&format!(
        "{tls}[[client]]\nname = \"a\"\ncert_subject = \"grafana.soc.example\"\ntenants = [\"*\"]\n\
         [[client]]\nname = \"b\"\ncert_subject = \"Grafana.SOC.example\"\ntenants = [\"*\"]\n"
    ));
    let errors = parse_str(&text, &dir.origin(), &env).expect_err("duplicate subject");
    assert_eq!(errors.problems.len(), 1, "{errors}");
    assert!(problem_on(&errors.problems, "client[1].cert_subject")
        .message
        .contains("client[0]"));

    // TLS without client_ca is not enough.
    let text = two_tenants(
        "[listen.tls]\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n\
         [[client]]\nname = \"a\"\ncert_subject = \"grafana.soc.example\"\ntenants = [\"*\"]\n",
    );
    let errors = parse_str(&text, &dir.origin(), &env).expect_err("no client_ca");
    problem_on(&errors.problems, "client[0].cert_subject");
}

#[test]
fn cors_origins() {
    let config = ok(&with(
        "[cors]\nallowed_origins = [\"https://Dashboards.SOC.example\", \"https://d.example:8443\", \
         \"http://localhost:3000\", \"https://dashboards.soc.example:443\"]\nmax_age = \"1h\"",
    ));
    assert_eq!(
        config.cors.allowed_origins,
        [
            "https://dashboards.soc.example",
            "https://d.example:8443",
            "http://localhost:3000"
        ]
    );
    assert_eq!(config.cors.max_age, Duration::from_secs(3600));
    // Origins without any client: allowed, with a warning.
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings[0].starts_with("cors.allowed_origins: "));

    let config = ok(&with("[cors]\nmax_age = \"0s\""));
    assert!(config.cors.allowed_origins.is_empty());
    assert_eq!(config.cors.max_age, Duration::ZERO);
    assert!(config.warnings.is_empty());

    for (bad, says) in [
        ("*", "not allowed"),
        ("null", "sandboxed"),
        ("https://*.soc.example", "wildcards"),
        ("https://dashboards.soc.example/", "must not end with '/'"),
        (
            "https://dashboards.soc.example/grafana",
            "must not have a path",
        ),
        ("https://dashboards.soc.example?x=1", "query"),
        ("https://user@dashboards.soc.example", "user information"),
        ("http://dashboards.soc.example", "must be https://"),
        ("ftp://dashboards.soc.example", "https:// origin"),
        ("dashboards.soc.example", "not an origin"),
        ("https://", "origin"),
        ("https://d.example:99999", "port"),
    ] {
        let text = with(&format!(
            "[cors]\nallowed_origins = [\"https://ok.example\", \"{bad}\"]"
        ));
        let problems = problems(&text);
        assert_eq!(problems.len(), 1, "{bad}: {problems:#?}");
        let p = problem_on(&problems, "cors.allowed_origins[1]");
        assert_eq!(p.line, Some(6), "{bad}");
        assert!(p.message.contains(says), "{bad}: {}", p.message);
    }
    let problems = problems(&with("[cors]\nmax_age = \"soon\""));
    assert_eq!(problem_on(&problems, "cors.max_age").line, Some(6));
}

#[test]
fn audit_target() {
    assert_eq!(
        ok(&with("[audit]\nfile = \"-\"")).audit,
        Some(AuditTarget::Stderr)
    );
    let dir = TempDir::new();
    std::fs::create_dir(dir.0.join("logs")).expect("mkdir");
    let config = parse_str(
        &with("[audit]\nfile = \"logs/audit.jsonl\""),
        &dir.origin(),
        &env,
    )
    .expect("ok");
    assert_eq!(
        config.audit,
        Some(AuditTarget::File(dir.0.join("logs/audit.jsonl")))
    );
    let absolute = dir.0.join("audit.jsonl");
    let config = ok(&with(&format!(
        "[audit]\nfile = \"{}\"",
        absolute.display()
    )));
    assert_eq!(config.audit, Some(AuditTarget::File(absolute)));

    for (bad, says) in [
        ("file = \"no-such-dir/audit.jsonl\"", "does not exist"),
        ("file = \"logs\"", "is a directory"),
        ("file = \"\"", "must not be empty"),
    ] {
        let errors = parse_str(&with(&format!("[audit]\n{bad}")), &dir.origin(), &env)
            .expect_err("bad audit");
        assert_eq!(errors.problems.len(), 1, "{errors}");
        let p = problem_on(&errors.problems, "audit.file");
        assert!(p.message.contains(says), "{bad}: {}", p.message);
        assert_eq!(p.line, Some(6));
    }
    let errors = parse(&with("[audit]")).expect_err("no file");
    assert!(problem_on(&errors.problems, "audit.file")
        .message
        .contains("required"));
}

/// The hardened example: TLS with mTLS, a key client and a certificate client, CORS, an audit
/// file and rate limits, on a public address.
const HARDENED: &str = r#"
[listen]
addr = "0.0.0.0:8443"
max_header_bytes = 16384
header_timeout = "5s"
idle_timeout = "30s"
max_connections = 1024
on_max_connections = "refuse"
max_body_bytes = 1048576
h2_max_concurrent_streams = 50
h2_max_header_list_size = 16384

[listen.tls]
cert = "certs/server.pem"
key = "certs/server-key.pem"
client_ca = "certs/client-ca.pem"

[admin]
addr = "127.0.0.1:9090"

[app]
client_id = "11111111-1111-1111-1111-111111111111"
client_secret = { file = "secrets/app" }

[routing]
tenant_header = "X-Defender-Tenant"

[rate_limit]
per_minute = 50
per_hour = 1500
mode = "queue"
max_wait = "30s"

[[tenant]]
name = "contoso"
id = "22222222-2222-2222-2222-222222222222"

[[tenant]]
name = "fabrikam"
id = "33333333-3333-3333-3333-333333333333"
rate_limit = { per_minute = 20 }

[[client]]
name = "grafana"
key_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
tenants = ["contoso", "fabrikam"]
methods = ["GET"]

[[client]]
name = "soar"
cert_subject = "soar.soc.example"
tenants = ["*"]

[cors]
allowed_origins = ["https://dashboards.soc.example"]
max_age = "10m"

[audit]
file = "logs/audit.jsonl"
"#;

#[test]
fn hardened_example_config_parses() {
    let dir = TempDir::new();
    std::fs::create_dir(dir.0.join("certs")).expect("mkdir");
    std::fs::create_dir(dir.0.join("secrets")).expect("mkdir");
    std::fs::create_dir(dir.0.join("logs")).expect("mkdir");
    let certs = TempDir(dir.0.join("certs"));
    tls_files(&certs);
    std::mem::forget(certs); // removed with `dir`
    let secret = dir.write("secrets/app", "app-secret\n");
    chmod(&secret, 0o600);

    let config = parse_str(HARDENED, &dir.origin(), &env).expect("the hardened example is valid");
    assert_eq!(config.app.client_id, CLIENT);
    assert!(!config.insecure_listener());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let tls = config.listen.tls.as_ref().expect("tls");
    assert_eq!(tls.client_ca, Some(dir.0.join("certs/client-ca.pem")));
    assert_eq!(
        config.listen.limits.on_max_connections,
        ConnectionOverflow::Refuse
    );
    assert_eq!(config.listen.limits.max_body_bytes, Some(1_048_576));
    assert_eq!(config.clients.len(), 2);
    assert_eq!(
        config.clients[1].credential,
        ClientCredential::CertSubject("soar.soc.example".into())
    );
    assert_eq!(
        config.cors.allowed_origins,
        ["https://dashboards.soc.example"]
    );
    assert_eq!(
        config.audit,
        Some(AuditTarget::File(dir.0.join("logs/audit.jsonl")))
    );
    assert_eq!(
        config.tenants[1]
            .rate_limit
            .windows
            .per_minute
            .map(|n| n.get()),
        Some(20)
    );
}
