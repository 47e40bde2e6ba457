//! The page's pieces on hand-made statuses: escaping, links, the policy, the sort, the query.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use super::html::{csp, http_link, style, Esc, SCRIPT};
use super::render::{self, Summary};
use super::*;
use crate::status::{
    Failure, RateLimitStatus, RecentStatus, RequestStatus, TenantStatus, Time, TokenErrorStatus,
    TokenStatus, WindowStatus,
};
use crate::token::SlotState;

const NASTY: &str = "<script>alert('x')</script> & \"q\"";

fn token(api: &str, meaning: &str, consent_url: Option<&str>) -> TokenStatus {
    TokenStatus {
        api: api.into(),
        scope: "https://api.security.microsoft.com/.default".into(),
        state: SlotState::Failing,
        usable: false,
        expires_at: None,
        roles: vec![],
        failure: Some(Failure {
            error: TokenErrorStatus {
                code: Some("AADSTS65001".into()),
                meaning: meaning.into(),
            },
            consent_url: consent_url.map(Into::into),
        }),
    }
}

fn status(name: &str, health: Health, tokens: Vec<TokenStatus>) -> TenantStatus {
    TenantStatus {
        name: name.into(),
        id: "22222222-2222-2222-2222-222222222222".into(),
        source: "file",
        app: "default".into(),
        cloud: "default".into(),
        health,
        tokens,
        rate_limit: RateLimitStatus {
            backend: "local",
            windows: vec![WindowStatus {
                class: "/api/machines".into(),
                window: "minute",
                limit: 100,
                used: Some(42),
            }],
            queued: 3,
            paused_until: Some(Time(SystemTime::now() + Duration::from_secs(30))),
        },
        requests: RequestStatus {
            total: 10,
            errors: 2,
            last_at: Some(Time(SystemTime::now())),
            last_error_at: None,
            last_5m: RecentStatus {
                total: 7,
                errors: 1,
            },
        },
    }
}

#[test]
fn escaping_covers_markup_quotes_and_ampersands() {
    assert_eq!(
        Esc(NASTY).to_string(),
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
    );
    assert_eq!(Esc("plain-name 42").to_string(), "plain-name 42");
    assert_eq!(Esc("").to_string(), "");
    assert_eq!(
        Esc("é&é").to_string(),
        "é&amp;é",
        "multi-byte text around it"
    );
}

#[test]
fn only_http_urls_become_links() {
    let consent = "https://login.microsoftonline.com/t/adminconsent?client_id=1&x=2";
    assert_eq!(http_link(consent), Some(consent));
    assert!(http_link("HTTP://127.0.0.1:1/adminconsent").is_some());
    for bad in [
        "javascript:alert(1)",
        "data:text/html,<script>",
        "//evil.example/x",
        "https://a.example/\" onmouseover=\"x",
        "https://a.example/\nx",
        "",
    ] {
        assert_eq!(http_link(bad), None, "{bad}");
    }
}

#[test]
fn a_row_escapes_every_value_and_links_only_the_http_consent_url() {
    let consent = "https://login.example/t/adminconsent?client_id=1&state=<x>";
    let tokens = vec![
        token("default", NASTY, Some(consent)),
        token("graph", "no consent", Some("javascript:alert(1)")),
    ];
    let mut out = String::new();
    render::row(
        &mut out,
        &status("<script>t</script>", Health::Failing, tokens),
        SystemTime::now(),
    );
    assert!(!out.contains("<script"), "{out}");
    assert!(!out.contains("alert('x')"), "{out}");
    assert!(out.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"));
    assert!(out.contains("<code>AADSTS65001</code>"), "{out}");
    assert!(
        out.contains(
            "href=\"https://login.example/t/adminconsent?client_id=1&amp;state=&lt;x&gt;\""
        ),
        "{out}"
    );
    assert!(!out.contains("href=\"javascript"), "{out}");
    assert!(out.contains("+1 more"), "the second failing API: {out}");
    assert!(out.contains("class=\"hb failing\">failing<"), "{out}");
    assert!(out.contains("42/100"), "{out}");
    assert!(out.contains("class=\"p45\""), "{out}");
    assert!(out.contains("7 req<br>1 err"), "{out}");

    let mut detail = String::new();
    super::detail::detail(
        &mut detail,
        &status("<b>", Health::Failing, vec![token("d", NASTY, None)]),
        SystemTime::now(),
    );
    assert!(
        !detail.contains("<b>") && !detail.contains("<script>"),
        "{detail}"
    );
    assert!(
        detail.contains("<title>&lt;b&gt;: failing</title>"),
        "{detail}"
    );
}

#[test]
fn the_policy_allows_exactly_the_inline_style_and_script() {
    let policy = csp();
    let policy = policy.to_str().unwrap();
    let hash = |text: &str| {
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    use base64::Engine as _;
    assert!(policy.starts_with("default-src 'none';"), "{policy}");
    assert!(
        policy.contains(&format!("style-src {};", hash(style()))),
        "{policy}"
    );
    assert!(
        policy.contains(&format!("script-src {};", hash(SCRIPT))),
        "{policy}"
    );
    assert!(!policy.contains("unsafe"), "{policy}");

    let summary = Summary {
        by_health: [1, 0, 1],
        matched: 2,
        page: 1,
        pages: 1,
        per_page: PER_PAGE,
        ..Summary::default()
    };
    let mut page = String::new();
    render::list_head(&mut page, &summary, SystemTime::now());
    let tokens = vec![token("default", "m", None)];
    render::row(
        &mut page,
        &status("a", Health::Failing, tokens),
        SystemTime::now(),
    );
    render::list_foot(&mut page, &summary);
    assert_eq!(page.matches("<script>").count(), 1);
    assert!(page.contains(&format!("<script>{SCRIPT}</script>")));
    assert!(page.contains(&format!("<style>{}</style>", style())));
    assert!(
        !page.contains("style=\""),
        "no style attributes: the policy forbids them"
    );
    let handlers = page.match_indices(" on").filter(|(i, _)| {
        let rest = &page[i + 3..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        letters > 0 && rest.as_bytes().get(letters) == Some(&b'=')
    });
    assert_eq!(handlers.count(), 0, "no event handler attributes");
    assert!(page.contains("<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>"));
}

#[test]
fn the_pager_keeps_the_filter_in_its_links() {
    let summary = Summary {
        q: "a&b \"c\"".into(),
        matched: 1200,
        page: 2,
        pages: 3,
        per_page: PER_PAGE,
        ..Summary::default()
    };
    let mut out = String::new();
    render::list_foot(&mut out, &summary);
    assert!(out.contains("Tenants 501–1000 of 1200"), "{out}");
    assert!(
        out.contains("href=\"/?q=a%26b+%22c%22&amp;page=1\""),
        "{out}"
    );
    assert!(
        out.contains("href=\"/?q=a%26b+%22c%22&amp;page=3\""),
        "{out}"
    );
}

#[test]
fn worst_first_then_by_name() {
    let mut rows = [
        (Health::Ok, "a"),
        (Health::Failing, "z"),
        (Health::Degraded, "b"),
        (Health::Failing, "c"),
    ];
    rows.sort_by(|a, b| render::worst_first(*a, *b));
    let names: Vec<&str> = rows.iter().map(|r| r.1).collect();
    assert_eq!(names, ["c", "z", "b", "a"]);
}

#[test]
fn the_query_reads_filter_page_and_tenant() {
    let q = Query::parse(Some("q=+Fabrikam%20&page=3&tenant=contoso&x=1"));
    assert_eq!((q.q.as_str(), q.page), ("Fabrikam", 3));
    assert_eq!(q.tenant.as_deref(), Some("contoso"));
    for bad in [None, Some("page=0"), Some("page=x"), Some("page=-1")] {
        assert_eq!(Query::parse(bad).page, 1, "{bad:?}");
    }
    let long = format!("q={}", "a".repeat(1000));
    assert_eq!(Query::parse(Some(&long)).q.len(), MAX_FILTER);
}

#[test]
fn the_search_key_holds_what_the_filter_box_promises() {
    let s = status(
        "Fabrikam",
        Health::Failing,
        vec![token("graph", "Consent needed", None)],
    );
    let key = render::search_key(&s);
    for part in [
        "fabrikam",
        "22222222",
        "failing",
        "graph",
        "aadsts65001",
        "consent needed",
    ] {
        assert!(key.contains(part), "{part} in {key}");
    }
}
