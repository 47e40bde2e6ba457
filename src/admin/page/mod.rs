//! `GET /` on the admin listener: the tenant STATUS of `GET /tenants` as an HTML page for the
//! people on call, protected like `GET /tenants` (the admin key off loopback).
//!
//! # URLs
//! - `/`: every tenant, worst first (failing, degraded, ok; by name within each), [`PER_PAGE`]
//!   rows a page; `?page=N` (from 1) for the others, `?q=TEXT` keeps the tenants whose name,
//!   id, health, token state or error contains TEXT (case-insensitive).
//! - `/?tenant=NAME`: one tenant in full. A query parameter rather than a path, so the page
//!   is one route and `/tenants/NAME` stays the JSON of the same tenant.
//!
//! Server-rendered with inline style and one small script (allowed by hash, see `html`); the
//! page is complete and refreshes itself without JavaScript. The list is streamed a chunk at a
//! time like `/tenants`: only the sort keys of all tenants are held, each row is rendered
//! from the tenant's live status when its chunk is written.
//!
//! # Layout
//! - this file: the request (key, query), the selection and sort, the streamed response.
//! - `render`: the list's head, rows and foot; `detail`: one tenant; `html`: escaping, links,
//!   times, bars, the style, the script and the policy header.

mod detail;
mod html;
mod render;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode, Uri};

use super::auth::authorize;
use super::Admin;
use crate::body::{Chunks, ResponseBody};
use crate::status::{tenant_status, Health};
use crate::tenant::Tenant;
use render::Summary;

/// Rows of one page: a few hundred KB of HTML, which a browser lays out in well under a second.
pub(super) const PER_PAGE: usize = 500;
/// About this much of the list is rendered at a time.
const CHUNK: usize = 32 * 1024;
/// Longest filter kept: a filter is a name or a code, not a document.
const MAX_FILTER: usize = 200;

/// What the query string asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Query {
    /// `q`, trimmed.
    q: String,
    /// `page`, from 1; anything else reads as 1.
    page: usize,
    tenant: Option<String>,
}

impl Query {
    pub(super) fn parse(query: Option<&str>) -> Query {
        let mut out = Query {
            page: 1,
            ..Query::default()
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*key {
                "q" => out.q = value.trim().chars().take(MAX_FILTER).collect(),
                "page" => out.page = value.parse().ok().filter(|&p| p > 0).unwrap_or(1),
                "tenant" => out.tenant = Some(value.into_owned()),
                _ => {}
            }
        }
        out
    }
}

/// `GET /` (or `HEAD /`).
pub(super) async fn handle(
    admin: &Admin,
    headers: &HeaderMap,
    uri: &Uri,
) -> Response<ResponseBody> {
    if let Err(refused) = authorize(&admin.proxy.config.load().admin, headers, false) {
        return *refused;
    }
    let query = Query::parse(uri.query());
    let snapshot = admin.proxy.snapshot.load_full();
    let now = SystemTime::now();
    let Some(name) = &query.tenant else {
        // The sort reads every tenant's status (some 10 ms at 5,000): off the async workers,
        // so the data listener's requests on them do not wait for it.
        let tenants: Vec<Arc<Tenant>> = snapshot.routes.tenants().cloned().collect();
        let sorted = tokio::task::spawn_blocking(move || list(tenants.into_iter(), &query, now));
        return match sorted.await {
            Ok(response) => response,
            Err(_) => crate::error::json_error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "the status page could not be made",
            ),
        };
    };
    let mut out = String::with_capacity(8 * 1024);
    let status = match snapshot.routes.lookup(name) {
        Some(tenant) => {
            detail::detail(&mut out, &tenant_status(tenant), now);
            StatusCode::OK
        }
        None => {
            detail::unknown(&mut out, name);
            StatusCode::NOT_FOUND
        }
    };
    html_response(status, ResponseBody::from(Bytes::from(out)))
}

/// The list page of `tenants` as `query` selects it, streamed.
pub(super) fn list(
    tenants: impl Iterator<Item = Arc<Tenant>>,
    query: &Query,
    now: SystemTime,
) -> Response<ResponseBody> {
    let filter = query.q.to_lowercase();
    let mut summary = Summary {
        q: query.q.clone(),
        per_page: PER_PAGE,
        ..Summary::default()
    };
    let mut selected: Vec<(Health, Arc<Tenant>)> = Vec::new();
    for tenant in tenants {
        let status = tenant_status(&tenant);
        summary.by_health[status.health as usize] += 1;
        if filter.is_empty() || render::search_key(&status).contains(&filter) {
            selected.push((status.health, tenant));
        }
    }
    selected.sort_unstable_by(|a, b| render::worst_first((a.0, &a.1.name), (b.0, &b.1.name)));
    summary.matched = selected.len();
    summary.pages = selected.len().div_ceil(PER_PAGE).max(1);
    summary.page = query.page.min(summary.pages);
    let first = (summary.page - 1) * PER_PAGE;
    let page: Vec<Arc<Tenant>> = selected
        .into_iter()
        .skip(first)
        .take(PER_PAGE)
        .map(|(_, tenant)| tenant)
        .collect();

    let mut head = String::with_capacity(CHUNK);
    render::list_head(&mut head, &summary, now);
    let mut head = Some(head);
    let mut rows = page.into_iter();
    let mut ended = false;
    let chunks = std::iter::from_fn(move || {
        if let Some(head) = head.take() {
            return Some(Bytes::from(head));
        }
        if ended {
            return None;
        }
        let mut out = String::with_capacity(CHUNK + 4 * 1024);
        while out.len() < CHUNK {
            let Some(tenant) = rows.next() else {
                render::list_foot(&mut out, &summary);
                ended = true;
                break;
            };
            // The row shows the tenant as it is now, which may have moved since the sort.
            render::row(&mut out, &tenant_status(&tenant), now);
        }
        Some(Bytes::from(out))
    });
    html_response(StatusCode::OK, ResponseBody::chunks(Chunks::new(chunks)))
}

/// An HTML answer with the headers that keep it what it is: no sniffing, no caching (it is
/// live state), nothing loaded or run but its own inline style and script, no referrer sent
/// along a consent link.
fn html_response(status: StatusCode, body: ResponseBody) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_SECURITY_POLICY, html::csp());
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
