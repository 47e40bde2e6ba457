//! The audit log: one JSON line per request, answering "who read which customer's data, when".
//!
//! A line holds who (client, peer), what (tenant, method, path without its query), and the
//! outcome; never a token, key or query string (a query may carry search terms or secrets).
//!
//! The request path never waits for the disk: [`AuditLog::record`] formats the line and hands it
//! to a bounded queue read by a dedicated writer thread (a plain thread, because file writes
//! block and must not stall a runtime worker). The thread buffers and flushes whenever the queue
//! is momentarily empty, so lines reach the file within one burst. When the queue is full the
//! line is dropped and counted rather than slowing requests down.

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::AuditTarget;

/// Lines that may wait for the writer; about a second of a very busy proxy.
const QUEUE_LINES: usize = 8192;
/// At most one "lines dropped" warning per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What one request did, as the proxy knows it when the response has been sent.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// The request's `X-Request-Id` (taken or generated).
    pub request_id: String,
    /// The identified `[[client]]`; `None` when inbound authentication is off or failed.
    pub client: Option<Arc<str>>,
    /// The TCP peer.
    pub peer: Option<SocketAddr>,
    /// The routed tenant's name; `None` when routing failed.
    pub tenant: Option<Arc<str>>,
    /// The routed tenant's app and cloud (config names, `default` for `[app]` and `[cloud]`).
    pub app: Option<Arc<str>>,
    pub cloud: Option<Arc<str>>,
    /// The request method.
    pub method: http::Method,
    /// The request path as received. Anything from `?` on is cut off before writing.
    pub path: String,
    /// Status sent to the client.
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: u64,
    /// From the request's arrival to the end of the response body.
    pub duration: Duration,
    /// Whether the response body was sent to its end (false: client gone or upstream broke off).
    pub complete: bool,
}

/// The wire form of a line; field order is the order in the file.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    request_id: &'a str,
    client: Option<&'a str>,
    peer: Option<String>,
    tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    status: u16,
    bytes: u64,
    duration_ms: f64,
    complete: bool,
}

impl AuditEntry {
    /// The JSON line (with its newline) for this entry, stamped `time`.
    fn to_line(&self, time: SystemTime) -> String {
        let path = self.path.split('?').next().unwrap_or_default();
        let line = Line {
            time: humantime::format_rfc3339_millis(time).to_string(),
            request_id: &self.request_id,
            client: self.client.as_deref(),
            peer: self.peer.map(|p| p.to_string()),
            tenant: self.tenant.as_deref(),
            app: self.app.as_deref(),
            cloud: self.cloud.as_deref(),
            method: self.method.as_str(),
            path,
            status: self.status,
            bytes: self.bytes,
            // Microsecond resolution, written as milliseconds.
            duration_ms: self.duration.as_micros() as f64 / 1000.0,
            complete: self.complete,
        };
        // Serialising plain strings and numbers cannot fail; an empty object keeps a line anyway.
        let mut text = serde_json::to_string(&line).unwrap_or_else(|_| "{}".to_owned());
        text.push('\n');
        text
    }
}

enum Msg {
    Line(String),
    /// Write out everything queued before this, then answer.
    Flush(oneshot::Sender<()>),
}

/// Handle to the audit writer; cheap to clone, all clones feed the same writer.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

struct Shared {
    dropped: AtomicU64,
    /// Milliseconds since `started` of the last drop warning, plus one (0: never warned).
    last_warn: AtomicU64,
    started: Instant,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens `target` (a file is created if missing and appended to, mode 0640 on unix) and
    /// starts the writer thread. Needs no async runtime.
    pub fn open(target: &AuditTarget) -> io::Result<Self> {
        let writer: Box<dyn Write + Send> = match target {
            AuditTarget::Stderr => Box::new(io::stderr()),
            AuditTarget::File(path) => {
                let mut options = std::fs::OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
                Box::new(options.open(path)?)
            }
        };
        Self::with_writer(writer, QUEUE_LINES)
    }

    /// An audit log writing to `writer` through a queue of `capacity` lines.
    pub(crate) fn with_writer(writer: Box<dyn Write + Send>, capacity: usize) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_lines(rx, writer))?;
        Ok(AuditLog {
            tx,
            shared: Arc::new(Shared {
                dropped: AtomicU64::new(0),
                last_warn: AtomicU64::new(0),
                started: Instant::now(),
            }),
        })
    }

    /// Queues the line for `entry`, stamped now. Never blocks: with the queue full (the disk far
    /// behind) the line is dropped, counted in [`dropped`](Self::dropped), and warned about.
    pub fn record(&self, entry: AuditEntry) {
        let line = entry.to_line(SystemTime::now());
        if self.tx.try_send(Msg::Line(line)).is_err() {
            // Full, or the writer is gone (it only stops when every handle is dropped).
            let total = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            self.warn_dropped(total);
        }
    }

    /// Queues a line for a change of who the proxy serves (the admin API, consent onboarding):
    /// `who` made `action` (`tenant_created`...) to `tenant`.
    pub(crate) fn record_change(&self, who: &str, action: &str, tenant: &str) {
        #[derive(Serialize)]
        struct Change<'a> {
            time: String,
            event: &'a str,
            who: &'a str,
            tenant: &'a str,
        }
        let line = Change {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            event: action,
            who,
            tenant,
        };
        let mut text = serde_json::to_string(&line).unwrap_or_else(|_| "{}".to_owned());
        text.push('\n');
        if self.tx.try_send(Msg::Line(text)).is_err() {
            let total = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            self.warn_dropped(total);
        }
    }

    /// Audit lines dropped so far because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every line queued before this call is written and flushed to the target.
    /// For graceful shutdown and tests; it waits for queue space like a line would not.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            // An error means the writer is gone, and there is nothing left to wait for.
            let _ = wait.await;
        }
    }

    fn warn_dropped(&self, total: u64) {
        let now = u64::try_from(self.shared.started.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let last = self.shared.last_warn.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        // Only the caller that wins the exchange warns, so a burst of drops logs once.
        if due
            && self
                .shared
                .last_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                dropped_total = total,
                "audit log writer is behind: audit lines dropped"
            );
        }
    }
}

/// The writer thread: write what is queued, flush when the queue runs dry, stop when every
/// [`AuditLog`] handle is gone (after writing everything still queued).
fn write_lines(mut rx: mpsc::Receiver<Msg>, writer: Box<dyn Write + Send>) {
    let mut out = Writer {
        inner: BufWriter::with_capacity(64 * 1024, writer),
        failing: false,
    };
    while let Some(msg) = rx.blocking_recv() {
        out.handle(msg);
        while let Ok(msg) = rx.try_recv() {
            out.handle(msg);
        }
        let result = out.inner.flush();
        out.note(result);
    }
    let result = out.inner.flush();
    out.note(result);
}

struct Writer {
    inner: BufWriter<Box<dyn Write + Send>>,
    /// Whether the last write failed, so a full disk logs once, not once per line.
    failing: bool,
}

impl Writer {
    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Line(line) => {
                let result = self.inner.write_all(line.as_bytes());
                self.note(result);
            }
            Msg::Flush(done) => {
                let result = self.inner.flush();
                self.note(result);
                let _ = done.send(());
            }
        }
    }

    fn note(&mut self, result: io::Result<()>) {
        match (result, self.failing) {
            (Err(e), false) => {
                self.failing = true;
                tracing::error!(error = %e, "cannot write the audit log");
            }
            (Ok(()), true) => {
                self.failing = false;
                tracing::info!("audit log writes again");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
