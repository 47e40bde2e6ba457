//! What becomes of the spans: a bound on the batch processor's queue that counts what it
//! drops, and an exporter that counts what it sent and what the collector did not take.
//!
//! The SDK's batch processor drops spans when its queue is full but only reports the number
//! at shutdown, so the bound is kept here, in front of it: [`Bounded`] counts a span in when
//! the processor takes it and [`Counted`] counts it out when an export takes it, and a span
//! that would pass [`super::MAX_QUEUE`] is dropped before it reaches the processor. Spans on
//! their way into an export are still counted in, so the processor's own queue (as large) never
//! fills.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;

/// The `/metrics` counters of the trace pipeline.
#[derive(Debug, Default)]
pub(crate) struct SpanCounts {
    /// Spans the collector accepted.
    pub(crate) exported: AtomicU64,
    /// Spans dropped because the queue was full (a slow or dead collector).
    pub(crate) queue_full: AtomicU64,
    /// Spans of exports that failed (refused, unreachable, timed out).
    pub(crate) export_failed: AtomicU64,
    /// Spans handed to the batch processor and not yet taken by an export.
    queued: AtomicUsize,
    /// The last export failed: the next failure is not logged again, the next success is.
    failing: AtomicBool,
}

/// The batch processor, with a bound on the spans it holds (see the module docs).
#[derive(Debug)]
pub(crate) struct Bounded<P> {
    inner: P,
    counts: Arc<SpanCounts>,
    limit: usize,
}

impl<P> Bounded<P> {
    pub(crate) fn new(inner: P, counts: Arc<SpanCounts>, limit: usize) -> Self {
        Bounded {
            inner,
            counts,
            limit,
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.counts.queued.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.counts.queued.fetch_sub(1, Ordering::Relaxed);
            self.counts.queue_full.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting what it sent and what failed.
#[derive(Debug)]
pub(crate) struct Counted<E> {
    inner: E,
    counts: Arc<SpanCounts>,
}

impl<E> Counted<E> {
    pub(crate) fn new(inner: E, counts: Arc<SpanCounts>) -> Self {
        Counted { inner, counts }
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        self.counts.queued.fetch_sub(n, Ordering::Relaxed);
        let result = self.inner.export(batch).await;
        let counts = &self.counts;
        match &result {
            Ok(()) => {
                counts.exported.fetch_add(n as u64, Ordering::Relaxed);
                if counts.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("trace export works again");
                }
            }
            Err(err) => {
                counts.export_failed.fetch_add(n as u64, Ordering::Relaxed);
                if !counts.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %err,
                        spans = n,
                        "trace export failed; spans are dropped (and counted) until it works"
                    );
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
