//! `[[api]]`: parsing, defaults by host, implicit route classes and every problem.

use std::num::NonZeroU32;

use http::Uri;

use super::{ok, problem_on, problems, with, APP, TENANT};
use crate::config::{defaults, ApiConfig, RouteLimit, Windows};

fn nz(n: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(n)
}

fn windows(per_minute: u32, per_hour: u32, burst: u32) -> Windows {
    Windows {
        per_minute: nz(per_minute),
        per_hour: nz(per_hour),
        burst: nz(burst),
    }
}

/// An `[[api]]` table with `name`, `prefix` and `url`, plus `extra` lines.
fn api(name: &str, prefix: &str, url: &str, extra: &str) -> String {
    format!("[[api]]\nname = \"{name}\"\nprefix = \"{prefix}\"\nurl = \"{url}\"\n{extra}\n")
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

#[test]
fn the_documented_example_parses() {
    let config = ok(&with(
        r#"
[[api]]
name = "mde"
prefix = "/mde"
url = "https://api.securitycenter.microsoft.com"
scope = "https://api.securitycenter.microsoft.com/.default"

[[api]]
name = "graph"
prefix = "/graph"
url = "https://graph.microsoft.com"
scope = "https://graph.microsoft.com/.default"
"#,
    ));
    assert_eq!(
        config.apis,
        [
            ApiConfig {
                name: "mde".into(),
                prefix: "/mde".into(),
                url: Uri::from_static("https://api.securitycenter.microsoft.com"),
                scope: defaults::MDE_SCOPE.into(),
                clouds: Default::default(),
            },
            ApiConfig {
                name: "graph".into(),
                prefix: "/graph".into(),
                url: Uri::from_static("https://graph.microsoft.com"),
                scope: defaults::GRAPH_SCOPE.into(),
                clouds: Default::default(),
            },
        ]
    );
    // Each API's documented limits are a route class of its prefix.
    assert_eq!(
        config.rate_limit.routes,
        [
            RouteLimit {
                path_prefix: "/mde".into(),
                windows: windows(100, 1500, 0),
            },
            RouteLimit {
                path_prefix: "/graph".into(),
                windows: windows(150, 0, 0),
            },
        ]
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    // The default API is untouched, and without [[api]] there is none.
    assert_eq!(config.cloud.api, Uri::from_static(defaults::API));
    let plain = ok(&with(""));
    assert!(plain.apis.is_empty() && plain.rate_limit.routes.is_empty());
}

#[test]
fn default_limits_by_host() {
    let global = "[rate_limit]\nper_minute = 20\nper_hour = 0\nburst = 5\n";
    let mde = windows(100, 1500, 0);
    let graph = windows(150, 0, 0);
    let inherited = windows(20, 0, 5);
    for (url, expected) in [
        ("https://api.securitycenter.microsoft.com", mde),
        ("https://API-EU.securitycenter.microsoft.com", mde),
        ("https://us.api.securitycenter.microsoft.com", mde),
        ("https://api-gcc.securitycenter.microsoft.us", mde),
        ("https://api-gov.securitycenter.microsoft.us", mde),
        ("https://graph.microsoft.com", graph),
        ("https://graph.microsoft.us", graph),
        ("https://dod-graph.microsoft.us", graph),
        // Defender XDR's own host, any other host, the simulator: [rate_limit]'s windows.
        ("https://api.security.microsoft.com", inherited),
        ("https://api.example.com", inherited),
        ("http://127.0.0.1:9001", inherited),
    ] {
        let config = ok(&with(&format!("{global}{}", api("x", "/x", url, ""))));
        assert_eq!(config.rate_limit.routes[0].windows, expected, "{url}");
        assert_eq!(config.rate_limit.routes[0].path_prefix, "/x");
    }
}

#[test]
fn written_limits_replace_the_defaults_one_by_one() {
    let text = with(&format!(
        "{}{}{}",
        api(
            "mde",
            "/mde",
            "https://api.securitycenter.microsoft.com",
            "per_minute = 50"
        ),
        api(
            "graph",
            "/graph",
            "https://graph.microsoft.com",
            "per_hour = 3000\nburst = 20"
        ),
        api(
            "other",
            "/other",
            "https://api.example.com",
            "per_minute = 0\nper_hour = 10"
        ),
    ));
    let routes = ok(&text).rate_limit.routes;
    assert_eq!(routes[0].windows, windows(50, 1500, 0));
    assert_eq!(routes[1].windows, windows(150, 3000, 20));
    // `0` is no limit on that window, as for routes.
    assert_eq!(routes[2].windows, windows(0, 10, 0));
}

#[test]
fn scope_defaults_to_the_url_and_regional_hosts_keep_their_audience() {
    let text = with(&format!(
        "{}{}{}{}",
        api("a", "/a", "https://graph.microsoft.com", ""),
        api("b", "/b", "https://eu.api.security.microsoft.com", ""),
        api("c", "/c", "https://api-uk.securitycenter.microsoft.com", ""),
        api(
            "d",
            "/d",
            "http://127.0.0.1:9001/",
            "scope = \" https://example/.default \""
        ),
    ));
    let scopes: Vec<String> = ok(&text).apis.into_iter().map(|a| a.scope).collect();
    assert_eq!(
        scopes,
        [
            "https://graph.microsoft.com/.default",
            "https://api.security.microsoft.com/.default",
            "https://api.securitycenter.microsoft.com/.default",
            "https://example/.default",
        ]
    );
}

#[test]
fn regional_api_hosts_are_accepted() {
    for host in [
        "us.api.security.microsoft.com",
        "eu.api.security.microsoft.com",
        "uk.api.security.microsoft.com",
        "au.api.security.microsoft.com",
    ] {
        let url = format!("https://{host}");
        let config = ok(&with(&format!("[cloud]\napi = \"{url}\"")));
        assert_eq!(config.cloud.api, url.parse::<Uri>().expect("uri"));
        // Same resource in every region: the scope stays the API's.
        assert_eq!(config.cloud.scope, defaults::SCOPE);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);

        let config = ok(&with(&api("xdr-eu", "/eu", &url, "")));
        assert_eq!(config.apis[0].url, url.parse::<Uri>().expect("uri"));
        assert_eq!(config.apis[0].scope, defaults::SCOPE);
    }
}

#[test]
fn a_route_with_the_same_prefix_wins_over_the_implicit_class() {
    let route = "[[rate_limit.route]]\npath_prefix = \"/MDE\"\nper_minute = 7\n\
                 [[rate_limit.route]]\npath_prefix = \"/mde/api/advancedqueries\"\nper_minute = 45\n";
    let mde = "https://api.securitycenter.microsoft.com";
    let config = ok(&with(&format!("{route}{}", api("mde", "/mde", mde, ""))));
    let prefixes: Vec<&str> = config
        .rate_limit
        .routes
        .iter()
        .map(|r| r.path_prefix.as_str())
        .collect();
    assert_eq!(prefixes, ["/MDE", "/mde/api/advancedqueries"]);
    assert_eq!(config.rate_limit.routes[0].windows, windows(7, 0, 0));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    // Limits written in the [[api]] then go unused: said so.
    let config = ok(&with(&format!(
        "{route}{}",
        api("mde", "/mde", mde, "per_minute = 60")
    )));
    assert_eq!(config.rate_limit.routes.len(), 2);
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(
        config.warnings[0].starts_with("api[0]:")
            && config.warnings[0].contains("rate_limit.route[0]"),
        "{:?}",
        config.warnings
    );
}

#[test]
fn every_problem_is_named_with_its_key_and_line() {
    let text = format!(
        "{APP}{TENANT}\n\
         [[api]]\nscope = \"https://x/.default\"\n\
         [[api]]\nname = \"MDE\"\nprefix = \"mde\"\nurl = \"http://api.example.com\"\nscope = \" \"\n\
         [[api]]\nname = \"default\"\nprefix = \"/api/machines\"\nurl = \"https://api.example.com/v1\"\nper_minute = -1\n\
         [[api]]\nname = \"graph\"\nprefix = \"/graph\"\nurl = \"https://graph.microsoft.com\"\n\
         [[api]]\nname = \"graph\"\nprefix = \"/Graph/beta\"\nurl = \"https://graph.microsoft.com\"\nburst = 200\n\
         [[api]]\nname = \"tenant-like\"\nprefix = \"/Contoso/x\"\nurl = \"https://api.example.com\"\nburst = 0\n\
         [[api]]\nname = \"dup\"\nprefix = \"/GRAPH\"\nurl = \"ftp://h.example.com\"\nper_hour = 5000000000\n"
    );
    let found = problems(&text);
    let at = |needle: &str| line_of(&text, needle);
    let expected = [
        ("api[0].name", at("scope = \"https://x")),
        ("api[0].prefix", at("scope = \"https://x")),
        ("api[0].url", at("scope = \"https://x")),
        ("api[1].name", at("name = \"MDE\"")),
        ("api[1].prefix", at("prefix = \"mde\"")),
        ("api[1].url", at("http://api.example.com")),
        ("api[1].scope", at("scope = \" \"")),
        ("api[2].name", at("name = \"default\"")),
        ("api[2].prefix", at("/api/machines")),
        ("api[2].url", at("/v1\"")),
        ("api[2].per_minute", at("per_minute = -1")),
        ("api[4].name", at("prefix = \"/Graph/beta\"").map(|l| l - 1)),
        ("api[4].prefix", at("/Graph/beta")),
        ("api[4].burst", at("burst = 200")),
        ("api[5].prefix", at("/Contoso/x")),
        ("api[5].burst", at("burst = 0")),
        ("api[6].prefix", at("/GRAPH\"")),
        ("api[6].url", at("ftp://")),
        ("api[6].per_hour", at("5000000000")),
    ];
    let got: Vec<(&str, Option<usize>)> = found.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(got, expected, "{found:#?}");

    let message = |key: &str| problem_on(&found, key).message.clone();
    assert!(message("api[0].name").contains("is required"));
    assert!(message("api[0].url").contains("is required"));
    assert!(message("api[1].name").contains("lower-case"));
    assert!(message("api[1].prefix").contains("must start with '/'"));
    assert!(message("api[1].url").contains("https://"));
    assert!(message("api[1].scope").contains("must not be empty"));
    assert!(message("api[2].name").contains("[cloud]'s API"));
    assert!(message("api[2].prefix").contains("start with /api"));
    assert!(message("api[2].url").contains("without a path"));
    assert!(message("api[2].per_minute").contains("negative"));
    assert!(message("api[4].name").contains("already the name of api[3]"));
    assert!(message("api[4].prefix").contains("lies under `/graph`, the prefix of api[3]"));
    assert_eq!(
        message("api[4].burst"),
        "200 is more than per_minute (150, Graph's default)"
    );
    assert!(message("api[5].prefix").contains("tenant `contoso`"));
    assert!(message("api[5].burst").contains("at least 1"));
    assert!(message("api[6].prefix").contains("already the prefix of api[3]"));
    assert!(message("api[6].per_hour").contains("at most"));
}

#[test]
fn prefixes_must_be_whole_segments_owned_by_one_api() {
    for bad in [
        "/",
        "/mde/",
        "//mde",
        "/mde//x",
        "/mde/../x",
        "/./mde",
        "/mde?x=1",
        "/m de",
        "mde",
    ] {
        let found = problems(&with(&api("mde", bad, "https://h.example.com", "")));
        problem_on(&found, "api[0].prefix");
        assert_eq!(found.len(), 1, "{bad}: {found:#?}");
    }
    // Either order of a prefix and one below it is refused, on the later one.
    for (first, second, says) in [
        ("/mde", "/mde/x", "lies under `/mde`"),
        ("/mde/x", "/MDE", "contains `/mde/x`"),
        ("/mde", "/Mde", "already the prefix of api[0]"),
    ] {
        let text = with(&format!(
            "{}{}",
            api("a", first, "https://a.example.com", ""),
            api("b", second, "https://b.example.com", "")
        ));
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{found:#?}");
        let p = problem_on(&found, "api[1].prefix");
        assert!(p.message.contains(says), "{}", p.message);
    }
    // Siblings and names that merely start alike are separate APIs.
    let config = ok(&with(&format!(
        "{}{}{}",
        api("a", "/mde", "https://a.example.com", ""),
        api("b", "/mdex", "https://b.example.com", ""),
        api("c", "/x/mde", "https://c.example.com", "")
    )));
    assert_eq!(config.apis.len(), 3);
    assert_eq!(config.rate_limit.routes.len(), 3);
    // A tenant is recognised by its id too.
    let found = problems(&with(&api(
        "a",
        "/22222222-2222-2222-2222-222222222222",
        "https://a.example.com",
        "",
    )));
    assert!(problem_on(&found, "api[0].prefix")
        .message
        .contains("tenant `contoso`"));
}

#[test]
fn an_api_burst_is_checked_against_the_inherited_per_minute_and_back() {
    let global = "[rate_limit]\nper_minute = 60\nburst = 40\n";
    // Writing per_minute below [rate_limit]'s burst names the API's own key.
    let found = problems(&with(&format!(
        "{global}{}",
        api("a", "/a", "https://a.example.com", "per_minute = 10")
    )));
    assert_eq!(
        problem_on(&found, "api[0].per_minute").message,
        "10 is less than burst (40, from [rate_limit])"
    );
    let found = problems(&with(&api(
        "a",
        "/a",
        "https://a.example.com",
        "burst = 80",
    )));
    assert_eq!(
        problem_on(&found, "api[0].burst").message,
        format!(
            "80 is more than per_minute ({}, from [rate_limit])",
            defaults::PER_MINUTE
        )
    );
    // A known API does not inherit [rate_limit]'s burst: its own defaults apply whole.
    let config = ok(&with(&format!(
        "{global}{}",
        api("g", "/g", "https://graph.microsoft.com", "")
    )));
    assert_eq!(config.rate_limit.routes[0].windows, windows(150, 0, 0));
    // A conflict made in [rate_limit] alone is reported there only.
    let found = problems(&with(&format!(
        "[rate_limit]\nper_minute = 5\nburst = 10\n{}",
        api("a", "/a", "https://a.example.com", "")
    )));
    assert_eq!(found.len(), 1, "{found:#?}");
    problem_on(&found, "rate_limit.burst");
}

#[test]
fn keys_of_other_tables_in_an_api_are_pointed_at_their_place() {
    let text = format!(
        "{APP}{TENANT}[[api]]\nname = \"a\"\nprefix = \"/a\"\nurl = \"https://a.example.com\"\n\
         mode = \"reject\"\napi = \"https://b.example.com\"\n"
    );
    let found = problems(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(problem_on(&found, "api[0].mode")
        .message
        .contains("[rate_limit]"));
    assert!(problem_on(&found, "api[0].api").message.contains("`url`"));
    let found = problems(&format!("{APP}{TENANT}[[api]]\nnmae = \"a\"\n"));
    let p = problem_on(&found, "api[0].nmae");
    assert!(
        p.message.contains("unknown key `nmae`") && p.message.contains("prefix"),
        "{}",
        p.message
    );
}
