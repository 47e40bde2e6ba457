//! `/?tenant=NAME`: one tenant in full (every API's token, every window, the error texts) and
//! the page for a name no tenant has.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::html::{bar, health_word, time_or_dash, Esc};
use super::render::{document_start, failure};
use crate::status::TenantStatus;

/// The whole detail page: one tenant is small, so it is written at once.
pub(super) fn detail(out: &mut String, status: &TenantStatus, now: SystemTime) {
    let name = Esc(&status.name);
    let health = health_word(status.health);
    document_start(out, &format!("{}: {health}", status.name), true);
    let _ = write!(
        out,
        "<h1><a href=\"/\">defender-proxy</a> › {name}</h1>\
         <p><span class=\"hb {health}\">{health}</span> · id <code>{}</code> · from the {} · \
         app <code>{}</code> · cloud <code>{}</code> · <a href=\"/tenants/{name}\">JSON</a> · \
         refreshed every 10 s</p>",
        Esc(&status.id),
        if status.source == "file" {
            "tenants file"
        } else {
            "config"
        },
        Esc(&status.app),
        Esc(&status.cloud),
    );
    tokens(out, status, now);
    limits(out, status, now);
    let r = &status.requests;
    let _ = write!(
        out,
        "<h2>Requests</h2><table><tbody>\
         <tr><th>Last 5 minutes</th><td>{} requests, {} errors</td></tr>\
         <tr><th>Since the start</th><td>{} requests, {} errors</td></tr><tr><th>Last request</th><td>",
        r.last_5m.total, r.last_5m.errors, r.total, r.errors
    );
    time_or_dash(out, r.last_at, now);
    out.push_str("</td></tr><tr><th>Last error status</th><td>");
    time_or_dash(out, r.last_error_at, now);
    out.push_str(
        "</td></tr></tbody></table><p class=\"sub\">Errors: 401, 403, 429 and 5xx answers.</p>\
         </body></html>\n",
    );
}

fn tokens(out: &mut String, status: &TenantStatus, now: SystemTime) {
    out.push_str(
        "<h2>Tokens</h2><table><thead><tr><th>API</th><th>Scope</th><th>State</th>\
         <th>Usable now</th><th>Expires</th><th>Roles</th><th>Error</th></tr></thead><tbody>",
    );
    for token in &status.tokens {
        let state = token.state.as_str();
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"s-{state}\">{state}</td>\
             <td>{}</td><td>",
            Esc(&token.api),
            Esc(&token.scope),
            if token.usable { "yes" } else { "no" },
        );
        time_or_dash(out, token.expires_at, now);
        out.push_str("</td><td>");
        for (i, role) in token.roles.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(out, "{sep}<code>{}</code>", Esc(role));
        }
        out.push_str("</td><td class=\"err\">");
        failure(out, token);
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table>");
}

fn limits(out: &mut String, status: &TenantStatus, now: SystemTime) {
    let limits = &status.rate_limit;
    let _ = write!(
        out,
        "<h2>Rate limit</h2><p>{} requests queued · paused until ",
        limits.queued
    );
    time_or_dash(out, limits.paused_until, now);
    let _ = write!(
        out,
        " · use counted by the <code>{}</code> backend</p><table><thead><tr><th>Route class</th>\
         <th>Window</th><th>Used</th></tr></thead><tbody>",
        Esc(limits.backend)
    );
    for w in &limits.windows {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>",
            Esc(&w.class),
            w.window
        );
        bar(out, w.used, w.limit);
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table>");
}

/// The page for `/?tenant=NAME` when no tenant is named so.
pub(super) fn unknown(out: &mut String, name: &str) {
    document_start(out, "defender-proxy: unknown tenant", true);
    let _ = writeln!(
        out,
        "<h1><a href=\"/\">defender-proxy</a></h1><p>No tenant named <code>{}</code> is \
         configured. <a href=\"/\">All tenants</a></p></body></html>",
        Esc(name)
    );
}
