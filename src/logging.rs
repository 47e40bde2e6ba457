//! The process's `tracing` subscriber: the log lines on stderr (text or JSON, `RUST_LOG`), and
//! with telemetry on the trace layer beside them.
//!
//! Without telemetry it is the plain `fmt` subscriber with one global filter: the trace spans
//! (target [`crate::telemetry::spans::TARGET`]) are turned off there, so their callsites are
//! never enabled and cost a cached check. With telemetry each layer has its own filter: the log
//! filter for the log lines (the trace spans still off for them, so log lines look the same),
//! and the trace target only for the trace layer.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::telemetry::{spans, Telemetry};

/// Install the process's subscriber: logs on stderr as JSON (`json`) or text, filtered by
/// `RUST_LOG` (default `info`), and the trace layer of `telemetry`.
pub fn init(json: bool, telemetry: Option<&Telemetry>) {
    let ansi = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let filter = log_filter();
    let Some(telemetry) = telemetry else {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        if json {
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .init();
        } else {
            builder.with_ansi(ansi).init();
        }
        return;
    };
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = if json {
        logs.json()
            .flatten_event(true)
            .with_current_span(false)
            .boxed()
    } else {
        logs.with_ansi(ansi).boxed()
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(telemetry.layer())
        .init();
}

/// `RUST_LOG` (default `info`), with the trace spans off whatever it says.
fn log_filter() -> EnvFilter {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match format!("{}=off", spans::TARGET).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}
