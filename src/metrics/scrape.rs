//! `/metrics` rendered while it is sent, a bounded chunk at a time.
//!
//! At 5,000 tenants the text is megabytes; rendered whole into one `String` per scrape it made
//! every scrape allocate (and the allocator keep) that much. A [`Scrape`] holds only what the
//! text is made from (the snapshot, the counted tenants' handles) and a cursor; each call of
//! [`Scrape::next_chunk`] renders rows until about [`CHUNK`] bytes are written. hyper asks for
//! the next chunk once it has room to send it, so a scrape holds a few chunks, not the text.
//!
//! The text format wants all samples of a family together, so the cursor walks family by
//! family and, inside a family, row by row (a tenant, an API, or a single value). A chunk ends
//! only between rows; a row is one tenant's histogram (~1.3 KB) or its `requests_total` lines
//! (~110 bytes per (API, status) it has seen: a few, at most 16 per API but for statuses past
//! the lock-free slots), hence the bound of [`CHUNK`] plus one row. Counters are read as the rows are written: a scrape is not a
//! snapshot in time, any more than it was before (each atomic was read on its own).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::{
    ApiLatency, Histogram, Label, Metrics, TenantMetrics, UpstreamErrorKind, WARNING_FAMILIES,
};
use crate::ratelimit::{self, RateLimiter};
use crate::snapshot::Snapshot;
use crate::telemetry;
use crate::tenant::Tenant;
use crate::token::TokenSlot;

/// A chunk is handed to hyper once it holds this many bytes (it ends at the next row's end).
pub(crate) const CHUNK: usize = 32 * 1024;

/// Reserved beyond [`CHUNK`] so the last row of a chunk rarely reallocates.
const SLACK: usize = 4 * 1024;

/// One metric family: its `# HELP`/`# TYPE` header, then `rows` calls of `row`.
#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) help: &'static str,
    /// The help ends with the label the rows are split by, which for a latency histogram
    /// depends on `[metrics] per_tenant_histograms`.
    pub(crate) latency: bool,
    pub(crate) rows: fn(&Scrape) -> usize,
    pub(crate) row: fn(&Scrape, &'static str, usize, &mut BytesMut),
}

/// One `/metrics` answer in the making; see the module docs.
#[derive(Debug)]
pub(crate) struct Scrape {
    metrics: Arc<Metrics>,
    snapshot: Arc<Snapshot>,
    /// Tenants with request counters: `""` (untenanted) first, then by name. Tenants a reload
    /// removed are still here (their counters are kept in case they come back).
    counted: Vec<(Arc<str>, Arc<TenantMetrics>)>,
    /// Tenants of the snapshot, by name: tokens and rate limits.
    routed: Vec<Arc<Tenant>>,
    /// The next family (an index into [`Scrape::family`]) ...
    family: usize,
    /// ... and where in it: 0 is the header, `n` the row `n - 1`.
    at: usize,
    buf: BytesMut,
}

impl Scrape {
    pub(crate) fn new(metrics: Arc<Metrics>, snapshot: Arc<Snapshot>) -> Self {
        let counted = metrics.counted();
        let mut routed: Vec<Arc<Tenant>> = snapshot.routes.tenants().cloned().collect();
        routed.sort_by(|a, b| a.name.cmp(&b.name));
        Scrape {
            metrics,
            snapshot,
            counted,
            routed,
            family: 0,
            at: 0,
            buf: BytesMut::new(),
        }
    }

    /// The families in the order they are written: the request metrics here, the API's
    /// warnings, the trace pipeline's, then the rate limiter's.
    fn family(i: usize) -> Option<&'static Family> {
        let traces = FAMILIES.len() + WARNING_FAMILIES.len();
        let limiter = traces + telemetry::metrics::FAMILIES.len();
        FAMILIES
            .get(i)
            .or_else(|| WARNING_FAMILIES.get(i.checked_sub(FAMILIES.len())?))
            .or_else(|| telemetry::metrics::FAMILIES.get(i.checked_sub(traces)?))
            .or_else(|| ratelimit::metrics::FAMILIES.get(i.checked_sub(limiter)?))
    }

    /// The trace pipeline's counters.
    pub(crate) fn span_counts(&self) -> &telemetry::SpanCounts {
        &self.metrics.spans
    }

    /// The next piece of the text, about [`CHUNK`] bytes (less for the last); `None` at the end.
    pub(crate) fn next_chunk(&mut self) -> Option<Bytes> {
        let mut buf = std::mem::take(&mut self.buf);
        // Reclaims the previous chunk's allocation when hyper has sent and dropped it.
        buf.reserve(CHUNK + SLACK);
        while buf.len() < CHUNK {
            let Some(family) = Self::family(self.family) else {
                break;
            };
            if self.at == 0 {
                let by = match (family.latency, self.by_api()) {
                    (false, _) => "",
                    (true, false) => " by tenant.",
                    (true, true) => " by API.",
                };
                let _ = writeln!(
                    buf,
                    "# HELP {name} {help}{by}\n# TYPE {name} {kind}",
                    name = family.name,
                    help = family.help,
                    kind = family.kind
                );
            } else {
                (family.row)(self, family.name, self.at - 1, &mut buf);
            }
            self.at += 1;
            if self.at > (family.rows)(self) {
                self.family += 1;
                self.at = 0;
            }
        }
        let chunk = buf.split().freeze();
        self.buf = buf;
        (!chunk.is_empty()).then_some(chunk)
    }

    pub(crate) fn is_end(&self) -> bool {
        Self::family(self.family).is_none()
    }

    /// Latency histograms per API (`[metrics] per_tenant_histograms = false`).
    pub(crate) fn by_api(&self) -> bool {
        !self.snapshot.metrics.per_tenant_histograms
    }

    /// Tenants with request counters: `""` (untenanted) first, then by name.
    pub(crate) fn counted_tenants(&self) -> &[(Arc<str>, Arc<TenantMetrics>)] {
        &self.counted
    }

    pub(crate) fn routed(&self) -> &[Arc<Tenant>] {
        &self.routed
    }

    pub(crate) fn limiter(&self) -> &RateLimiter {
        &self.snapshot.limiter
    }

    /// The snapshot's APIs by name, with their histograms.
    pub(crate) fn api(&self, i: usize) -> (&str, &ApiLatency) {
        let api = &self.snapshot.apis[i];
        (&api.name, &api.latency)
    }

    pub(crate) fn apis(&self) -> usize {
        self.snapshot.apis.len()
    }

    /// The token slots of `tenant` with the name of the API each serves. APIs with the same
    /// scope share a slot: it is shown once, under the first of them (`default` before any
    /// `[[api]]`), so summing over `api` counts each token request once.
    fn token_slots<'a>(
        &'a self,
        tenant: &'a Tenant,
    ) -> impl Iterator<Item = (&'a str, &'a TokenSlot)> {
        let apis = &tenant.apis;
        apis.iter()
            .enumerate()
            .filter(move |(i, api)| {
                !apis[..*i]
                    .iter()
                    .any(|earlier| Arc::ptr_eq(&earlier.token, &api.token))
            })
            .map(|(_, api)| (&*api.target.name, &*api.token))
    }

    /// Rows of a latency family that has an untenanted (`""`) row: per tenant, or per API
    /// with `api=""` first (requests that never got a tenant, hence no API).
    fn latency_rows(&self) -> usize {
        if self.by_api() {
            1 + self.apis()
        } else {
            self.counted.len()
        }
    }

    /// Row `i` of a latency family: the tenant's histogram, or the API's.
    fn latency_row(
        &self,
        name: &str,
        i: usize,
        out: &mut BytesMut,
        of_tenant: fn(&TenantMetrics) -> &Histogram,
        of_api: fn(&ApiLatency) -> &Histogram,
    ) {
        if !self.by_api() {
            let (tenant, m) = &self.counted[i];
            of_tenant(m).render(out, name, Label("tenant", tenant));
        } else if i == 0 {
            of_api(self.metrics.unrouted()).render(out, name, Label("api", ""));
        } else {
            let (api, latency) = self.api(i - 1);
            of_api(latency).render(out, name, Label("api", api));
        }
    }
}

fn one(_: &Scrape) -> usize {
    1
}
fn counted(s: &Scrape) -> usize {
    s.counted.len()
}
fn routed(s: &Scrape) -> usize {
    s.routed.len()
}

/// The request, token and process families; the rate limiter's follow
/// ([`ratelimit::metrics::FAMILIES`]).
const FAMILIES: [Family; 13] = [
    Family {
        name: "defender_proxy_build_info",
        kind: "gauge",
        help: "Build of the running proxy.",
        latency: false,
        rows: one,
        row: |_, name, _, out| {
            let _ = writeln!(out, "{name}{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        },
    },
    Family {
        name: "defender_proxy_requests_total",
        kind: "counter",
        help: "Requests answered, by tenant, API, status code and status class.",
        latency: false,
        rows: counted,
        row: |s, name, i, out| {
            let (tenant, m) = &s.counted[i];
            let tenant = Label("tenant", tenant);
            for api in m.apis() {
                let counts = api.requests.counts();
                let api = Label("api", &api.name);
                for (status, n) in counts {
                    let _ = writeln!(
                        out,
                        "{name}{{{tenant},{api},status=\"{status}\",status_class=\"{}xx\"}} {n}",
                        status / 100
                    );
                }
            }
        },
    },
    Family {
        name: "defender_proxy_response_bytes_total",
        kind: "counter",
        help: "Response body bytes sent to clients, by tenant.",
        latency: false,
        rows: counted,
        row: |s, name, i, out| {
            let (tenant, m) = &s.counted[i];
            let bytes = m.bytes.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{{}}} {bytes}", Label("tenant", tenant));
        },
    },
    Family {
        name: "defender_proxy_request_duration_seconds",
        kind: "histogram",
        help: "Time from request to the end of the response body,",
        latency: true,
        rows: Scrape::latency_rows,
        row: |s, name, i, out| s.latency_row(name, i, out, |t| &t.duration, |a| &a.request),
    },
    Family {
        name: "defender_proxy_upstream_duration_seconds",
        kind: "histogram",
        help: "Time from sending a request to the API to its response headers,",
        latency: true,
        rows: Scrape::latency_rows,
        row: |s, name, i, out| s.latency_row(name, i, out, |t| &t.upstream, |a| &a.upstream),
    },
    Family {
        name: "defender_proxy_upstream_errors_total",
        kind: "counter",
        help: "Failed exchanges with the API or Entra ID, by tenant and kind.",
        latency: false,
        rows: counted,
        row: |s, name, i, out| {
            let (tenant, m) = &s.counted[i];
            let tenant = Label("tenant", tenant);
            for kind in UpstreamErrorKind::ALL {
                let n = m.upstream_errors[kind.index()].load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{{tenant},kind=\"{}\"}} {n}", kind.label());
            }
        },
    },
    Family {
        name: "defender_proxy_tenant_info",
        kind: "gauge",
        help: "Always 1: each configured tenant's app and cloud (config names; default: [app] and [cloud]), to join on tenant.",
        latency: false,
        rows: routed,
        row: |s, name, i, out| {
            let tenant = &s.routed[i];
            let _ = writeln!(
                out,
                "{name}{{{},{},{}}} 1",
                Label("tenant", &tenant.name),
                Label("app", &tenant.app),
                Label("cloud", &tenant.cloud)
            );
        },
    },
    Family {
        name: "defender_proxy_hunting_requests_total",
        kind: "counter",
        help: "Legacy advanced-hunting requests, by tenant and the way they went (via=\"graph\": answered through Microsoft Graph; \"legacy\": forwarded to the legacy API).",
        latency: false,
        rows: counted,
        row: |s, name, i, out| {
            let (tenant, m) = &s.counted[i];
            let tenant = Label("tenant", tenant);
            let (legacy, graph) = m.hunting();
            let _ = writeln!(
                out,
                "{name}{{{tenant},via=\"graph\"}} {graph}\n{name}{{{tenant},via=\"legacy\"}} {legacy}"
            );
        },
    },
    Family {
        name: "defender_proxy_token_refreshes_total",
        kind: "counter",
        help: "Token requests to Entra ID, by tenant, API and result.",
        latency: false,
        rows: routed,
        row: |s, name, i, out| {
            let tenant = &s.routed[i];
            let label = Label("tenant", &tenant.name);
            for (api, slot) in s.token_slots(tenant) {
                let stats = slot.stats();
                let api = Label("api", api);
                let _ = writeln!(
                    out,
                    "{name}{{{label},{api},result=\"success\"}} {}\n{name}{{{label},{api},result=\"failure\"}} {}",
                    stats.refresh_ok, stats.refresh_failed
                );
            }
        },
    },
    Family {
        name: "defender_proxy_token_expiry_seconds",
        kind: "gauge",
        help: "Seconds until the cached token expires, by tenant and API.",
        latency: false,
        rows: routed,
        row: |s, name, i, out| {
            let tenant = &s.routed[i];
            let label = Label("tenant", &tenant.name);
            for (api, slot) in s.token_slots(tenant) {
                if let Some(left) = slot.stats().expires_in {
                    let api = Label("api", api);
                    let _ = writeln!(out, "{name}{{{label},{api}}} {}", left.as_secs());
                }
            }
        },
    },
    Family {
        name: "defender_proxy_tenants",
        kind: "gauge",
        help: "Configured tenants.",
        latency: false,
        rows: one,
        row: |s, name, _, out| {
            let _ = writeln!(out, "{name} {}", s.routed.len());
        },
    },
    Family {
        name: "defender_proxy_connections_open",
        kind: "gauge",
        help: "Client connections open now.",
        latency: false,
        rows: one,
        row: |s, name, _, out| {
            let open = s.metrics.connections.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name} {open}");
        },
    },
    Family {
        name: "defender_proxy_reloads_total",
        kind: "counter",
        help: "Config reloads, by result.",
        latency: false,
        rows: one,
        row: |s, name, _, out| {
            let _ = writeln!(
                out,
                "{name}{{result=\"success\"}} {}\n{name}{{result=\"failure\"}} {}",
                s.metrics.reloads_ok.load(Ordering::Relaxed),
                s.metrics.reloads_failed.load(Ordering::Relaxed)
            );
        },
    },
];

#[cfg(test)]
mod tests;
