//! Counters behind `/metrics`, rendered as Prometheus text.
//!
//! Each tenant has its own counters (atomics, plus one small per-tenant mutex for the status
//! table), reached from the route snapshot, so requests of different tenants never contend and
//! nothing is held across an await. Counters live in a registry keyed by tenant name, so a
//! rebuilt route table (reload) keeps them. Token and rate-limit metrics are read from their own
//! modules at scrape time: one source of truth each.

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
    /// The response body stalled past `[upstream] body_idle_timeout`.
    BodyTimeout,
    /// The response body broke off (connection reset, undecodable encoding).
    Body,
}

impl UpstreamErrorKind {
    const ALL: [UpstreamErrorKind; 6] = [
        Self::Connect,
        Self::Timeout,
        Self::Request,
        Self::Token,
        Self::BodyTimeout,
        Self::Body,
    ];
    fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Request => "request",
            Self::Token => "token",
            Self::BodyTimeout => "body_timeout",
            Self::Body => "body",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// A Prometheus histogram of durations on atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// `name_bucket{labels,le=..}` lines, `_sum` and `_count`; `labels` like `tenant="x"`.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// One tenant's request counters.
#[derive(Debug, Default)]
pub struct TenantMetrics {
    /// (status, count); a handful of entries, so a linear scan beats hashing.
    statuses: Mutex<Vec<(u16, u64)>>,
    bytes: AtomicU64,
    duration: Histogram,
    /// Request sent to response headers received, per upstream exchange.
    upstream: Histogram,
    upstream_errors: [AtomicU64; UpstreamErrorKind::ALL.len()],
}

impl TenantMetrics {
    /// One finished request: status, response body bytes, time to the end of the body.
    pub fn record_request(&self, status: u16, bytes: u64, elapsed: Duration) {
        self.duration.observe(elapsed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        match statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => statuses.push((status, 1)),
        }
    }

    pub fn observe_upstream(&self, elapsed: Duration) {
        self.upstream.observe(elapsed);
    }

    pub fn record_upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors[kind.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// All request metrics: the per-tenant registry, and the counters of requests no tenant was
/// found for (label `tenant=""`).
#[derive(Debug, Default)]
pub struct Metrics {
    tenants: Mutex<HashMap<Arc<str>, Arc<TenantMetrics>>>,
    untenanted: Arc<TenantMetrics>,
    /// Client connections open now (data and admin listeners).
    pub connections: Arc<AtomicU64>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

impl Metrics {
    /// The counters of `tenant`, created on first use; only called when building route tables.
    pub fn tenant(&self, tenant: &str) -> Arc<TenantMetrics> {
        let mut map = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = map.get(tenant) {
            return m.clone();
        }
        let m = Arc::new(TenantMetrics::default());
        map.insert(Arc::from(tenant), m.clone());
        m
    }

    /// One config reload and whether it took effect.
    pub fn record_reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counters for requests that never got a tenant (unknown tenant, bad path).
    pub fn untenanted(&self) -> &Arc<TenantMetrics> {
        &self.untenanted
    }

    /// Prometheus text exposition of everything the proxy counts.
    pub fn render(&self, routes: &RouteTable) -> String {
        let mut tenants: Vec<(Arc<str>, Arc<TenantMetrics>)> = self
            .tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tenants.sort_by(|a, b| a.0.cmp(&b.0));
        tenants.insert(0, (Arc::from(""), self.untenanted.clone()));

        let mut out = String::with_capacity(4096 + 2048 * tenants.len());
        header(
            &mut out,
            "defender_proxy_build_info",
            "gauge",
            "Build of the running proxy.",
        );
        let _ = writeln!(
            out,
            "defender_proxy_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        header(
            &mut out,
            "defender_proxy_requests_total",
            "counter",
            "Requests answered, by tenant, API, status code and status class.",
        );
        for (name, m) in &tenants {
            let mut statuses = m
                .statuses
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            statuses.sort_unstable();
            for (status, n) in statuses {
                let _ = writeln!(
                    out,
                    "defender_proxy_requests_total{{tenant=\"{name}\",api=\"default\",status=\"{status}\",status_class=\"{}xx\"}} {n}",
                    status / 100
                );
            }
        }
        header(
            &mut out,
            "defender_proxy_response_bytes_total",
            "counter",
            "Response body bytes sent to clients, by tenant.",
        );
        for (name, m) in &tenants {
            let _ = writeln!(
                out,
                "defender_proxy_response_bytes_total{{tenant=\"{name}\"}} {}",
                m.bytes.load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "defender_proxy_request_duration_seconds",
            "histogram",
            "Time from request to the end of the response body, by tenant.",
        );
        for (name, m) in &tenants {
            m.duration.render(
                &mut out,
                "defender_proxy_request_duration_seconds",
                &format!("tenant=\"{name}\""),
            );
        }
        header(
            &mut out,
            "defender_proxy_upstream_duration_seconds",
            "histogram",
            "Time from sending a request to the API to its response headers, by tenant.",
        );
        for (name, m) in &tenants {
            m.upstream.render(
                &mut out,
                "defender_proxy_upstream_duration_seconds",
                &format!("tenant=\"{name}\""),
            );
        }
        header(
            &mut out,
            "defender_proxy_upstream_errors_total",
            "counter",
            "Failed exchanges with the API or Entra ID, by tenant and kind.",
        );
        for (name, m) in &tenants {
            for kind in UpstreamErrorKind::ALL {
                let n = m.upstream_errors[kind.index()].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "defender_proxy_upstream_errors_total{{tenant=\"{name}\",kind=\"{}\"}} {n}",
                    kind.label()
                );
            }
        }

        let mut routed: Vec<_> = routes.tenants().collect();
        routed.sort_by(|a, b| a.name.cmp(&b.name));
        header(
            &mut out,
            "defender_proxy_token_refreshes_total",
            "counter",
            "Token requests to Entra ID, by tenant and result.",
        );
        let mut expiry = String::new();
        for tenant in &routed {
            let stats = tenant.tokens[0].stats();
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
        header(
            &mut out,
            "defender_proxy_token_expiry_seconds",
            "gauge",
            "Seconds until the cached token expires, by tenant.",
        );
        out.push_str(&expiry);
        header(
            &mut out,
            "defender_proxy_tenants",
            "gauge",
            "Configured tenants.",
        );
        let _ = writeln!(out, "defender_proxy_tenants {}", routed.len());
        header(
            &mut out,
            "defender_proxy_connections_open",
            "gauge",
            "Client connections open now.",
        );
        let _ = writeln!(
            out,
            "defender_proxy_connections_open {}",
            self.connections.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "defender_proxy_reloads_total",
            "counter",
            "Config reloads, by result.",
        );
        let _ = writeln!(
            out,
            "defender_proxy_reloads_total{{result=\"success\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "defender_proxy_reloads_total{{result=\"failure\"}} {}",
            self.reloads_failed.load(Ordering::Relaxed)
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
