//! `[telemetry]`: traces over OTLP/HTTP (see [`crate::telemetry`]).

use http::Uri;

/// How spans are encoded for the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceProtocol {
    /// `http/protobuf` (the OTLP default).
    Protobuf,
    /// `http/json`.
    Json,
}

impl TraceProtocol {
    /// The name the config file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceProtocol::Protobuf => "http/protobuf",
            TraceProtocol::Json => "http/json",
        }
    }
}

/// `[telemetry]` with an `otlp_endpoint`: traces on. Read once at start (a reload keeps the
/// running pipeline).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The collector's traces URL: `otlp_endpoint` with `/v1/traces` added when it has no path.
    pub endpoint: Uri,
    pub protocol: TraceProtocol,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// The share of requests without a client `traceparent` that are traced, in `[0, 1]`; a
    /// client's own sampling decision is followed (parent-based).
    pub sample_ratio: f64,
}
