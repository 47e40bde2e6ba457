//! The API's own warnings on its responses: Graph's throttle headers
//! (`x-ms-throttle-limit-percentage`, sent once an app has used most of a limit, with
//! `x-ms-throttle-scope` and `x-ms-throttle-information`), `Retry-After` (Defender's and Graph's,
//! on a 429 or on an answer), and Graph's `206 Partial Content` with `Warning: 199 ...` (a
//! federated provider failed: the answer is incomplete).
//!
//! [`UpstreamWarnings::read`] takes them off one response (for its access line);
//! [`WarningCounts`] counts them per (tenant, API) with atomics, and [`FAMILIES`] shows them in
//! `/metrics`. A response with none of them costs two header lookups and a status compare, no
//! allocation: the headers that come with them are only looked for once one of them is there.
//! Their texts (scope, information, warning) go to the access line, never to labels, so the
//! series stay one per (tenant, API).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::BytesMut;
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::scrape::{Family, Scrape};
use super::{unix_secs, Label};

pub(crate) static THROTTLE_PERCENT: HeaderName =
    HeaderName::from_static("x-ms-throttle-limit-percentage");
pub(crate) static THROTTLE_SCOPE: HeaderName = HeaderName::from_static("x-ms-throttle-scope");
pub(crate) static THROTTLE_INFORMATION: HeaderName =
    HeaderName::from_static("x-ms-throttle-information");

/// The most of a header's text kept for the access line (at a char boundary): the API's texts
/// are data, and a log line must not grow with whatever it sends.
pub(crate) const TEXT_LIMIT: usize = 256;

/// What one API response warned about; made only when it warned about something.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamWarnings {
    /// `x-ms-throttle-limit-percentage` was sent ...
    pub throttled: bool,
    /// ... and its value, as sent, when it reads as a number (Graph documents it as the share
    /// of the limit used, from 0.8 up).
    pub throttle_percent: Option<f64>,
    pub throttle_scope: Option<Box<str>>,
    pub throttle_information: Option<Box<str>>,
    /// `Retry-After` was sent ...
    pub retry_after_sent: bool,
    /// ... and its wait in seconds (delta-seconds, or an HTTP date from now), when readable.
    pub retry_after: Option<u64>,
    /// A 206 with a `Warning`: an answer the API says is incomplete.
    pub partial: bool,
    /// The `Warning` text, read on a response that warned otherwise too.
    pub warning: Option<Box<str>>,
}

impl UpstreamWarnings {
    /// The warnings of a response with `status` and `headers`; `None` (the common case, without
    /// an allocation) when there are none.
    pub(crate) fn read(status: StatusCode, headers: &HeaderMap) -> Option<Self> {
        let percent = headers.get(&THROTTLE_PERCENT);
        let retry_after = headers.get(header::RETRY_AFTER);
        let partial_status = status == StatusCode::PARTIAL_CONTENT;
        if percent.is_none() && retry_after.is_none() && !partial_status {
            return None;
        }
        let warning = headers.get(header::WARNING);
        let warned = UpstreamWarnings {
            throttled: percent.is_some(),
            throttle_percent: percent.and_then(percent_of),
            throttle_scope: headers.get(&THROTTLE_SCOPE).map(text),
            throttle_information: headers.get(&THROTTLE_INFORMATION).map(text),
            retry_after_sent: retry_after.is_some(),
            retry_after: retry_after.and_then(seconds_of),
            partial: partial_status && warning.is_some(),
            warning: warning.map(text),
        };
        (warned.throttled || warned.retry_after_sent || warned.partial).then_some(warned)
    }
}

fn percent_of(value: &HeaderValue) -> Option<f64> {
    let parsed: f64 = value.to_str().ok()?.trim().parse().ok()?;
    (parsed.is_finite() && parsed >= 0.0).then_some(parsed)
}

/// `Retry-After` in seconds: delta-seconds, or an HTTP date (one in the past is 0).
fn seconds_of(value: &HeaderValue) -> Option<u64> {
    let value = value.to_str().ok()?.trim();
    match value.parse::<u64>() {
        Ok(secs) => Some(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            Some(
                at.duration_since(SystemTime::now())
                    .map_or(0, |d| d.as_secs()),
            )
        }
    }
}

/// The header's text, cut to [`TEXT_LIMIT`] bytes.
fn text(value: &HeaderValue) -> Box<str> {
    let text = String::from_utf8_lossy(value.as_bytes());
    let mut end = text.len().min(TEXT_LIMIT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].into()
}

/// One (tenant, API)'s warnings from the API, counted lock-free (48 bytes).
#[derive(Debug, Default)]
pub struct WarningCounts {
    throttled: AtomicU64,
    /// The last readable throttle percentage (`f64` bits) and when it came (Unix seconds; 0:
    /// never): Graph stops sending the header below its threshold, so the gauge alone would
    /// stay at its last value for good.
    throttle_percent: AtomicU64,
    throttle_at: AtomicU64,
    retry_after: AtomicU64,
    /// The last readable `Retry-After` in seconds, plus one (0: none yet).
    retry_after_secs: AtomicU64,
    partial: AtomicU64,
}

impl WarningCounts {
    /// One response that warned.
    pub(crate) fn record(&self, warned: &UpstreamWarnings) {
        if warned.throttled {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(percent) = warned.throttle_percent {
            self.throttle_percent
                .store(percent.to_bits(), Ordering::Relaxed);
            self.throttle_at
                .store(unix_secs(SystemTime::now()).max(1), Ordering::Relaxed);
        }
        if warned.retry_after_sent {
            self.retry_after.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(secs) = warned.retry_after {
            self.retry_after_secs
                .store(secs.saturating_add(1), Ordering::Relaxed);
        }
        if warned.partial {
            self.partial.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Anything counted yet (its series are shown then, even for an API with no answer counted
    /// under it: Graph's, for legacy hunting answered through it).
    pub(crate) fn any(&self) -> bool {
        self.throttled.load(Ordering::Relaxed) > 0
            || self.retry_after.load(Ordering::Relaxed) > 0
            || self.partial.load(Ordering::Relaxed) > 0
    }

    /// The last readable throttle percentage and when it came (Unix seconds).
    pub(crate) fn throttle_percent(&self) -> Option<(f64, u64)> {
        let at = self.throttle_at.load(Ordering::Relaxed);
        let percent = f64::from_bits(self.throttle_percent.load(Ordering::Relaxed));
        (at != 0).then_some((percent, at))
    }

    /// The last readable `Retry-After`, seconds.
    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_secs.load(Ordering::Relaxed).checked_sub(1)
    }
}

/// Row `i` (a counted tenant): one line per API that answered anything or warned, its value
/// from `value` (no line for `None`).
fn per_api(
    s: &Scrape,
    name: &str,
    i: usize,
    out: &mut BytesMut,
    value: fn(&WarningCounts) -> Option<f64>,
) {
    let (tenant, metrics) = &s.counted_tenants()[i];
    let tenant = Label("tenant", tenant);
    for api in metrics.apis() {
        if api.requests.is_empty() && !api.warnings.any() {
            continue;
        }
        if let Some(v) = value(&api.warnings) {
            let _ = writeln!(out, "{name}{{{tenant},{}}} {v}", Label("api", &api.name));
        }
    }
}

fn counted(s: &Scrape) -> usize {
    s.counted_tenants().len()
}

fn load(counter: &AtomicU64) -> Option<f64> {
    Some(counter.load(Ordering::Relaxed) as f64)
}

/// The upstream-warning families, after the request families.
pub(crate) const FAMILIES: [Family; 6] = [
    Family {
        name: "defender_proxy_upstream_throttle_warnings_total",
        kind: "counter",
        help: "API responses with x-ms-throttle-limit-percentage (Graph: most of a limit used), by tenant and API.",
        latency: false,
        rows: counted,
        row: |s, name, i, out| per_api(s, name, i, out, |w| load(&w.throttled)),
    },
    Family {
        name: "defender_proxy_upstream_throttle_percent",
        kind: "gauge",
        help: "The last x-ms-throttle-limit-percentage, as sent (the share of the limit used), by tenant and API.",
        latency: false,
        rows: counted,
        row: |s, name, i, out| per_api(s, name, i, out, |w| w.throttle_percent().map(|(p, _)| p)),
    },
    Family {
        name: "defender_proxy_upstream_throttle_timestamp_seconds",
        kind: "gauge",
        help: "When the last x-ms-throttle-limit-percentage came (Unix seconds): Graph stops sending it below its threshold.",
        latency: false,
        rows: counted,
        row: |s, name, i, out| {
            per_api(s, name, i, out, |w| w.throttle_percent().map(|(_, at)| at as f64))
        },
    },
    Family {
        name: "defender_proxy_upstream_retry_after_total",
        kind: "counter",
        help: "API responses with Retry-After (a 429 or an answer), by tenant and API.",
        latency: false,
        rows: counted,
        row: |s, name, i, out| per_api(s, name, i, out, |w| load(&w.retry_after)),
    },
    Family {
        name: "defender_proxy_upstream_retry_after_seconds",
        kind: "gauge",
        help: "The last readable Retry-After of the API, seconds, by tenant and API.",
        latency: false,
        rows: counted,
        row: |s, name, i, out| per_api(s, name, i, out, |w| w.retry_after_secs().map(|v| v as f64)),
    },
    Family {
        name: "defender_proxy_upstream_partial_total",
        kind: "counter",
        help: "API answers 206 with a Warning (a federated provider failed: the answer is incomplete), by tenant and API.",
        latency: false,
        rows: counted,
        row: |s, name, i, out| per_api(s, name, i, out, |w| load(&w.partial)),
    },
];

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
