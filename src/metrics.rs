//! Counters behind `/metrics`, rendered as Prometheus text.
//!
//! Per-request updates are a short uncontended mutex section or an atomic add; nothing is held
//! across an await. Token metrics are read from the token slots at scrape time instead of being
//! copied here, so there is one source of truth for them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::routing::RouteTable;

/// Latency bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Kinds of upstream failure, as labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    Timeout,
    Request,
    Token,
}

impl UpstreamErrorKind {
    const ALL: [UpstreamErrorKind; 4] = [Self::Connect, Self::Timeout, Self::Request, Self::Token];
    fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Request => "request",
            Self::Token => "token",
        }
    }
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[derive(Debug, Default)]
struct TenantCounts {
    by_status: HashMap<u16, u64>,
    bytes: u64,
}

/// All proxy metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Keyed by tenant name ("" for requests no tenant was found for).
    requests: Mutex<HashMap<Arc<str>, TenantCounts>>,
    duration: Histogram,
    upstream_errors: [AtomicU64; 4],
}

impl Metrics {
    /// One finished request: its tenant (if routed), status, response bytes and duration.
    pub fn record_request(
        &self,
        tenant: Option<&Arc<str>>,
        status: u16,
        bytes: u64,
        elapsed: Duration,
    ) {
        self.duration.observe(elapsed);
        let mut map = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        let counts = match tenant {
            Some(t) => match map.get_mut(t) {
                Some(c) => c,
                None => map.entry(t.clone()).or_default(),
            },
            None => map.entry(Arc::from("")).or_default(),
        };
        *counts.by_status.entry(status).or_default() += 1;
        counts.bytes += bytes;
    }

    pub fn record_upstream_error(&self, kind: UpstreamErrorKind) {
        let i = UpstreamErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.upstream_errors[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self, routes: &RouteTable) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP defender_proxy_requests_total Requests answered, by tenant and status code.\n",
        );
        out.push_str("# TYPE defender_proxy_requests_total counter\n");
        let mut bytes_lines = String::new();
        {
            let map = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            let mut tenants: Vec<_> = map.iter().collect();
            tenants.sort_by(|a, b| a.0.cmp(b.0));
            for (tenant, counts) in tenants {
                let mut statuses: Vec<_> = counts.by_status.iter().collect();
                statuses.sort();
                for (status, n) in statuses {
                    let _ = writeln!(out, "defender_proxy_requests_total{{tenant=\"{tenant}\",status=\"{status}\"}} {n}");
                }
                let _ = writeln!(
                    bytes_lines,
                    "defender_proxy_response_bytes_total{{tenant=\"{tenant}\"}} {}",
                    counts.bytes
                );
            }
        }
        out.push_str("# HELP defender_proxy_response_bytes_total Response body bytes sent to clients, by tenant.\n");
        out.push_str("# TYPE defender_proxy_response_bytes_total counter\n");
        out.push_str(&bytes_lines);

        out.push_str("# HELP defender_proxy_request_duration_seconds Time from request to the end of the response body.\n");
        out.push_str("# TYPE defender_proxy_request_duration_seconds histogram\n");
        self.duration
            .render(&mut out, "defender_proxy_request_duration_seconds");

        out.push_str("# HELP defender_proxy_upstream_errors_total Failed exchanges with the API or Entra ID, by kind.\n");
        out.push_str("# TYPE defender_proxy_upstream_errors_total counter\n");
        for (kind, n) in UpstreamErrorKind::ALL.iter().zip(&self.upstream_errors) {
            let _ = writeln!(
                out,
                "defender_proxy_upstream_errors_total{{kind=\"{}\"}} {}",
                kind.label(),
                n.load(Ordering::Relaxed)
            );
        }

        let mut tenants: Vec<_> = routes.tenants().collect();
        tenants.sort_by(|a, b| a.name.cmp(&b.name));
        out.push_str("# HELP defender_proxy_token_refreshes_total Token requests to Entra ID, by tenant and result.\n");
        out.push_str("# TYPE defender_proxy_token_refreshes_total counter\n");
        let mut expiry = String::new();
        for tenant in &tenants {
            let stats = tenant.token.stats();
            let name = &tenant.name;
            let _ = writeln!(
                out,
                "defender_proxy_token_refreshes_total{{tenant=\"{name}\",result=\"success\"}} {}",
                stats.refresh_ok
            );
            let _ = writeln!(
                out,
                "defender_proxy_token_refreshes_total{{tenant=\"{name}\",result=\"failure\"}} {}",
                stats.refresh_failed
            );
            if let Some(left) = stats.expires_in {
                let _ = writeln!(
                    expiry,
                    "defender_proxy_token_expiry_seconds{{tenant=\"{name}\"}} {}",
                    left.as_secs()
                );
            }
        }
        out.push_str("# HELP defender_proxy_token_expiry_seconds Seconds until the cached token expires, by tenant.\n");
        out.push_str("# TYPE defender_proxy_token_expiry_seconds gauge\n");
        out.push_str(&expiry);
        out.push_str("# HELP defender_proxy_tenants Configured tenants.\n# TYPE defender_proxy_tenants gauge\n");
        let _ = writeln!(out, "defender_proxy_tenants {}", tenants.len());
        out
    }
}
