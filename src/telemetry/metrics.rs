//! The trace pipeline's families in `/metrics` (rendered by [`crate::metrics::scrape`]).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::metrics::scrape::Family;

pub(crate) const FAMILIES: [Family; 2] = [
    Family {
        name: "defender_proxy_trace_spans_exported_total",
        kind: "counter",
        help: "Trace spans the collector accepted.",
        latency: false,
        rows: |_| 1,
        row: |s, name, _, out| {
            let n = s.span_counts().exported.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name} {n}");
        },
    },
    Family {
        name: "defender_proxy_trace_spans_dropped_total",
        kind: "counter",
        help: "Trace spans dropped, by reason: the export queue was full, or the export failed.",
        latency: false,
        rows: |_| 1,
        row: |s, name, _, out| {
            let counts = s.span_counts();
            let _ = writeln!(
                out,
                "{name}{{reason=\"queue_full\"}} {}\n{name}{{reason=\"export_failed\"}} {}",
                counts.queue_full.load(Ordering::Relaxed),
                counts.export_failed.load(Ordering::Relaxed)
            );
        },
    },
];
