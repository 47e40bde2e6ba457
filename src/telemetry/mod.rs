//! Traces over OTLP/HTTP (`[telemetry]`), off unless `otlp_endpoint` is set.
//!
//! The hot path makes its spans with `tracing` ([`spans`]), all of them with the target
//! [`spans::TARGET`], which the log filter always turns off: with telemetry off no subscriber
//! wants them, so each costs a cached callsite check and nothing is recorded. With telemetry on,
//! [`Telemetry::layer`] is added to the subscriber: `tracing-opentelemetry` turns those spans
//! (and only those: a per-layer filter on the target, so no log event or log span is exported)
//! into OpenTelemetry spans of one trace per request.
//!
//! Spans are exported in batches off the hot path: a request only pushes its ended spans into a
//! bounded queue ([`export`]); the SDK's batch processor thread sends them with the proxy's own
//! hyper client on a one-thread runtime of its own ([`client`]), so a slow or dead collector
//! blocks nothing but that thread, and a full queue drops spans (counted in `/metrics`).

mod client;
pub(crate) mod export;
pub(crate) mod metrics;
pub(crate) mod spans;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::{Config, TraceProtocol};
use crate::tls::TlsError;
pub(crate) use export::SpanCounts;

/// Spans waiting for export at most; past it a request's spans are dropped (and counted).
pub(crate) const MAX_QUEUE: usize = 2048;
/// Spans sent in one OTLP request at most.
const MAX_BATCH: usize = 512;
/// How long spans wait for a batch to fill before they are sent anyway.
const BATCH_DELAY: Duration = Duration::from_secs(2);
/// One export (with its retries) gives up after this long.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a shutdown waits for the last spans to go out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the trace pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("telemetry: {0}")]
    Tls(#[from] TlsError),
    #[error("telemetry: cannot start the exporter's runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// The running trace pipeline: the tracer provider (its batch processor and exporter) and the
/// counts of what became of the spans. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    counts: Arc<SpanCounts>,
}

impl Telemetry {
    /// The pipeline `config`'s `[telemetry]` asks for; `None` when traces are off. Needs no
    /// runtime: the exporter brings its own.
    pub fn start(config: &Config) -> Result<Option<Telemetry>, TelemetryError> {
        let Some(telemetry) = &config.telemetry else {
            return Ok(None);
        };
        let counts = Arc::new(SpanCounts::default());
        let client = client::OtlpClient::new(config, EXPORT_TIMEOUT)?;
        let protocol = match telemetry.protocol {
            TraceProtocol::Protobuf => Protocol::HttpBinary,
            TraceProtocol::Json => Protocol::HttpJson,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(telemetry.endpoint.to_string())
            .with_protocol(protocol)
            .with_timeout(EXPORT_TIMEOUT)
            .build()?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(MAX_QUEUE)
            .with_max_export_batch_size(MAX_BATCH)
            .with_scheduled_delay(BATCH_DELAY)
            .build();
        let processor = BatchSpanProcessor::builder(export::Counted::new(exporter, counts.clone()))
            .with_batch_config(batch)
            .build();
        // A client's sampling decision is followed; requests that come without one are
        // sampled at `sample_ratio`.
        let sampler =
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(telemetry.sample_ratio)));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(export::Bounded::new(processor, counts.clone(), MAX_QUEUE))
            .with_sampler(sampler)
            .with_resource(
                Resource::builder()
                    .with_service_name(telemetry.service_name.clone())
                    .build(),
            )
            .build();
        Ok(Some(Telemetry { provider, counts }))
    }

    /// The subscriber layer that turns the proxy's trace spans into this pipeline's spans. Add
    /// it to the process's subscriber (`main` does; a test installs its own).
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer(env!("CARGO_PKG_NAME")))
            // Lean spans: no source location, thread or target attributes, no busy/idle
            // timings (two clock reads per poll).
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(Targets::new().with_target(spans::TARGET, tracing::Level::INFO))
    }

    /// What became of the spans so far (the `/metrics` counters).
    pub(crate) fn counts(&self) -> &Arc<SpanCounts> {
        &self.counts
    }

    /// Export the spans ended so far now (waits for the export, at most the export timeout).
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    }

    /// Send what is queued, within [`FLUSH_TIMEOUT`], and stop the exporter.
    pub async fn shutdown(&self) {
        let provider = self.provider.clone();
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT));
        match done.await {
            Ok(Ok(())) | Ok(Err(opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown)) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "traces not all flushed at shutdown"),
            Err(_) => tracing::warn!("traces not flushed at shutdown"),
        }
    }
}
