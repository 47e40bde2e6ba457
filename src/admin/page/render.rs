//! The list page, written as the parts it is streamed in: the head (summary, filter, pager),
//! one row per tenant, the foot. Pure functions of a [`TenantStatus`] and the time, so they are
//! tested on hand-made statuses.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::html::{bar, health_word, http_link, style, time, time_or_dash, Esc, SCRIPT};
use crate::status::{Health, TenantStatus, TokenStatus};

/// What the head of the list says about the whole selection.
#[derive(Debug, Clone, Default)]
pub(super) struct Summary {
    /// Every tenant by health (`[ok, degraded, failing]`), filtered or not.
    pub(super) by_health: [usize; 3],
    /// The filter (`?q=`), as typed.
    pub(super) q: String,
    /// Tenants the filter kept.
    pub(super) matched: usize,
    /// This page (from 1), the number of pages, rows per page.
    pub(super) page: usize,
    pub(super) pages: usize,
    pub(super) per_page: usize,
}

/// `<!doctype html>` to `<body>`: the title, the style, the refresh for readers without script.
pub(super) fn document_start(out: &mut String, title: &str, meta_refresh: bool) {
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>",
        Esc(title)
    );
    if meta_refresh {
        out.push_str("<meta http-equiv=\"refresh\" content=\"10\">");
    } else {
        out.push_str("<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>");
    }
    let _ = write!(out, "<style>{}</style></head><body>", style());
}

/// The head of the list, up to the first row.
pub(super) fn list_head(out: &mut String, s: &Summary, now: SystemTime) {
    let total: usize = s.by_health.iter().sum();
    document_start(out, &format!("defender-proxy: {total} tenants"), false);
    let [ok, degraded, failing] = s.by_health;
    let _ = write!(
        out,
        "<h1><a href=\"/\">defender-proxy</a></h1><p>{total} tenants: \
         <span class=\"hb failing\">{failing} failing</span> \
         <span class=\"hb degraded\">{degraded} degraded</span> \
         <span class=\"hb ok\">{ok} ok</span> · as of {}, refreshed every 10 s · \
         <a href=\"/tenants\">JSON</a></p>\
         <form method=\"get\" action=\"/\"><label>Filter \
         <input id=\"q\" name=\"q\" value=\"{}\" placeholder=\"name, id, health, state, AADSTS code\">\
         </label> <button>Filter</button></form>",
        humantime::format_rfc3339_seconds(now),
        Esc(&s.q)
    );
    pager(out, s);
    out.push_str(
        "<table><thead><tr><th>Health</th><th>Tenant</th><th>Tokens</th><th>Last error</th>\
         <th>Rate limit</th><th>Queued</th><th>Paused until</th><th>Last 5 min</th>\
         <th>Last request</th></tr></thead><tbody>",
    );
}

/// The end of the table and the page.
pub(super) fn list_foot(out: &mut String, s: &Summary) {
    out.push_str("</tbody></table>");
    if s.matched == 0 {
        out.push_str("<p>No tenant matches the filter.</p>");
    }
    pager(out, s);
    let _ = writeln!(out, "<script>{SCRIPT}</script></body></html>");
}

/// "Tenants 501–1000 of 5000, worst first" and the links to the pages around.
fn pager(out: &mut String, s: &Summary) {
    let first = (s.page - 1) * s.per_page;
    let last = (first + s.per_page).min(s.matched);
    let _ = write!(
        out,
        "<p class=\"sub\">Tenants {}–{last} of {}, worst first",
        (first + 1).min(last),
        s.matched
    );
    let link = |out: &mut String, page: usize, text: &str| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if !s.q.is_empty() {
            query.append_pair("q", &s.q);
        }
        query.append_pair("page", &page.to_string());
        let _ = write!(out, " · <a href=\"/?{}\">{text}</a>", Esc(&query.finish()));
    };
    if s.page > 1 {
        link(out, s.page - 1, "‹ previous");
    }
    if s.page < s.pages {
        link(out, s.page + 1, "next ›");
        let _ = write!(out, " (page {} of {})", s.page, s.pages);
    }
    out.push_str("</p>");
}

/// What `?q=` and the script's filter match, lower case: name, id, health, and per token its
/// API, state and error.
pub(super) fn search_key(status: &TenantStatus) -> String {
    let mut key = format!(
        "{} {} {}",
        status.name,
        status.id,
        health_word(status.health)
    );
    for token in &status.tokens {
        let _ = write!(key, " {} {}", token.api, token.state.as_str());
        if let Some(failure) = &token.failure {
            let code = failure.error.code.as_deref().unwrap_or_default();
            let _ = write!(key, " {code} {}", failure.error.meaning);
        }
    }
    key.to_lowercase()
}

/// One tenant's row.
pub(super) fn row(out: &mut String, status: &TenantStatus, now: SystemTime) {
    let health = health_word(status.health);
    let name = Esc(&status.name);
    let _ = write!(
        out,
        "<tr class=\"{health}\" data-k=\"{}\"><td><span class=\"hb {health}\">{health}</span></td>\
         <td><a href=\"/?tenant={name}\">{name}</a><div class=\"sub\">{}</div></td><td>",
        Esc(&search_key(status)),
        Esc(&status.id)
    );
    for token in &status.tokens {
        token_line(out, token, now);
    }
    out.push_str("</td><td class=\"err\">");
    let mut failures = status.tokens.iter().filter(|t| t.failure.is_some());
    if let Some(token) = failures.next() {
        failure(out, token);
        let more = failures.count();
        if more > 0 {
            let _ = write!(out, " <a href=\"/?tenant={name}\">+{more} more</a>");
        }
    }
    out.push_str("</td><td>");
    windows(out, status);
    let requests = &status.requests;
    let _ = write!(
        out,
        "</td><td class=\"n\">{}</td><td>",
        status.rate_limit.queued
    );
    time_or_dash(out, status.rate_limit.paused_until, now);
    let _ = write!(
        out,
        "</td><td class=\"n\">{} req<br>{} err</td><td>",
        requests.last_5m.total, requests.last_5m.errors
    );
    time_or_dash(out, requests.last_at, now);
    out.push_str("</td></tr>");
}

/// The windows a line per route class: `tenant [bar] 12/50 /minute [bar] 40/1500 /hour`, then
/// `/mde ...` (the status lists a class's windows together).
fn windows(out: &mut String, status: &TenantStatus) {
    let mut class: Option<&str> = None;
    for w in &status.rate_limit.windows {
        if class != Some(&w.class) {
            if class.is_some() {
                out.push_str("</div>");
            }
            class = Some(&w.class);
            match &*w.class {
                "default" => out.push_str("<div class=\"nw\">tenant "),
                other => {
                    let _ = write!(out, "<div class=\"nw\"><code>{}</code> ", Esc(other));
                }
            }
        }
        bar(out, w.used, w.limit);
        let _ = write!(out, " /{} ", w.window);
    }
    if class.is_some() {
        out.push_str("</div>");
    }
}

/// `default: valid, expires in 52m`.
fn token_line(out: &mut String, token: &TokenStatus, now: SystemTime) {
    let state = token.state.as_str();
    let _ = write!(
        out,
        "<div class=\"nw\">{}: <span class=\"s-{state}\">{state}</span>",
        Esc(&token.api)
    );
    if let Some(expires) = token.expires_at {
        out.push_str(", expires ");
        time(out, expires, now);
    }
    out.push_str("</div>");
}

/// The token's error: its AADSTS code, meaning, and the consent link when there is one.
pub(super) fn failure(out: &mut String, token: &TokenStatus) {
    let Some(failure) = &token.failure else {
        return;
    };
    let _ = write!(out, "{}: ", Esc(&token.api));
    if let Some(code) = &failure.error.code {
        let _ = write!(out, "<code>{}</code> ", Esc(code));
    }
    let _ = write!(out, "{}", Esc(&failure.error.meaning));
    match failure.consent_url.as_deref().map(|u| (u, http_link(u))) {
        Some((_, Some(url))) => {
            let _ = write!(
                out,
                " <a href=\"{}\" rel=\"noopener noreferrer\">admin consent link</a>",
                Esc(url)
            );
        }
        Some((url, None)) => {
            let _ = write!(out, " consent: <code>{}</code>", Esc(url));
        }
        None => {}
    }
}

/// The health order of the page: failing first, then degraded, then ok; by name within one.
pub(super) fn worst_first(a: (Health, &str), b: (Health, &str)) -> std::cmp::Ordering {
    b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1))
}
