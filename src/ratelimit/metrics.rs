//! Rate-limit metrics: per-tenant counters updated with atomics only on the request path, and
//! their families in `/metrics` (rendered row by row by [`crate::metrics::scrape`]).

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;

use super::RateLimited;
use crate::metrics::scrape::{Family, Scrape};
use crate::metrics::{Histogram, Label, WAIT_BUCKETS};

/// `reason` label values, in the order of [`TenantStats::rejected`].
const REASONS: [&str; 5] = [
    "over_limit",
    "queue_full",
    "wait_too_long",
    "paused",
    "backend_unavailable",
];

/// One tenant's counters (a few hundred bytes).
#[derive(Debug)]
pub(crate) struct TenantStats {
    admitted: AtomicU64,
    queued: AtomicU64,
    rejected: [AtomicU64; REASONS.len()],
    upstream_429: AtomicU64,
    wait: Histogram,
}

impl Default for TenantStats {
    fn default() -> Self {
        TenantStats {
            admitted: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            rejected: Default::default(),
            upstream_429: AtomicU64::new(0),
            wait: Histogram::new(&WAIT_BUCKETS),
        }
    }
}

impl TenantStats {
    pub(crate) fn admitted(&self, waited: Duration) {
        self.admitted.fetch_add(1, Ordering::Relaxed);
        self.wait.observe(waited);
    }

    pub(crate) fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self, why: &RateLimited) {
        let i = REASONS.iter().position(|r| *r == why.reason()).unwrap_or(0);
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn upstream_429(&self) {
        self.upstream_429.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> (u64, u64, u64) {
        let rejected = self
            .rejected
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .sum();
        (
            self.admitted.load(Ordering::Relaxed),
            self.queued.load(Ordering::Relaxed),
            rejected,
        )
    }
}

/// A counter family with one row per routed tenant.
const fn per_tenant(
    name: &'static str,
    help: &'static str,
    row: fn(&Scrape, &'static str, usize, &mut BytesMut),
) -> Family {
    Family {
        name,
        kind: "counter",
        help,
        latency: false,
        rows: |s| s.routed().len(),
        row,
    }
}

/// Row `i` of a family holding one value per tenant.
fn tenant_value(s: &Scrape, name: &str, i: usize, out: &mut BytesMut, value: impl Display) {
    let tenant = &s.routed()[i];
    let _ = writeln!(out, "{name}{{{}}} {value}", Label("tenant", &tenant.name));
}

fn stats(s: &Scrape, i: usize) -> &TenantStats {
    s.routed()[i].limits.stats()
}

/// The rate-limit families, in the order `/metrics` shows them: per tenant, then the backend's.
pub(crate) const FAMILIES: [Family; 9] = [
    per_tenant(
        "defender_proxy_ratelimit_admitted_total",
        "Requests admitted by the tenant's rate limiter.",
        |s, name, i, out| {
            tenant_value(
                s,
                name,
                i,
                out,
                stats(s, i).admitted.load(Ordering::Relaxed),
            )
        },
    ),
    per_tenant(
        "defender_proxy_ratelimit_queued_total",
        "Requests that had to wait in the tenant's queue.",
        |s, name, i, out| tenant_value(s, name, i, out, stats(s, i).queued.load(Ordering::Relaxed)),
    ),
    per_tenant(
        "defender_proxy_ratelimit_upstream_429_total",
        "429 answers from the API that paused the tenant.",
        |s, name, i, out| {
            tenant_value(
                s,
                name,
                i,
                out,
                stats(s, i).upstream_429.load(Ordering::Relaxed),
            )
        },
    ),
    per_tenant(
        "defender_proxy_ratelimit_rejected_total",
        "Requests answered 429 by the proxy's rate limiter.",
        |s, name, i, out| {
            let label = Label("tenant", &s.routed()[i].name);
            for (reason, n) in REASONS.iter().zip(&stats(s, i).rejected) {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{{label},reason=\"{reason}\"}} {n}");
            }
        },
    ),
    Family {
        name: "defender_proxy_ratelimit_wait_seconds",
        kind: "histogram",
        help: "Time admitted requests waited for their slot,",
        latency: true,
        // Per API: only APIs, no `api=""` row (a request without a tenant never waits).
        rows: |s| {
            if s.by_api() {
                s.apis()
            } else {
                s.routed().len()
            }
        },
        row: |s, name, i, out| {
            if s.by_api() {
                let (api, latency) = s.api(i);
                latency.wait.render(out, name, Label("api", api));
            } else {
                let label = Label("tenant", &s.routed()[i].name);
                stats(s, i).wait.render(out, name, label);
            }
        },
    },
    Family {
        name: "defender_proxy_ratelimit_paused_seconds",
        kind: "gauge",
        help: "Time left of the longest pause after an API 429.",
        latency: false,
        rows: |s| s.routed().len(),
        row: |s, name, i, out| {
            let secs = s.routed()[i].limits.paused_remaining().as_secs_f64();
            tenant_value(s, name, i, out, secs);
        },
    },
    Family {
        name: "defender_proxy_ratelimit_queue_length",
        kind: "gauge",
        help: "Requests waiting in the tenant's queues.",
        latency: false,
        rows: |s| s.routed().len(),
        row: |s, name, i, out| {
            tenant_value(s, name, i, out, s.routed()[i].limits.queue_length());
        },
    },
    Family {
        name: "defender_proxy_ratelimit_backend_errors_total",
        kind: "counter",
        help: "Failed or timed-out calls to the shared (Redis) backend.",
        latency: false,
        rows: |_| 1,
        row: |s, name, _, out| {
            let _ = writeln!(out, "{name} {}", s.limiter().backend_errors());
        },
    },
    Family {
        name: "defender_proxy_ratelimit_fallback_decisions_total",
        kind: "counter",
        help: "Decisions taken by the local fallback while Redis was unreachable.",
        latency: false,
        rows: |_| 1,
        row: |s, name, _, out| {
            let _ = writeln!(out, "{name} {}", s.limiter().fallback_decisions());
        },
    },
];
