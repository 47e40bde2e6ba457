//! Rate-limit metrics: per-tenant counters updated with atomics only on the request path, and
//! their Prometheus text rendering for `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{RateLimited, RateLimiter, TenantLimiter};

/// `reason` label values, in the order of [`TenantStats::rejected`].
const REASONS: [&str; 5] = [
    "over_limit",
    "queue_full",
    "wait_too_long",
    "paused",
    "backend_unavailable",
];

/// Upper bounds (seconds) of the wait histogram: from "not queued" to `max_wait`-sized waits.
const WAIT_BUCKETS: [f64; 11] = [
    0.005, 0.05, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// One tenant's counters (a few hundred bytes).
#[derive(Debug, Default)]
pub(crate) struct TenantStats {
    admitted: AtomicU64,
    queued: AtomicU64,
    rejected: [AtomicU64; REASONS.len()],
    upstream_429: AtomicU64,
    /// Per-bucket (not cumulative) counts; the last slot is `+Inf`.
    wait_buckets: [AtomicU64; WAIT_BUCKETS.len() + 1],
    wait_sum_micros: AtomicU64,
}

impl TenantStats {
    pub(crate) fn admitted(&self, waited: Duration) {
        self.admitted.fetch_add(1, Ordering::Relaxed);
        let secs = waited.as_secs_f64();
        let bucket = WAIT_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(WAIT_BUCKETS.len());
        self.wait_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.wait_sum_micros.fetch_add(micros, Ordering::Relaxed);
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

/// Writes the rate-limit metrics in Prometheus text format: one family after the other, a line
/// per tenant (`tenants`: configured name and limiter), then the backend's counters.
pub fn render(out: &mut String, tenants: &[(&str, &TenantLimiter)], limiter: &RateLimiter) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let counter = |out: &mut String, name: &str, help: &str, get: &dyn Fn(&TenantStats) -> u64| {
        header(out, name, help, "counter");
        for (tenant, l) in tenants {
            let _ = writeln!(
                out,
                "{name}{{tenant=\"{}\"}} {}",
                Esc(tenant),
                get(l.stats())
            );
        }
    };
    counter(
        out,
        "defender_proxy_ratelimit_admitted_total",
        "Requests admitted by the tenant's rate limiter.",
        &|s| load(&s.admitted),
    );
    counter(
        out,
        "defender_proxy_ratelimit_queued_total",
        "Requests that had to wait in the tenant's queue.",
        &|s| load(&s.queued),
    );
    counter(
        out,
        "defender_proxy_ratelimit_upstream_429_total",
        "429 answers from the API that paused the tenant.",
        &|s| load(&s.upstream_429),
    );

    header(
        out,
        "defender_proxy_ratelimit_rejected_total",
        "Requests answered 429 by the proxy's rate limiter.",
        "counter",
    );
    for (tenant, l) in tenants {
        for (reason, n) in REASONS.iter().zip(&l.stats().rejected) {
            let _ = writeln!(
                out,
                "defender_proxy_ratelimit_rejected_total{{tenant=\"{}\",reason=\"{reason}\"}} {}",
                Esc(tenant),
                load(n)
            );
        }
    }

    let name = "defender_proxy_ratelimit_wait_seconds";
    header(
        out,
        name,
        "Time admitted requests waited for their slot.",
        "histogram",
    );
    for (tenant, l) in tenants {
        let s = l.stats();
        let mut cumulative = 0;
        for (i, n) in s.wait_buckets.iter().enumerate() {
            cumulative += load(n);
            let le = WAIT_BUCKETS
                .get(i)
                .map_or("+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{tenant=\"{}\",le=\"{le}\"}} {cumulative}",
                Esc(tenant)
            );
        }
        let sum = load(&s.wait_sum_micros) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{tenant=\"{}\"}} {sum}", Esc(tenant));
        let _ = writeln!(
            out,
            "{name}_count{{tenant=\"{}\"}} {cumulative}",
            Esc(tenant)
        );
    }

    let name = "defender_proxy_ratelimit_paused_seconds";
    header(
        out,
        name,
        "Time left of the longest pause after an API 429.",
        "gauge",
    );
    for (tenant, l) in tenants {
        let secs = l.paused_remaining().as_secs_f64();
        let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {secs}", Esc(tenant));
    }
    let name = "defender_proxy_ratelimit_queue_length";
    header(
        out,
        name,
        "Requests waiting in the tenant's queues.",
        "gauge",
    );
    for (tenant, l) in tenants {
        let _ = writeln!(
            out,
            "{name}{{tenant=\"{}\"}} {}",
            Esc(tenant),
            l.queue_length()
        );
    }

    let name = "defender_proxy_ratelimit_backend_errors_total";
    header(
        out,
        name,
        "Failed or timed-out calls to the shared (Redis) backend.",
        "counter",
    );
    let _ = writeln!(out, "{name} {}", limiter.backend_errors());
    let name = "defender_proxy_ratelimit_fallback_decisions_total";
    header(
        out,
        name,
        "Decisions taken by the local fallback while Redis was unreachable.",
        "counter",
    );
    let _ = writeln!(out, "{name} {}", limiter.fallback_decisions());
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value escaped per the text format (tenant names are `[a-z0-9-]`, but be safe).
struct Esc<'a>(&'a str);

impl std::fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}
