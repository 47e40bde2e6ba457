//! Tests of the config loader: defaults, every kind of problem, and that problems come together.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Uri;
use secrecy::ExposeSecret;

use super::{parse_str, ConfigErrors, Problem};
use crate::config::raw::{self, RawConfig, SCHEMA};
use crate::config::{defaults, CloudPreset, Config, Credential, TokenEndpointVersion};

mod apis;
mod credentials;
mod inbound;
mod listen;
mod profiles;
mod ratelimit;
mod tenants_file;

const CLIENT: &str = "11111111-1111-1111-1111-111111111111";
const CONTOSO: &str = "22222222-2222-2222-2222-222222222222";
const SECRET: &str = "s3cret-value";

const APP: &str = r#"
[app]
client_id = "11111111-1111-1111-1111-111111111111"
client_secret = { env = "SECRET" }
"#;

const TENANT: &str = r#"
[[tenant]]
name = "contoso"
id = "22222222-2222-2222-2222-222222222222"
"#;

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("defender-proxy-config-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).expect("write temp file");
        path
    }

    /// The config file's path in this directory (relative paths in it resolve here).
    fn origin(&self) -> PathBuf {
        self.0.join("proxy.toml")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some(SECRET.to_owned()),
        "EMPTY" => Some(String::new()),
        "STATE_KEY" => Some("k".repeat(40)),
        _ => None,
    }
}

fn origin() -> PathBuf {
    std::env::temp_dir()
        .join("defender-proxy-no-such-dir")
        .join("proxy.toml")
}

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_str(text, &origin(), &env)
}

/// `APP` + `extra` + `TENANT`.
pub(super) fn with(extra: &str) -> String {
    format!("{APP}{extra}\n{TENANT}")
}

pub(super) fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(e) => panic!("expected a valid config, got:\n{e}\n--- config:\n{text}"),
    }
}

pub(super) fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(e) => {
            assert!(!e.problems.is_empty());
            e.problems
        }
    }
}

/// The one problem on `key`; panics if there is not exactly one.
fn problem_on<'a>(problems: &'a [Problem], key: &str) -> &'a Problem {
    let found: Vec<&Problem> = problems.iter().filter(|p| p.key == key).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one problem on {key}, got {problems:#?}"
    );
    found[0]
}

#[test]
fn minimal_config_gets_the_defaults() {
    let config = ok(&with(""));
    assert_eq!(
        config.listen.addr,
        defaults::LISTEN_ADDR.parse().expect("addr")
    );
    assert!(!config.listen.allow_unauthenticated);
    assert!(!config.insecure_listener());
    assert_eq!(
        config.admin.addr,
        defaults::ADMIN_ADDR.parse().expect("addr")
    );
    assert_eq!(config.app.client_id, CLIENT);
    match &config.app.credential {
        Credential::Secret(secret) => assert_eq!(secret.expose_secret(), SECRET),
        other => panic!("expected a secret, got {other:?}"),
    }
    assert_eq!(config.cloud.authority, defaults::AUTHORITY);
    assert_eq!(config.cloud.api, defaults::API.parse::<Uri>().expect("uri"));
    assert_eq!(config.cloud.scope, defaults::SCOPE);
    assert_eq!(config.cloud.token_endpoint, TokenEndpointVersion::V2);
    assert_eq!(config.cloud.ca, None);
    assert_eq!(config.upstream.connect_timeout, defaults::CONNECT_TIMEOUT);
    assert_eq!(config.upstream.response_timeout, defaults::RESPONSE_TIMEOUT);
    assert_eq!(
        config.upstream.body_idle_timeout,
        defaults::BODY_IDLE_TIMEOUT
    );
    assert_eq!(config.routing.tenant_header, "x-defender-tenant");
    assert_eq!(config.routing.default_tenant, None);
    assert_eq!(config.tenants.len(), 1);
    assert_eq!(
        (
            config.tenants[0].name.as_str(),
            config.tenants[0].id.as_str()
        ),
        ("contoso", CONTOSO)
    );
}

#[test]
fn debug_never_shows_the_secret() {
    let config = ok(&with(""));
    assert!(!format!("{config:?}").contains(SECRET));
}

#[test]
fn every_schema_key_is_accepted_by_the_structs() {
    // Uses every key of SCHEMA; semantic nonsense is fine, only the shape is tested.
    let full = r#"
[listen]
addr = "127.0.0.1:1"
allow_unauthenticated = false
max_header_bytes = 1
header_timeout = "1s"
idle_timeout = "1s"
max_connections = 1
on_max_connections = "queue"
max_body_bytes = 1
body_idle_timeout = "1s"
h2_max_concurrent_streams = 1
h2_max_header_list_size = 1
shutdown_grace = "1s"
public_url = "https://p"
[listen.tls]
cert = "c"
key = "k"
client_ca = "a"
[admin]
addr = "127.0.0.1:2"
key_sha256 = "h"
allow_unauthenticated = true
[app]
client_id = "x"
client_secret = { env = "A", file = "B" }
certificate = { cert = "c", key = "k" }
federated_token_file = "f"
[apps.x]
client_id = "x"
client_secret = { env = "A", file = "B" }
certificate = { cert = "c", key = "k" }
federated_token_file = "f"
[cloud]
cloud = "public"
authority = "a"
api = "b"
scope = "c"
token_endpoint = "v1"
ca = "d"
[clouds.x]
cloud = "public"
authority = "a"
api = "b"
scope = "c"
token_endpoint = "v1"
ca = "d"
[upstream]
connect_timeout = "1s"
response_timeout = "2s"
body_idle_timeout = "3s"
[advanced_hunting]
via = "legacy"
graph_api = "g"
quota_retry_after = "1m"
[routing]
tenant_header = "h"
default_tenant = "t"
[rate_limit]
per_minute = 1
per_hour = 2
burst = 3
mode = "m"
max_wait = "w"
max_queue = 4
backend = "b"
backend_password = { env = "A", file = "B" }
on_backend_error = "e"
replicas = 5
[[rate_limit.route]]
path_prefix = "p"
per_minute = 6
per_hour = 7
burst = 8
[[tenant]]
name = "n"
id = "i"
rate_limit = { per_minute = 1, per_hour = 2, burst = 3, mode = "m", max_wait = "w", max_queue = 4 }
app = "x"
cloud = "x"
[[client]]
name = "n"
key_sha256 = "h"
cert_subject = "s"
tenants = ["t"]
methods = ["GET"]
[[api]]
name = "n"
prefix = "p"
url = "u"
scope = "s"
per_minute = 1
per_hour = 2
burst = 3
[api.clouds.x]
url = "u"
scope = "s"
[cors]
allowed_origins = ["o"]
max_age = "1s"
[audit]
file = "f"
[reload]
watch = true
[metrics]
per_tenant_histograms = false
[tenants]
file = "f"
[onboarding]
addr = "a"
redirect_uri = "r"
state_key = { env = "A", file = "B" }
[onboarding.tls]
cert = "c"
key = "k"
client_ca = "a"
[cache]
ttl = "1s"
max_entry_bytes = 1
max_bytes_per_tenant = 2
[telemetry]
otlp_endpoint = "http://c"
protocol = "http/json"
service_name = "s"
sample_ratio = 0.5
"#;
    toml::from_str::<RawConfig>(full).expect("the structs accept every schema key");
    let (index, unknown) = raw::index(full).expect("walk");
    assert!(unknown.is_empty(), "{unknown:?}");
    fn paths(prefix: &str, fields: &[(&str, raw::Shape)], out: &mut Vec<String>) {
        for (name, shape) in fields {
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            };
            match shape {
                raw::Shape::Value => {}
                raw::Shape::Table(inner) => paths(&path, inner, out),
                raw::Shape::Tables(inner) => paths(&format!("{path}[0]"), inner, out),
                raw::Shape::Named(inner) => paths(&format!("{path}.x"), inner, out),
            }
            out.push(path);
        }
    }
    let mut all = Vec::new();
    paths("", SCHEMA, &mut all);
    for path in all {
        assert!(
            index.offset(&path).is_some(),
            "the test config misses {path}"
        );
    }
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let text = format!("[listen]\naddr = \"127.0.0.1:8080\"\nbogus = 1\n{APP}{TENANT}");
    let problems = problems(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = problem_on(&problems, "listen.bogus");
    assert_eq!(p.line, Some(3));
    assert!(p.message.contains("unknown key `bogus`"), "{}", p.message);
    assert!(p.message.contains("allow_unauthenticated"), "{}", p.message);
}

#[test]
fn all_unknown_keys_are_reported_including_nested_and_misplaced_ones() {
    let text = format!(
        "{APP}colour = \"red\"\n{TENANT}rate_limit = {{ per_minute = 10, backend = \"redis://h\" }}\n\n\
         [[api]]\npath_prefix = \"/mde\"\n[listen]\ncert = \"x\"\n"
    );
    let problems = problems(&text);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert_eq!(problem_on(&problems, "app.colour").line, Some(5));
    // A key that exists, but in [rate_limit] only, is named as such.
    let backend = problem_on(&problems, "tenant[0].rate_limit.backend");
    assert_eq!(backend.line, Some(10));
    assert!(
        backend.message.contains("only in [rate_limit]"),
        "{}",
        backend.message
    );
    // A key of another table written in an [[api]] is named by its right name.
    let prefix = problem_on(&problems, "api[0].path_prefix");
    assert_eq!(prefix.line, Some(13));
    assert!(prefix.message.contains("`prefix`"), "{}", prefix.message);
    // A [listen.tls] key written in [listen] is pointed at its table.
    let cert = problem_on(&problems, "listen.cert");
    assert!(cert.message.contains("[listen.tls]"), "{}", cert.message);
    assert_eq!(cert.line, Some(15));
    // In file order.
    let lines: Vec<_> = problems.iter().map(|p| p.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
}

#[test]
fn unknown_key_inside_an_inline_secret_table() {
    let text = APP.replace(
        "{ env = \"SECRET\" }",
        "{ env = \"SECRET\", value = \"x\" }",
    ) + TENANT;
    let problems = problems(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(
        problem_on(&problems, "app.client_secret.value").line,
        Some(4)
    );
}

#[test]
fn dotted_keys_and_subtable_headers_are_understood() {
    let text = format!(
        "listen.addr = \"127.0.0.1:8081\"\n[app]\nclient_id = \"{CLIENT}\"\n\
         [app.client_secret]\nenv = \"SECRET\"\n{TENANT}"
    );
    assert_eq!(ok(&text).listen.addr.port(), 8081);
}

#[test]
fn syntax_error_has_a_line() {
    let text = format!("{APP}\n[listen\naddr = 1\n");
    let problems = problems(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].line, Some(6));
}

#[test]
fn wrong_type_names_the_key() {
    let problems = problems(&format!("[listen]\naddr = 8080\n{APP}{TENANT}"));
    let p = problem_on(&problems, "listen.addr");
    assert_eq!(p.line, Some(2));
    assert!(p.message.contains("invalid type"), "{}", p.message);
}

#[test]
fn a_datetime_value_is_a_type_error_not_a_crash() {
    let problems = problems(&format!("[listen]\naddr = 1979-05-27\n{APP}{TENANT}"));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].line, Some(2));
}

#[test]
fn cloud_presets_set_authority_api_and_scope() {
    let cases = [
        (
            "public",
            CloudPreset::Public,
            "https://login.microsoftonline.com",
            "https://api.security.microsoft.com",
            "https://api.security.microsoft.com/.default",
        ),
        (
            "gcc",
            CloudPreset::Gcc,
            "https://login.microsoftonline.com",
            "https://api-gcc.security.microsoft.us",
            "https://api-gcc.security.microsoft.us/.default",
        ),
        (
            "gcc-high",
            CloudPreset::GccHigh,
            "https://login.microsoftonline.us",
            "https://api-gov.security.microsoft.us",
            "https://api-gov.security.microsoft.us/.default",
        ),
        (
            "dod",
            CloudPreset::Dod,
            "https://login.microsoftonline.us",
            "https://api-gov.security.microsoft.us",
            "https://api-gov.security.microsoft.us/.default",
        ),
    ];
    for (name, preset, authority, api, scope) in cases {
        let config = ok(&with(&format!("[cloud]\ncloud = \"{name}\"")));
        assert_eq!(config.cloud.cloud, preset, "{name}");
        assert_eq!(config.cloud.authority, authority, "{name}");
        assert_eq!(config.cloud.api, api.parse::<Uri>().expect("uri"), "{name}");
        assert_eq!(config.cloud.scope, scope, "{name}");
        assert_eq!(
            config.cloud.consent_url(CONTOSO, CLIENT),
            format!("{authority}/{CONTOSO}/adminconsent?client_id={CLIENT}")
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        // The gov-cloud scope is the documented public pattern carried over: `{api}/.default`.
        assert_eq!(preset.scope(), format!("{}/.default", preset.api()));
        assert_eq!(CloudPreset::from_name(name), Some(preset));
        assert_eq!(preset.to_string(), name);
    }
    assert_eq!(ok(&with("")).cloud.cloud, CloudPreset::Public);
}

#[test]
fn explicit_cloud_keys_override_the_preset() {
    let config = ok(&with(
        "[cloud]\ncloud = \"gcc-high\"\napi = \"https://us.api-gov.security.microsoft.us\"\n\
         scope = \"https://api.security.microsoft.us/.default\"",
    ));
    assert_eq!(config.cloud.cloud, CloudPreset::GccHigh);
    assert_eq!(config.cloud.authority, "https://login.microsoftonline.us");
    assert_eq!(
        config.cloud.api,
        "https://us.api-gov.security.microsoft.us"
            .parse::<Uri>()
            .expect("uri")
    );
    assert_eq!(
        config.cloud.scope,
        "https://api.security.microsoft.us/.default"
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    // The scope follows the preset's resource, not a regional or loopback host.
    let config = ok(&with(
        "[cloud]\ncloud = \"dod\"\nauthority = \"http://127.0.0.1:9000\"\napi = \"http://127.0.0.1:9001\"",
    ));
    assert_eq!(config.cloud.authority, "http://127.0.0.1:9000");
    assert_eq!(
        config.cloud.scope,
        "https://api-gov.security.microsoft.us/.default"
    );
}

#[test]
fn a_host_of_another_cloud_under_a_preset_is_a_warning() {
    let config = ok(&with(
        "[cloud]\ncloud = \"gcc-high\"\napi = \"https://eu.api.security.microsoft.com\"",
    ));
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(
        config.warnings[0].starts_with("cloud.api: eu.api.security.microsoft.com")
            && config.warnings[0].contains("public cloud"),
        "{:?}",
        config.warnings
    );
    // Hosts two clouds share are no mismatch: GCC signs in at the public Entra ID.
    let config = ok(&with(
        "[cloud]\ncloud = \"gcc\"\nauthority = \"https://login.microsoftonline.com\"",
    ));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn unknown_cloud_preset_is_named_with_the_choices() {
    let problems = problems(&with("[cloud]\ncloud = \"china\"\ntoken_endpoint = \"v9\""));
    let p = problem_on(&problems, "cloud.cloud");
    assert!(
        p.message.contains("`china`") && p.message.contains("\"gcc-high\""),
        "{}",
        p.message
    );
    // The rest of [cloud] is still checked in the same run.
    problem_on(&problems, "cloud.token_endpoint");
}

#[test]
fn plain_http_only_to_loopback() {
    let problems = problems(&with("[cloud]\nauthority = \"http://login.example.com\""));
    let p = problem_on(&problems, "cloud.authority");
    assert!(p.message.contains("must be https://"), "{}", p.message);
    assert_eq!(p.line, Some(6));

    let config = ok(&with(
        "[cloud]\nauthority = \"http://127.0.0.1:9000/\"\napi = \"http://[::1]:9001\"",
    ));
    assert_eq!(config.cloud.authority, "http://127.0.0.1:9000");
    assert_eq!(
        config.cloud.api,
        "http://[::1]:9001/".parse::<Uri>().expect("uri")
    );
    assert_eq!(
        config.cloud.token_url(CONTOSO),
        format!("http://127.0.0.1:9000/{CONTOSO}/oauth2/v2.0/token")
    );
    ok(&with("[cloud]\napi = \"http://localhost:9001\""));
}

#[test]
fn base_urls_have_no_path_query_or_user() {
    for api in [
        "https://api.example.com/api",
        "https://api.example.com?x=1",
        "https://u:p@api.example.com",
        "api.example.com",
        "ftp://api.example.com",
    ] {
        let problems = problems(&with(&format!("[cloud]\napi = \"{api}\"")));
        problem_on(&problems, "cloud.api");
    }
}

#[test]
fn non_loopback_listener_needs_explicit_opt_in() {
    let problems = problems(&format!("[listen]\naddr = \"0.0.0.0:8080\"\n{APP}{TENANT}"));
    let p = problem_on(&problems, "listen.addr");
    assert_eq!(p.line, Some(2));
    assert!(p.message.contains("allow_unauthenticated"), "{}", p.message);

    let config = ok(&format!(
        "[listen]\naddr = \"0.0.0.0:8080\"\nallow_unauthenticated = true\n{APP}{TENANT}"
    ));
    assert!(config.listen.allow_unauthenticated);
    assert!(config.insecure_listener());
    // An IPv4-mapped loopback is loopback.
    assert!(!ok(&format!(
        "[listen]\naddr = \"[::ffff:127.0.0.1]:8080\"\n{APP}{TENANT}"
    ))
    .insecure_listener());
}

#[test]
fn listen_and_admin_addresses() {
    let text = format!("[listen]\naddr = \"127.0.0.1:9090\"\n{APP}{TENANT}");
    assert!(problem_on(&problems(&text), "admin.addr")
        .message
        .contains("must differ"));
    // Two ephemeral ports are two ports.
    ok(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n{APP}{TENANT}"
    ));
    let text = format!("[admin]\naddr = \"localhost:9090\"\n{APP}{TENANT}");
    problem_on(&problems(&text), "admin.addr");
}

#[test]
fn several_problems_are_reported_together() {
    let text = r#"
[app]
client_id = "not-a-guid"
client_secret = { env = "NOPE" }

[upstream]
connect_timeout = "soon"

[routing]
default_tenant = "acme"

[[tenant]]
name = "Contoso"
id = "22222222-2222-2222-2222-22222222222"
"#;
    let errors = parse(text).expect_err("problems");
    let keys: Vec<(&str, Option<usize>)> = errors
        .problems
        .iter()
        .map(|p| (p.key.as_str(), p.line))
        .collect();
    assert_eq!(
        keys,
        [
            ("app.client_id", Some(3)),
            ("app.client_secret", Some(4)),
            ("upstream.connect_timeout", Some(7)),
            ("routing.default_tenant", Some(10)),
            ("tenant[0].name", Some(13)),
            ("tenant[0].id", Some(14)),
        ]
    );
    // One line per problem, each with its line and key.
    let shown = errors.to_string();
    assert_eq!(shown.lines().count(), 6);
    assert!(
        shown.starts_with("line 3: app.client_id: `not-a-guid` is not a GUID"),
        "{shown}"
    );
}

#[test]
fn tenant_name_rules() {
    for bad in [
        "Contoso",
        "-contoso",
        "_sim",
        "con toso",
        "api",
        "metrics",
        "",
        CONTOSO,
        &"a".repeat(64),
    ] {
        let text = format!("{APP}[[tenant]]\nname = \"{bad}\"\nid = \"{CONTOSO}\"\n");
        let problems = problems(&text);
        assert_eq!(
            problem_on(&problems, "tenant[0].name").line,
            Some(6),
            "{bad}"
        );
    }
    for good in ["contoso", "a", "fabrikam-eu-2", "0day"] {
        ok(&format!(
            "{APP}[[tenant]]\nname = \"{good}\"\nid = \"{CONTOSO}\"\n"
        ));
    }
}

#[test]
fn tenant_duplicates_missing_fields_and_none_at_all() {
    let text = format!(
        "{APP}{TENANT}\n[[tenant]]\nname = \"contoso\"\nid = \"{}\"\n\n[[tenant]]\nname = \"fabrikam\"\n",
        CONTOSO.to_uppercase()
    );
    let problems = problems(&text);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problem_on(&problems, "tenant[1].name")
        .message
        .contains("tenant[0]"));
    let id = problem_on(&problems, "tenant[1].id");
    assert!(
        id.message.contains("already the id of tenant[0]"),
        "{}",
        id.message
    );
    assert_eq!(id.line, Some(12));
    // A missing key points at its tenant's first line.
    assert_eq!(problem_on(&problems, "tenant[2].id").line, Some(15));

    assert!(problem_on(&self::problems(APP), "tenant")
        .message
        .contains("at least one"));
}

#[test]
fn tenant_ids_are_stored_lower_case() {
    let text = with("").replace(CONTOSO, "AAAAAAAA-2222-2222-2222-22222222222B");
    assert_eq!(
        ok(&text).tenants[0].id,
        "aaaaaaaa-2222-2222-2222-22222222222b"
    );
}

#[test]
fn default_tenant_by_name_or_id() {
    let text = with(&format!(
        "[routing]\ndefault_tenant = \"{}\"",
        CONTOSO.to_uppercase()
    ));
    assert_eq!(ok(&text).routing.default_tenant.as_deref(), Some("contoso"));
    let text = with("[routing]\ndefault_tenant = \"contoso\"");
    assert_eq!(ok(&text).routing.default_tenant.as_deref(), Some("contoso"));
    let problems = problems(&with("[routing]\ndefault_tenant = \"acme\""));
    assert!(problem_on(&problems, "routing.default_tenant")
        .message
        .contains("acme"));
}

#[test]
fn tenant_header_must_be_usable() {
    let config = ok(&with("[routing]\ntenant_header = \"X-Tenant\""));
    assert_eq!(config.routing.tenant_header, "x-tenant");
    for bad in ["X Tenant", "", "Authorization", "proxy-tenant", "Host"] {
        problem_on(
            &problems(&with(&format!("[routing]\ntenant_header = \"{bad}\""))),
            "routing.tenant_header",
        );
    }
}

#[test]
fn token_endpoint_version() {
    let config = ok(&with("[cloud]\ntoken_endpoint = \"v1\""));
    assert_eq!(config.cloud.token_endpoint, TokenEndpointVersion::V1);
    assert_eq!(
        config.cloud.token_url(CONTOSO),
        format!("{}/{CONTOSO}/oauth2/token", defaults::AUTHORITY)
    );
    problem_on(
        &problems(&with("[cloud]\ntoken_endpoint = \"v3\"")),
        "cloud.token_endpoint",
    );
    problem_on(&problems(&with("[cloud]\nscope = \" \"")), "cloud.scope");
}

#[test]
fn durations() {
    let config = ok(&with(
        "[upstream]\nconnect_timeout = \"2s 500ms\"\nresponse_timeout = \"10m\"\nbody_idle_timeout = \"90s\"",
    ));
    assert_eq!(config.upstream.connect_timeout, Duration::from_millis(2500));
    assert_eq!(config.upstream.response_timeout, Duration::from_secs(600));
    assert_eq!(config.upstream.body_idle_timeout, Duration::from_secs(90));
    let problems = problems(&with(
        "[upstream]\nconnect_timeout = \"0s\"\nresponse_timeout = \"30\"",
    ));
    assert!(problem_on(&problems, "upstream.connect_timeout")
        .message
        .contains("greater than zero"));
    problem_on(&problems, "upstream.response_timeout");
}

#[test]
fn reload_and_shutdown_keys_and_the_files_a_reload_watches() {
    let config = ok(&with(""));
    assert_eq!(config.listen.shutdown_grace, Duration::from_secs(30));
    assert!(!config.reload.watch);
    assert!(config.watched_files.is_empty());

    let dir = TempDir::new();
    let secret = dir.write("client-secret", "s");
    let text = format!(
        "[listen]\nshutdown_grace = \"5s\"\n[reload]\nwatch = true\n\
         [app]\nclient_id = \"{CLIENT}\"\nclient_secret = {{ file = \"client-secret\" }}\n{TENANT}"
    );
    let config = parse_str(&text, &dir.origin(), &env).expect("valid");
    assert_eq!(config.listen.shutdown_grace, Duration::from_secs(5));
    assert!(config.reload.watch);
    assert_eq!(config.watched_files, vec![secret]);

    let bad = problems(&with("[listen]\nshutdown_grace = \"soon\""));
    problem_on(&bad, "listen.shutdown_grace");
}

#[test]
fn public_url_is_an_absolute_http_url() {
    let config = ok(&with(
        "[listen]\npublic_url = \"https://defender.soc.example/proxy/\"",
    ));
    assert_eq!(
        config.listen.public_url.as_deref(),
        Some("https://defender.soc.example/proxy")
    );
    assert_eq!(ok(&with("")).listen.public_url, None);
    for bad in [
        "defender.soc.example",
        "ftp://x",
        "https://x/?a=1",
        "/relative",
    ] {
        let found = problems(&with(&format!("[listen]\npublic_url = \"{bad}\"")));
        problem_on(&found, "listen.public_url");
    }
}

#[test]
fn metrics_per_tenant_histograms_is_a_bool_defaulting_to_true() {
    assert!(ok(&with("")).metrics.per_tenant_histograms);
    assert!(ok(&with("[metrics]")).metrics.per_tenant_histograms);
    let off = ok(&with("[metrics]\nper_tenant_histograms = false"));
    assert!(!off.metrics.per_tenant_histograms);

    // Lines: `with` puts [app] on lines 2-4, so [metrics] is line 5.
    for bad in ["\"no\"", "0", "\"false\""] {
        let found = problems(&with(&format!("[metrics]\nper_tenant_histograms = {bad}")));
        let p = problem_on(&found, "metrics.per_tenant_histograms");
        assert_eq!(p.line, Some(6), "{p:?}");
        assert!(p.message.contains("bool"), "{bad}: {}", p.message);
    }
    let found = problems(&with(
        "[metrics]\nper_tenant_histogram = false\nper_api = true",
    ));
    assert_eq!(found.len(), 2, "{found:#?}");
    let p = problem_on(&found, "metrics.per_tenant_histogram");
    assert_eq!(p.line, Some(6));
    assert!(p.message.contains("per_tenant_histograms"), "{}", p.message);
    assert_eq!(problem_on(&found, "metrics.per_api").line, Some(7));
}
