//! The status page, `GET /` on the admin listener (issue 16, item 1): every tenant's health,
//! tokens, last error with its AADSTS meaning and consent link, limits and requests, worst
//! first; a tenant in detail; every value escaped; protected like `GET /tenants`.

#![allow(clippy::unwrap_used)]

mod support;

use defender_proxy::sim::SimConfig;
use serde_json::Value;
use support::{Harness, CONTOSO, FABRIKAM};

const ADMIN_KEY: &str = "dpk_test-admin-key-for-the-status-page";
/// The third tenant of `SimConfig::demo_with_tenants(1)`.
const PAUSED: &str = "tenant-00001";

async fn get(h: &Harness, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = h.http.get(format!("http://{}{path}", h.admin));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

async fn page(h: &Harness, path: &str) -> String {
    let response = get(h, path, None).await;
    assert_eq!(response.status(), 200, "{path}");
    response.text().await.unwrap()
}

/// As the page writes text: `&`, `<`, `>`, `"`, `'` as character references.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Where tenant `name`'s row starts.
fn row_of(html: &str, name: &str) -> usize {
    html.find(&format!("<a href=\"/?tenant={name}\">{name}</a>"))
        .unwrap_or_else(|| panic!("no row of {name}"))
}

/// The `<tr>` holding position `at`.
fn row_around(html: &str, at: usize) -> &str {
    let start = html[..at].rfind("<tr").unwrap();
    let end = at + html[at..].find("</tr>").unwrap();
    &html[start..end]
}

#[tokio::test]
async fn the_page_shows_each_tenants_state_and_the_failing_ones_error_first() {
    let h = Harness::start_with(SimConfig::demo_with_tenants(1), |_| {}).await;
    h.sim.set_consent(&h.tenant_id(FABRIKAM), false);
    h.sim.force_api_429(&h.tenant_id(PAUSED), 1, Some("300"));
    assert_eq!(h.get("/contoso/api/incidents").await.status(), 200);
    assert_eq!(h.get("/fabrikam/api/incidents").await.status(), 503);
    assert_eq!(h.get("/tenant-00001/api/incidents").await.status(), 429);

    let response = get(&h, "/", None).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'") && csp.contains("script-src 'sha256-"));
    let html = response.text().await.unwrap();

    // The error's meaning and consent link as the JSON status has them.
    let status: Value = get(&h, "/tenants/fabrikam", None)
        .await
        .json()
        .await
        .unwrap();
    let failure = &status["tokens"][0];
    let meaning = failure["error"]["meaning"].as_str().unwrap();
    let code = failure["error"]["code"].as_str().unwrap();
    let consent = failure["consent_url"].as_str().unwrap();
    assert!(html.contains(&escaped(meaning)), "{meaning} in {html}");
    assert!(html.contains(&format!("<code>{code}</code>")));
    assert!(
        html.contains(&format!("<a href=\"{}\"", escaped(consent))),
        "the consent link is a link: {html}"
    );

    let (fabrikam, paused, contoso) = (
        row_of(&html, FABRIKAM),
        row_of(&html, PAUSED),
        row_of(&html, CONTOSO),
    );
    assert!(fabrikam < paused && paused < contoso, "worst first");
    let row = |at: usize| row_around(&html, at);
    assert!(
        row(fabrikam).contains(">failing</span>"),
        "{}",
        row(fabrikam)
    );
    assert!(row(fabrikam).contains("s-failing"), "the token state");
    assert!(row(paused).contains(">degraded</span>"), "{}", row(paused));
    assert!(
        row(paused).contains("<time"),
        "paused until: {}",
        row(paused)
    );
    assert!(row(contoso).contains(">ok</span>"), "{}", row(contoso));
    assert!(row(contoso).contains("s-valid\">valid</span>, expires <time"));
    assert!(row(contoso).contains("1 req<br>0 err"), "{}", row(contoso));
    assert!(html.contains("1 failing") && html.contains("1 degraded") && html.contains("1 ok"));

    let detail = page(&h, "/?tenant=fabrikam").await;
    assert!(detail.contains(&escaped(meaning)) && detail.contains(&escaped(consent)));
    assert!(
        detail.contains("https://api.security.microsoft.com/.default"),
        "the scope"
    );
    assert!(
        detail.contains("1 requests, 1 errors"),
        "the last 5 minutes: {detail}"
    );

    let filtered = page(&h, "/?q=CONTOSO").await;
    assert!(filtered.contains("/?tenant=contoso") && !filtered.contains("/?tenant=fabrikam"));
    let failing = page(&h, "/?q=failing").await;
    assert!(failing.contains("/?tenant=fabrikam") && !failing.contains("/?tenant=contoso"));
    h.stop().await;
}

#[tokio::test]
async fn pages_of_500_are_worst_first_across_pages() {
    let h = Harness::start_with(SimConfig::demo_with_tenants(600), |_| {}).await;
    let last = "tenant-00600";
    h.sim.set_consent(&h.tenant_id(last), false);
    assert_eq!(h.get(&format!("/{last}/api/incidents")).await.status(), 503);

    let first = page(&h, "/").await;
    let rows = |html: &str| html.matches("<tr class=").count();
    assert_eq!(rows(&first), 500);
    assert!(first.contains("Tenants 1–500 of 602"), "{}", &first[..2000]);
    assert!(first.contains("href=\"/?page=2\">next ›</a>"));
    let first_row = first.find("<tr class=").unwrap();
    assert_eq!(
        row_of(&first, last),
        first.find("<a href=\"/?tenant=").unwrap()
    );
    assert!(first[first_row..].starts_with("<tr class=\"failing\""));

    let second = page(&h, "/?page=2").await;
    assert_eq!(rows(&second), 102);
    assert!(second.contains("Tenants 501–602 of 602") && !second.contains(last));
    assert!(second.contains("href=\"/?page=1\">‹ previous</a>"));
    assert_eq!(
        page(&h, "/?page=99").await.matches("<tr class=").count(),
        102
    );
    h.stop().await;
}

#[tokio::test]
async fn what_the_request_brings_is_escaped() {
    let h = Harness::start().await;
    let html = page(&h, "/?q=%3Cscript%3Ealert('x')%3C/script%3E%22").await;
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("value=\"&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;\""));
    assert!(html.contains("No tenant matches"));

    let unknown = get(&h, "/?tenant=%3Cimg%20src=x%3E", None).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let unknown = unknown.text().await.unwrap();
    assert!(unknown.contains("&lt;img src=x&gt;") && !unknown.contains("<img"));
    h.stop().await;
}

#[tokio::test]
async fn off_loopback_the_page_needs_the_admin_key() {
    let hash = defender_proxy::inbound::auth::key_sha256_hex(ADMIN_KEY);
    let h = Harness::start_with(SimConfig::demo(), |c| {
        // Only what the admin listener is configured on decides; the test still reaches it on
        // loopback.
        c.admin.addr = "10.20.30.40:9090".parse().unwrap();
        c.admin.key_sha256 = Some(hex32(&hash));
    })
    .await;
    for key in [None, Some("dpk_wrong-key")] {
        let refused = get(&h, "/", key).await;
        assert_eq!(refused.status(), 401, "{key:?}");
        assert!(refused.headers().contains_key("www-authenticate"));
        let body = refused.text().await.unwrap();
        assert!(!body.contains("contoso"), "nothing of the tenants: {body}");
        assert_eq!(get(&h, "/?tenant=contoso", key).await.status(), 401);
    }
    let page = get(&h, "/", Some(ADMIN_KEY)).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/?tenant=contoso"));
    h.stop().await;
}

#[tokio::test]
async fn on_loopback_a_wrong_key_is_still_refused() {
    let hash = defender_proxy::inbound::auth::key_sha256_hex(ADMIN_KEY);
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.admin.key_sha256 = Some(hex32(&hash));
    })
    .await;
    assert_eq!(get(&h, "/", Some("dpk_wrong-key")).await.status(), 401);
    assert_eq!(
        get(&h, "/", None).await.status(),
        200,
        "reading on loopback"
    );
    assert_eq!(get(&h, "/", Some(ADMIN_KEY)).await.status(), 200);
    h.stop().await;
}

fn hex32(hex: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}
