//! `[rate_limit]`, `[[rate_limit.route]]` and per-tenant `rate_limit`: layering and every problem.

use std::num::NonZeroU32;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::{ok, parse, problem_on, problems, with, Problem, APP, CONTOSO, SECRET};
use crate::config::{
    defaults, LimitBackend, LimitMode, LimitPolicy, OnBackendError, RouteLimit, Windows,
};

const FABRIKAM: &str = "33333333-3333-3333-3333-333333333333";

fn nz(n: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(n)
}

/// `APP` + `global` + two tenants, contoso with `contoso_limits` (an inline table body, or none).
fn two_tenants(global: &str, contoso_limits: Option<&str>) -> String {
    let limits = contoso_limits
        .map(|l| format!("rate_limit = {{ {l} }}\n"))
        .unwrap_or_default();
    format!(
        "{APP}{global}\n[[tenant]]\nname = \"contoso\"\nid = \"{CONTOSO}\"\n{limits}\
         [[tenant]]\nname = \"fabrikam\"\nid = \"{FABRIKAM}\"\n"
    )
}

/// `problems`, for tests whose local `problems` shadows it.
fn problems_of(text: &str) -> Vec<Problem> {
    problems(text)
}

#[test]
fn defaults_when_absent() {
    let config = ok(&with(""));
    let policy = &config.rate_limit.defaults;
    assert_eq!(policy.windows.per_minute, nz(defaults::PER_MINUTE));
    assert_eq!(policy.windows.per_hour, nz(defaults::PER_HOUR));
    assert_eq!(policy.windows.burst, None);
    assert_eq!(policy.mode, LimitMode::Queue);
    assert_eq!(policy.max_wait, defaults::MAX_WAIT);
    assert_eq!(policy.max_queue, defaults::MAX_QUEUE);
    assert_eq!(*policy, LimitPolicy::default());
    assert!(config.rate_limit.routes.is_empty());
    assert!(matches!(config.rate_limit.backend, LimitBackend::Local));
    assert_eq!(config.tenants[0].rate_limit, *policy);
    // An empty table is the same as none.
    let config = ok(&with("[rate_limit]"));
    assert_eq!(config.rate_limit.defaults, LimitPolicy::default());
}

#[test]
fn global_keys_override_the_defaults() {
    let config = ok(&with(
        "[rate_limit]\nper_minute = 100\nper_hour = 1000\nburst = 10\nmode = \"reject\"\n\
         max_wait = \"2m\"\nmax_queue = 0",
    ));
    let expected = LimitPolicy {
        windows: Windows {
            per_minute: nz(100),
            per_hour: nz(1000),
            burst: nz(10),
        },
        mode: LimitMode::Reject,
        max_wait: Duration::from_secs(120),
        max_queue: 0,
    };
    assert_eq!(config.rate_limit.defaults, expected);
    assert_eq!(config.tenants[0].rate_limit, expected);
    // Keys left out keep their defaults.
    let config = ok(&with("[rate_limit]\nper_minute = 20"));
    assert_eq!(
        config.rate_limit.defaults,
        LimitPolicy {
            windows: Windows {
                per_minute: nz(20),
                ..LimitPolicy::default().windows
            },
            ..LimitPolicy::default()
        }
    );
}

#[test]
fn tenant_keys_are_laid_over_the_global_ones() {
    let config = ok(&two_tenants(
        "[rate_limit]\nper_minute = 30\nper_hour = 900\nmax_wait = \"10s\"",
        Some("per_minute = 10, mode = \"reject\", max_queue = 5"),
    ));
    let global = LimitPolicy {
        windows: Windows {
            per_minute: nz(30),
            per_hour: nz(900),
            burst: None,
        },
        mode: LimitMode::Queue,
        max_wait: Duration::from_secs(10),
        max_queue: defaults::MAX_QUEUE,
    };
    assert_eq!(config.rate_limit.defaults, global);
    let contoso = &config.tenants[0];
    assert_eq!(contoso.name, "contoso");
    assert_eq!(
        contoso.rate_limit,
        LimitPolicy {
            windows: Windows {
                per_minute: nz(10),
                ..global.windows
            },
            mode: LimitMode::Reject,
            max_queue: 5,
            ..global.clone()
        }
    );
    let fabrikam = &config.tenants[1];
    assert_eq!(fabrikam.name, "fabrikam");
    assert_eq!(fabrikam.rate_limit, global);
}

#[test]
fn a_tenant_table_may_also_be_a_subtable_header() {
    let text = format!(
        "{APP}[[tenant]]\nname = \"contoso\"\nid = \"{CONTOSO}\"\n[tenant.rate_limit]\nper_hour = 60\n"
    );
    assert_eq!(ok(&text).tenants[0].rate_limit.windows.per_hour, nz(60));
}

#[test]
fn routes_are_parsed_with_only_the_windows_they_set() {
    let config = ok(&with(
        "[[rate_limit.route]]\npath_prefix = \"/api/advancedhunting\"\nper_minute = 45\n\
         [[rate_limit.route]]\npath_prefix = \"/api/machines\"\nper_minute = 100\nper_hour = 1500\nburst = 20\n\
         [[rate_limit.route]]\npath_prefix = \"/api/files\"\nper_hour = 0\n",
    ));
    assert_eq!(
        config.rate_limit.routes,
        [
            RouteLimit {
                path_prefix: "/api/advancedhunting".into(),
                windows: Windows {
                    per_minute: nz(45),
                    per_hour: None,
                    burst: None,
                },
            },
            RouteLimit {
                path_prefix: "/api/machines".into(),
                windows: Windows {
                    per_minute: nz(100),
                    per_hour: nz(1500),
                    burst: nz(20),
                },
            },
            // Explicit zeros: this class is not limited at all.
            RouteLimit {
                path_prefix: "/api/files".into(),
                windows: Windows {
                    per_minute: None,
                    per_hour: None,
                    burst: None,
                },
            },
        ]
    );
    // Routes do not change the default policy.
    assert_eq!(config.rate_limit.defaults, LimitPolicy::default());
}

#[test]
fn zero_disables_a_window() {
    let config = ok(&two_tenants(
        "[rate_limit]\nper_hour = 0",
        Some("per_minute = 0"),
    ));
    assert_eq!(config.rate_limit.defaults.windows.per_hour, None);
    assert_eq!(
        config.rate_limit.defaults.windows.per_minute,
        nz(defaults::PER_MINUTE)
    );
    let contoso = config.tenants[0].rate_limit.windows;
    assert_eq!((contoso.per_minute, contoso.per_hour), (None, None));
    // Without a per-minute limit, any burst of at least 1 is accepted.
    ok(&with("[rate_limit]\nper_minute = 0\nburst = 500"));
}

#[test]
fn burst_must_be_at_least_one_and_within_per_minute() {
    let problems = problems(&with("[rate_limit]\nper_minute = 10\nburst = 11"));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = problem_on(&problems, "rate_limit.burst");
    assert_eq!(p.line, Some(7));
    assert!(
        p.message.contains("more than per_minute (10)"),
        "{}",
        p.message
    );

    // Against the built-in per_minute.
    let problems = problems_of(&with("[rate_limit]\nburst = 51"));
    let p = problem_on(&problems, "rate_limit.burst");
    assert!(p.message.contains("built-in default"), "{}", p.message);

    for zero in ["0", "-3"] {
        let problems = problems_of(&with(&format!("[rate_limit]\nburst = {zero}")));
        assert_eq!(problems.len(), 1, "{problems:#?}");
        let p = problem_on(&problems, "rate_limit.burst");
        assert!(p.message.contains("at least 1"), "{}", p.message);
    }
    ok(&with("[rate_limit]\nper_minute = 10\nburst = 10"));
}

#[test]
fn a_tenant_conflict_is_put_on_the_tenants_own_key() {
    // The tenant's burst against the global per_minute.
    let text = two_tenants("[rate_limit]\nper_minute = 10", Some("burst = 20"));
    let problems = problems(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = problem_on(&problems, "tenant[0].rate_limit.burst");
    assert_eq!(p.line, Some(10));
    assert!(p.message.contains("from [rate_limit]"), "{}", p.message);

    // The tenant's per_minute under the global burst.
    let text = two_tenants("[rate_limit]\nburst = 8", Some("per_minute = 5"));
    let problems = problems_of(&text);
    let p = problem_on(&problems, "tenant[0].rate_limit.per_minute");
    assert!(p.message.contains("less than burst (8"), "{}", p.message);
    // ... but turning the per-minute window off is fine.
    ok(&two_tenants(
        "[rate_limit]\nburst = 8",
        Some("per_minute = 0"),
    ));

    // Queue mode over a global reject mode with no wait.
    let text = two_tenants(
        "[rate_limit]\nmode = \"reject\"\nmax_wait = \"0s\"",
        Some("mode = \"queue\""),
    );
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = problem_on(&problems, "tenant[0].rate_limit.mode");
    assert!(p.message.contains("max_wait"), "{}", p.message);
}

#[test]
fn queue_mode_needs_a_wait() {
    // The default mode is queue.
    let problems = problems(&with("[rate_limit]\nmax_wait = \"0s\""));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = problem_on(&problems, "rate_limit.max_wait");
    assert_eq!(p.line, Some(6));
    assert!(p.message.contains("greater than zero"), "{}", p.message);
    problem_on(
        &problems_of(&with("[rate_limit]\nmode = \"queue\"\nmax_wait = \"0s\"")),
        "rate_limit.max_wait",
    );
    problem_on(
        &problems_of(&two_tenants("", Some("max_wait = \"0s\""))),
        "tenant[0].rate_limit.max_wait",
    );
    // Reject mode does not wait, so no wait is fine.
    let config = ok(&with("[rate_limit]\nmode = \"reject\"\nmax_wait = \"0s\""));
    assert_eq!(config.rate_limit.defaults.max_wait, Duration::ZERO);
    problem_on(
        &problems_of(&with("[rate_limit]\nmax_wait = \"soon\"")),
        "rate_limit.max_wait",
    );
}

#[test]
fn bad_enum_values_and_numbers_are_named() {
    let text = with(
        "[rate_limit]\nmode = \"wait\"\non_backend_error = \"retry\"\nper_minute = -1\n\
         per_hour = 99999999999\nmax_queue = -5\nreplicas = 0",
    );
    let problems = problems(&text);
    assert_eq!(problems.len(), 6, "{problems:#?}");
    let mode = problem_on(&problems, "rate_limit.mode");
    assert_eq!(mode.line, Some(6));
    assert!(mode.message.contains("`wait`"), "{}", mode.message);
    assert!(problem_on(&problems, "rate_limit.on_backend_error")
        .message
        .contains("\"local\""));
    assert!(problem_on(&problems, "rate_limit.per_minute")
        .message
        .contains("negative"));
    problem_on(&problems, "rate_limit.per_hour");
    problem_on(&problems, "rate_limit.max_queue");
    problem_on(&problems, "rate_limit.replicas");

    let p = problem_on(
        &problems_of(&two_tenants("", Some("mode = \"fast\""))),
        "tenant[0].rate_limit.mode",
    )
    .clone();
    assert_eq!(p.line, Some(9));
    // A wrong type is serde's to report, still on the key.
    problem_on(
        &problems_of(&with("[rate_limit]\nper_minute = \"50\"")),
        "rate_limit.per_minute",
    );
}

#[test]
fn route_problems() {
    let text = with(
        "[[rate_limit.route]]\npath_prefix = \"/api/advancedhunting\"\nper_minute = 45\n\
         [[rate_limit.route]]\npath_prefix = \"/API/AdvancedHunting\"\nper_minute = 10\n\
         [[rate_limit.route]]\npath_prefix = \"/api/machines\"\n\
         [[rate_limit.route]]\npath_prefix = \"/api/alerts\"\nper_minute = 5\nburst = 6\n\
         [[rate_limit.route]]\nper_hour = 5\n",
    );
    let problems = problems(&text);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    let duplicate = problem_on(&problems, "rate_limit.route[1].path_prefix");
    assert_eq!(duplicate.line, Some(9));
    assert!(
        duplicate.message.contains("rate_limit.route[0]"),
        "{}",
        duplicate.message
    );
    let no_limit = problem_on(&problems, "rate_limit.route[2]");
    assert_eq!(no_limit.line, Some(12));
    assert!(no_limit.message.contains("per_minute or per_hour"));
    let burst = problem_on(&problems, "rate_limit.route[3].burst");
    assert_eq!(burst.line, Some(16));
    let missing = problem_on(&problems, "rate_limit.route[4].path_prefix");
    assert_eq!(missing.line, Some(18));
}

#[test]
fn route_prefixes_must_be_clean_paths() {
    for bad in [
        "api/machines",
        "/",
        "/api/machines/",
        "/api/machines?x=1",
        "/api/../machines",
        "/api/./machines",
        "/api//machines",
        "/api/ma chines",
        "",
    ] {
        let text = with(&format!(
            "[[rate_limit.route]]\npath_prefix = \"{bad}\"\nper_minute = 1"
        ));
        let problems = problems(&text);
        assert_eq!(problems.len(), 1, "{bad}: {problems:#?}");
        assert_eq!(
            problem_on(&problems, "rate_limit.route[0].path_prefix").line,
            Some(6),
            "{bad}"
        );
    }
    for good in [
        "/api",
        "/api/machines",
        "/v1.0/security/alerts_v2",
        "/api/Files",
    ] {
        ok(&with(&format!(
            "[[rate_limit.route]]\npath_prefix = \"{good}\"\nper_minute = 1"
        )));
    }
}

#[test]
fn backend_and_its_keys() {
    let config = ok(&with(
        "[rate_limit]\nbackend = \"redis://127.0.0.1:6379/0\"",
    ));
    match &config.rate_limit.backend {
        LimitBackend::Redis(redis) => {
            assert_eq!(redis.url, "redis://127.0.0.1:6379/0");
            assert!(redis.password.is_none());
            assert_eq!(redis.on_error, OnBackendError::Local);
            assert_eq!(redis.replicas.get(), 1);
        }
        other => panic!("expected redis, got {other:?}"),
    }
    let config = ok(&with(
        "[rate_limit]\nbackend = \"rediss://redis.internal\"\nbackend_password = { env = \"SECRET\" }\n\
         on_backend_error = \"reject\"\nreplicas = 3",
    ));
    match &config.rate_limit.backend {
        LimitBackend::Redis(redis) => {
            assert_eq!(redis.url, "rediss://redis.internal");
            let password = redis.password.as_ref().expect("password");
            assert_eq!(password.expose_secret(), SECRET);
            assert_eq!(redis.on_error, OnBackendError::Reject);
            assert_eq!(redis.replicas.get(), 3);
        }
        other => panic!("expected redis, got {other:?}"),
    }
    assert!(!format!("{config:?}").contains(SECRET));
    for good in [
        "redis://localhost",
        "redis://[::1]:6380",
        "redis://redis-0.redis.svc.cluster.local:6379/",
        "REDIS://h/15",
    ] {
        ok(&with(&format!("[rate_limit]\nbackend = \"{good}\"")));
    }
}

#[test]
fn bad_backend_urls_are_refused() {
    for bad in [
        "127.0.0.1:6379",
        "http://127.0.0.1:6379",
        "redis://",
        "redis://:6379",
        "redis://host:0",
        "redis://host:port",
        "redis://host/db",
        "redis://host/0?protocol=resp3",
        "redis://[::1",
        "redis://ho st",
        "unix:///run/redis.sock",
    ] {
        let problems = problems(&with(&format!("[rate_limit]\nbackend = \"{bad}\"")));
        assert_eq!(problems.len(), 1, "{bad}: {problems:#?}");
        assert_eq!(
            problem_on(&problems, "rate_limit.backend").line,
            Some(6),
            "{bad}"
        );
    }
}

#[test]
fn a_password_in_the_backend_url_is_refused_without_echoing_it() {
    for url in [
        "redis://:hunter2pw@127.0.0.1:6379/0",
        "redis://default:hunter2pw@127.0.0.1:6379",
        "rediss://hunter2pw@redis.example.com",
        "redis://:hunter2pw/with@slash@host",
        "ftp://user:hunter2pw@host",
        "user:hunter2pw@host",
    ] {
        let text = with(&format!("[rate_limit]\nbackend = \"{url}\""));
        let errors = parse(&text).expect_err(url);
        let p = problem_on(&errors.problems, "rate_limit.backend");
        assert_eq!(p.line, Some(6));
        let shown = format!("{errors} {errors:?}");
        assert!(!shown.contains("hunter2"), "{url}: {shown}");
    }
    let errors = parse(&with(
        "[rate_limit]\nbackend = \"redis://:hunter2pw@127.0.0.1\"",
    ))
    .expect_err("password");
    assert!(
        errors.problems[0].message.contains("backend_password"),
        "{errors}"
    );
}

#[test]
fn backend_password_follows_the_secret_rules() {
    // Only with a backend.
    let problems = problems(&with(
        "[rate_limit]\nbackend_password = { env = \"SECRET\" }",
    ));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = problem_on(&problems, "rate_limit.backend_password");
    assert_eq!(p.line, Some(6));
    assert!(p.message.contains("backend"), "{}", p.message);

    // Never inline, never echoed.
    let errors = parse(&with(
        "[rate_limit]\nbackend = \"redis://h\"\nbackend_password = \"hunter2pw\"",
    ))
    .expect_err("inline");
    let p = problem_on(&errors.problems, "rate_limit.backend_password");
    assert!(p.message.contains("never written inline"), "{}", p.message);
    assert!(!format!("{errors} {errors:?}").contains("hunter2"));

    // A missing variable is named.
    let problems = problems_of(&with(
        "[rate_limit]\nbackend = \"redis://h\"\nbackend_password = { env = \"REDIS_PASSWORD\" }",
    ));
    let p = problem_on(&problems, "rate_limit.backend_password");
    assert!(
        p.message.contains("REDIS_PASSWORD is not set"),
        "{}",
        p.message
    );
}

#[test]
fn backend_keys_are_refused_per_tenant_by_name() {
    for (key, value) in [
        ("backend", "\"redis://h\""),
        ("backend_password", "{ env = \"SECRET\" }"),
        ("on_backend_error", "\"reject\""),
        ("replicas", "2"),
        ("route", "[]"),
        ("path_prefix", "\"/api\""),
    ] {
        let text = two_tenants("", Some(&format!("{key} = {value}")));
        let problems = problems(&text);
        assert_eq!(problems.len(), 1, "{key}: {problems:#?}");
        let p = problem_on(&problems, &format!("tenant[0].rate_limit.{key}"));
        assert_eq!(p.line, Some(9), "{key}");
        assert!(p.message.contains(&format!("`{key}`")), "{}", p.message);
        assert!(p.message.contains("[rate_limit"), "{}", p.message);
    }
    // And a route has no policy keys of its own.
    let problems = problems(&with(
        "[[rate_limit.route]]\npath_prefix = \"/api\"\nper_minute = 1\nmode = \"reject\"",
    ));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problem_on(&problems, "rate_limit.route[0].mode")
        .message
        .contains("a route sets only"));
}

#[test]
fn every_rate_limit_problem_is_reported_together() {
    let text = format!(
        "{APP}[rate_limit]\nburst = 0\nmode = \"later\"\nbackend_password = {{ env = \"SECRET\" }}\n\
         [[rate_limit.route]]\npath_prefix = \"/api/\"\n\
         [[tenant]]\nname = \"contoso\"\nid = \"{CONTOSO}\"\nrate_limit = {{ max_queue = -1 }}\n"
    );
    let errors = parse(&text).expect_err("problems");
    let keys: Vec<(&str, Option<usize>)> = errors
        .problems
        .iter()
        .map(|p| (p.key.as_str(), p.line))
        .collect();
    assert_eq!(
        keys,
        [
            ("rate_limit.burst", Some(6)),
            ("rate_limit.mode", Some(7)),
            ("rate_limit.backend_password", Some(8)),
            ("rate_limit.route[0].path_prefix", Some(10)),
            ("rate_limit.route[0]", Some(10)),
            ("tenant[0].rate_limit.max_queue", Some(14)),
        ]
    );
}

#[test]
fn the_readme_example_parses() {
    // The example of issue 3 / interface.md "Rate limiting", with the tenant id filled in.
    let text = format!(
        r#"
[app]
client_id = "11111111-1111-1111-1111-111111111111"
client_secret = {{ env = "SECRET" }}

[rate_limit]                      # defaults for every tenant
per_minute = 50
per_hour = 1500
mode = "queue"                    # or "reject"
max_wait = "30s"
max_queue = 200
[[rate_limit.route]]
path_prefix = "/api/advancedhunting"
per_minute = 45
[[tenant]]
name = "contoso"
id = "{CONTOSO}"
rate_limit = {{ per_minute = 10, mode = "reject" }}
"#
    );
    let config = ok(&text);
    assert_eq!(config.rate_limit.defaults, LimitPolicy::default());
    assert_eq!(config.rate_limit.routes.len(), 1);
    assert_eq!(
        config.rate_limit.routes[0].windows,
        Windows {
            per_minute: nz(45),
            per_hour: None,
            burst: None,
        }
    );
    let contoso = &config.tenants[0].rate_limit;
    assert_eq!(contoso.windows.per_minute, nz(10));
    assert_eq!(contoso.windows.per_hour, nz(1500));
    assert_eq!(contoso.mode, LimitMode::Reject);
    assert_eq!(contoso.max_wait, Duration::from_secs(30));
}

/// A config with a Redis backend whose password comes from `REDIS_PASSWORD` = `password`.
fn with_redis_password(password: &str) -> crate::config::Config {
    let text = with(
        "[rate_limit]\nbackend = \"redis://127.0.0.1:6379/0\"\n\
         backend_password = { env = \"REDIS_PASSWORD\" }\n",
    );
    let env = |name: &str| match name {
        "REDIS_PASSWORD" => Some(password.to_owned()),
        other => super::env(other),
    };
    match crate::config::parse_str(&text, &super::origin(), &env) {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    }
}

fn redis(config: &crate::config::Config) -> &crate::config::RedisBackendConfig {
    match &config.rate_limit.backend {
        LimitBackend::Redis(redis) => redis,
        LimitBackend::Local => panic!("expected a Redis backend"),
    }
}

#[test]
fn the_redis_password_stays_secret_in_debug_and_is_compared_as_one() {
    const PASSWORD: &str = "correct-horse-battery-staple";
    let config = with_redis_password(PASSWORD);
    assert_eq!(
        redis(&config).password.as_ref().unwrap().expose_secret(),
        PASSWORD
    );
    // Neither the config nor the proxy built from it prints it.
    let printed = format!("{config:?}");
    assert!(!printed.contains(PASSWORD), "{printed}");
    assert!(!printed.contains("horse"), "{printed}");
    let proxy = crate::app::App::build(&config, None)
        .unwrap()
        .proxy()
        .clone();
    let printed = format!("{proxy:?}");
    assert!(printed.contains("RedisBackend"), "{printed}");
    assert!(!printed.contains(PASSWORD), "{printed}");

    // Equal with the same password, not with another (also one that is a prefix of it).
    assert_eq!(redis(&config), redis(&with_redis_password(PASSWORD)));
    assert_ne!(redis(&config), redis(&with_redis_password("another")));
    assert_ne!(redis(&config), redis(&with_redis_password("correct-horse")));
    let mut without = redis(&config).clone();
    without.password = None;
    assert_ne!(redis(&config), &without);
}
