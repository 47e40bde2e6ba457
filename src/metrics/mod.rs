//! Counters behind `/metrics`; [`scrape`] renders them as Prometheus text while they are sent.
//!
//! Each tenant has its own counters (atomics), reached from the route snapshot, so requests of
//! different tenants never contend, no request takes a lock, and nothing is held across an
//! await. Statuses are counted per (tenant, API) in a [`StatusCounts`] the route snapshot hands
//! the request by the API's index. Counters live in registries keyed by tenant name and, inside
//! a tenant, by API name, so a rebuilt route table (reload) keeps them, also when the `[[api]]`
//! list changed order. Token and rate-limit metrics are read from their own modules at scrape
//! time: one source of truth each.
//!
//! The latency histograms are what makes a tenant's series heavy (three histograms of a dozen
//! buckets each, some 3.5 KB of the ~5 KB of text per tenant). With `[metrics] per_tenant_histograms = false`
//! they are shown per API instead ([`ApiLatency`], a registry keyed by API name); the counters
//! stay per tenant.

mod recent;
pub(crate) mod scrape;
mod status;
mod upstream;

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sync::LockExt;
use bytes::BytesMut;

pub(crate) use scrape::Scrape;
pub(crate) use status::{is_error_status, StatusCounts};
pub(crate) use upstream::{UpstreamWarnings, WarningCounts, FAMILIES as WARNING_FAMILIES};

/// Latency bucket bounds (request and upstream durations), seconds.
pub(crate) const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Rate-limit wait bucket bounds, seconds: from "not queued" to `max_wait`-sized waits.
pub(crate) const WAIT_BUCKETS: [f64; 11] = [
    0.005, 0.05, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Room for the longest bucket list above; a fixed array keeps a histogram one allocation-free
/// block whichever bounds it has.
const MAX_BUCKETS: usize = 12;

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

/// A Prometheus histogram of durations on atomics. It carries its bounds, so one type serves
/// the latency and the rate-limit wait histograms and a histogram cannot be rendered with
/// another's bounds.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// Per-bucket (not cumulative) counts; only the first `bounds.len()` are used. Durations
    /// above the last bound are counted in `count` only (the `+Inf` bucket).
    buckets: [AtomicU64; MAX_BUCKETS],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(&LATENCY_BUCKETS)
    }
}

impl Histogram {
    pub(crate) const fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() <= MAX_BUCKETS);
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; MAX_BUCKETS],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// `name_bucket{label,le=..}` lines, `_sum` and `_count`.
    pub(crate) fn render(&self, out: &mut BytesMut, name: &str, label: Label<'_>) {
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{label},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{label},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{label}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{label}}} {count}");
    }
}

/// One `key="value"` label, its value escaped per the text format when written. Tenant and API
/// names are `[a-z0-9-]`, so escaping never changes them; it is there so no name can break a
/// scrape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Label<'a>(pub(crate) &'static str, pub(crate) &'a str);

impl fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=\"", self.0)?;
        for c in self.1.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// Moves `cell` forward to `now`: one relaxed load per request, a write only when the second
/// changed, so the requests of a busy tenant on many cores do not each write the cache line.
/// (`fetch_max`: two threads crossing a second boundary cannot move it back.)
fn touch(cell: &AtomicU64, now: u64) {
    if cell.load(Ordering::Relaxed) < now {
        cell.fetch_max(now, Ordering::Relaxed);
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn from_unix_secs(secs: u64) -> Option<SystemTime> {
    (secs != 0).then(|| UNIX_EPOCH + Duration::from_secs(secs))
}

/// One (tenant, API)'s counters, by API name: the statuses answered, and the API's own warnings
/// (see [`upstream`]).
#[derive(Debug, Clone)]
pub(crate) struct ApiCounters {
    pub(crate) name: Arc<str>,
    pub(crate) requests: Arc<StatusCounts>,
    pub(crate) warnings: Arc<WarningCounts>,
}

impl ApiCounters {
    fn new(name: Arc<str>) -> Self {
        ApiCounters {
            name,
            requests: Arc::default(),
            warnings: Arc::default(),
        }
    }
}

/// One tenant's request counters.
#[derive(Debug, Default)]
pub struct TenantMetrics {
    /// Counters per API, by API name in the order first seen (`default` first). Locked only
    /// when a route table is built and at scrape time; requests hold their API's entry.
    apis: Mutex<Vec<ApiCounters>>,
    /// Where requests that got no API are counted: only requests that found no tenant get
    /// none, so only the untenanted counters have this (`api="default"`, as it always was).
    /// Kept here so a request need not clone a handle shared by every thread to count them.
    no_api: Option<Arc<StatusCounts>>,
    bytes: AtomicU64,
    duration: Histogram,
    /// Request sent to response headers received, per upstream exchange.
    upstream: Histogram,
    upstream_errors: [AtomicU64; UpstreamErrorKind::ALL.len()],
    /// Legacy advanced-hunting requests: `[forwarded to the legacy API, answered through Graph]`.
    hunting: [AtomicU64; 2],
    /// Unix seconds when the last request ended, 0 before any; and the last one whose status
    /// [`is_error_status`]: for the tenant status (see [`TenantMetrics::record_response`]).
    last_at: AtomicU64,
    last_error_at: AtomicU64,
    /// Requests and errors per minute, for the status's last five minutes.
    recent: recent::RecentCounts,
}

impl TenantMetrics {
    /// The counters of this tenant's requests to the API named `api`, created on first use;
    /// only called when building route tables.
    pub(crate) fn api(&self, api: &Arc<str>) -> ApiCounters {
        let mut apis = self.apis.locked();
        if let Some(counters) = apis.iter().find(|c| c.name == *api) {
            return counters.clone();
        }
        let counters = ApiCounters::new(api.clone());
        apis.push(counters.clone());
        counters
    }

    /// The APIs with counters, for a scrape.
    pub(crate) fn apis(&self) -> Vec<ApiCounters> {
        self.apis.locked().clone()
    }

    /// The status of a finished request that got no API (see `no_api`).
    pub fn record_status_without_api(&self, status: u16) {
        if let Some(counts) = &self.no_api {
            counts.record(status);
        }
    }

    /// One finished request: its status, response body bytes, time to the end of the body.
    /// (Its status is counted in its API's [`StatusCounts`]; here it only tells whether it was
    /// an error, for the last error's time.)
    pub fn record_response(&self, status: u16, bytes: u64, elapsed: Duration) {
        self.duration.observe(elapsed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let now = unix_secs(SystemTime::now());
        touch(&self.last_at, now);
        let error = is_error_status(status);
        if error {
            touch(&self.last_error_at, now);
        }
        self.recent.record(now / 60, error);
    }

    /// (requests, of them with an error status) in the last five minutes, this one
    /// included (the ring in `metrics::recent`).
    pub(crate) fn recent(&self) -> (u64, u64) {
        self.recent.sum(unix_secs(SystemTime::now()) / 60)
    }

    /// When the last request ended (to the second); `None` before any.
    pub(crate) fn last_at(&self) -> Option<SystemTime> {
        from_unix_secs(self.last_at.load(Ordering::Relaxed))
    }

    /// When the last request with an error status ([`is_error_status`]) ended; `None` before any.
    pub(crate) fn last_error_at(&self) -> Option<SystemTime> {
        from_unix_secs(self.last_error_at.load(Ordering::Relaxed))
    }

    /// (requests, of them with an error status) over every API this tenant had, counters kept
    /// since the start (across reloads).
    pub(crate) fn totals(&self) -> (u64, u64) {
        let mut totals = (0, 0);
        for api in self.apis() {
            for (status, n) in api.requests.counts() {
                totals.0 += n;
                if is_error_status(status) {
                    totals.1 += n;
                }
            }
        }
        totals
    }

    pub fn observe_upstream(&self, elapsed: Duration) {
        self.upstream.observe(elapsed);
    }

    /// One legacy advanced-hunting request, answered through Graph or forwarded as it is.
    pub fn record_hunting(&self, through_graph: bool) {
        self.hunting[usize::from(through_graph)].fetch_add(1, Ordering::Relaxed);
    }

    /// Legacy hunting requests so far: (forwarded to the legacy API, answered through Graph).
    pub(crate) fn hunting(&self) -> (u64, u64) {
        let [legacy, graph] = &self.hunting;
        (
            legacy.load(Ordering::Relaxed),
            graph.load(Ordering::Relaxed),
        )
    }

    pub fn record_upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors[kind.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// One API's latency histograms, shown instead of the tenants' when
/// `[metrics] per_tenant_histograms = false`.
///
/// The tenants' histograms are still fed then (a few uncontended atomics per request): a reload
/// that turns per-tenant histograms back on shows complete series rather than ones with a hole,
/// and the per-tenant path stays the same in both modes.
#[derive(Debug)]
pub struct ApiLatency {
    /// Request to the end of the response body.
    pub(crate) request: Histogram,
    /// Request sent to response headers received, per upstream exchange.
    pub(crate) upstream: Histogram,
    /// Time admitted requests waited for their rate-limit slot.
    pub(crate) wait: Histogram,
}

impl Default for ApiLatency {
    fn default() -> Self {
        ApiLatency {
            request: Histogram::new(&LATENCY_BUCKETS),
            upstream: Histogram::new(&LATENCY_BUCKETS),
            wait: Histogram::new(&WAIT_BUCKETS),
        }
    }
}

impl ApiLatency {
    pub fn observe_request(&self, elapsed: Duration) {
        self.request.observe(elapsed);
    }
    pub fn observe_upstream(&self, elapsed: Duration) {
        self.upstream.observe(elapsed);
    }
    pub fn observe_wait(&self, waited: Duration) {
        self.wait.observe(waited);
    }
}

/// The API label of requests that found no tenant (hence no API), as it always was.
const UNTENANTED_API: &str = "default";

/// All request metrics: the per-tenant registry, and the counters of requests no tenant was
/// found for (label `tenant=""`).
#[derive(Debug)]
pub struct Metrics {
    tenants: Mutex<HashMap<Arc<str>, Arc<TenantMetrics>>>,
    untenanted: Arc<TenantMetrics>,
    /// Per-API histograms by API name, kept across reloads like the tenants' counters.
    apis: Mutex<HashMap<Arc<str>, Arc<ApiLatency>>>,
    /// Histograms of requests that never got an API (no tenant found): label `api=""`.
    unrouted: Arc<ApiLatency>,
    /// Client connections open now (data and admin listeners).
    pub connections: Arc<AtomicU64>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// What became of the trace spans (zeros with telemetry off).
    pub(crate) spans: Arc<crate::telemetry::SpanCounts>,
}

impl Default for Metrics {
    fn default() -> Self {
        let counters = ApiCounters::new(Arc::from(UNTENANTED_API));
        let untenanted = Arc::new(TenantMetrics {
            no_api: Some(counters.requests.clone()),
            apis: Mutex::new(vec![counters]),
            ..TenantMetrics::default()
        });
        Metrics {
            tenants: Mutex::default(),
            untenanted,
            apis: Mutex::default(),
            unrouted: Arc::default(),
            connections: Arc::default(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            spans: Arc::default(),
        }
    }
}

impl Metrics {
    /// The counters of `tenant`, created on first use; only called when building route tables.
    pub fn tenant(&self, tenant: &str) -> Arc<TenantMetrics> {
        let mut map = self.tenants.locked();
        if let Some(m) = map.get(tenant) {
            return m.clone();
        }
        let m = Arc::new(TenantMetrics::default());
        map.insert(Arc::from(tenant), m.clone());
        m
    }

    /// The histograms of the API named `api`, created on first use; only called when building
    /// a snapshot's API list.
    pub fn api(&self, api: &str) -> Arc<ApiLatency> {
        let mut map = self.apis.locked();
        if let Some(m) = map.get(api) {
            return m.clone();
        }
        let m = Arc::new(ApiLatency::default());
        map.insert(Arc::from(api), m.clone());
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

    /// Histograms for requests that never got an API, when histograms are per API.
    pub fn unrouted(&self) -> &Arc<ApiLatency> {
        &self.unrouted
    }

    /// The counted tenants for a scrape: `""` (untenanted) first, then by name.
    fn counted(&self) -> Vec<(Arc<str>, Arc<TenantMetrics>)> {
        let mut tenants: Vec<(Arc<str>, Arc<TenantMetrics>)> = self
            .tenants
            .locked()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tenants.sort_by(|a, b| a.0.cmp(&b.0));
        tenants.insert(0, (Arc::from(""), self.untenanted.clone()));
        tenants
    }
}
