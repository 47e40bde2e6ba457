//! Advanced-hunting answers, generated row by row as the client reads: the same deterministic
//! per-tenant `DeviceInfo`-like rows in the legacy Defender shape (`POST /api/advancedhunting/run`,
//! `POST /api/advancedqueries/run`: `{"Stats", "Schema": [{"Name","Type"}], "Results"}`) and in
//! Graph's (`POST /v1.0/security/runHuntingQuery`: `{"@odata.context", "schema":
//! [{"name","type"}], "results"}`).
//!
//! `take N` or `limit N` in the query sets the row count (otherwise 5). The legacy APIs cap it at
//! 10,000 as the real ones do; Graph's real cap (100,000 rows, 50 MB) is *not* enforced, up to
//! [`MAX_GRAPH_ROWS`], so size tests can ask for a 50 MB answer (`take 300000` is about 52 MB).
//! The body is a stream of frames of [`ROWS_PER_FRAME`] rows, each made only when the connection
//! asks for it: a huge answer costs time, not memory. With a [`Hold`]
//! ([`super::Simulator::hold_hunting_streams`]) the stream stops before a given frame until
//! [`super::Simulator::release_streams`], so a test can see what reached a client mid-answer.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::Value;
use tokio::sync::watch;

use super::data::{TenantData, EPOCH, MACHINES};
use super::support::{self, iso8601, Body};

/// Rows the legacy APIs return at most.
const MAX_LEGACY_ROWS: u64 = 10_000;
/// Rows Graph's simulated hunting returns at most: a bound on a typo, far above the real 100,000.
pub(crate) const MAX_GRAPH_ROWS: u64 = 10_000_000;
/// Rows per body frame.
pub(crate) const ROWS_PER_FRAME: u64 = 512;
const DEFAULT_ROWS: u64 = 5;
/// The columns, in the order each row writes them.
const COLUMNS: [(&str, &str); 5] = [
    ("Timestamp", "DateTime"),
    ("DeviceId", "String"),
    ("DeviceName", "String"),
    ("ActionType", "String"),
    ("ReportId", "Int64"),
];
const ACTIONS: [&str; 3] = ["ProcessCreated", "ConnectionSuccess", "FileCreated"];

/// Which API's answer to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Legacy,
    Graph,
}

/// The row count a query asks for: the number after `take` or `limit` (case-insensitive).
pub(crate) fn rows_asked(query: &str) -> u64 {
    let words: Vec<String> = query
        .split(|c: char| c.is_whitespace() || c == '|')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    words
        .windows(2)
        .find(|w| w[0] == "take" || w[0] == "limit")
        .and_then(|w| w[1].parse::<u64>().ok())
        .unwrap_or(DEFAULT_ROWS)
}

/// What every frame is made of.
#[derive(Debug)]
struct Document {
    rows: u64,
    head: String,
    tail: &'static str,
    /// `"DeviceId"` and `"DeviceName"` values (JSON-quoted) of the tenant's machines.
    machines: Vec<(String, String)>,
}

impl Document {
    fn new(tenant: &TenantData, query: &str, shape: Shape, base: &str) -> Document {
        let cap = match shape {
            Shape::Legacy => MAX_LEGACY_ROWS,
            Shape::Graph => MAX_GRAPH_ROWS,
        };
        let rows = rows_asked(query).min(cap);
        let (name, kind) = match shape {
            Shape::Legacy => ("Name", "Type"),
            Shape::Graph => ("name", "type"),
        };
        let schema: Vec<String> = COLUMNS
            .iter()
            .map(|(n, t)| format!("{{\"{name}\":\"{n}\",\"{kind}\":\"{t}\"}}"))
            .collect();
        let schema = schema.join(",");
        let head = match shape {
            Shape::Legacy => format!(
                "{{\"Stats\":{{\"ExecutionTime\":0.04,\"resource_usage\":{{\"cache\":{{\"memory\":{{\"hits\":1,\"misses\":0,\"total\":1}}}},\"cpu\":{{\"user\":\"00:00:00.0156250\",\"kernel\":\"00:00:00\",\"total cpu\":\"00:00:00.0156250\"}}}},\"dataset_statistics\":[{{\"table_row_count\":{rows},\"table_size\":{}}}]}},\"Schema\":[{schema}],\"Results\":[",
                rows * 120
            ),
            Shape::Graph => format!(
                "{{\"@odata.context\":{},\"schema\":[{schema}],\"results\":[",
                Value::from(format!(
                    "{base}/v1.0/$metadata#microsoft.graph.security.huntingQueryResults"
                ))
            ),
        };
        let machines = (0..MACHINES)
            .map(|m| {
                (
                    Value::from(tenant.machine_id(m)).to_string(),
                    Value::from(tenant.machine_dns(m)).to_string(),
                )
            })
            .collect();
        Document {
            rows,
            head,
            tail: "]}",
            machines,
        }
    }

    fn frames(&self) -> u64 {
        self.rows.div_ceil(ROWS_PER_FRAME).max(1)
    }

    /// Frame `f`: the head on the first, its rows, the tail on the last.
    fn frame(&self, f: u64) -> Bytes {
        let first = f * ROWS_PER_FRAME;
        let end = (first + ROWS_PER_FRAME).min(self.rows);
        let mut out = String::with_capacity(((end - first) * 240) as usize + self.head.len());
        if f == 0 {
            out.push_str(&self.head);
        }
        for i in first..end {
            if i > 0 {
                out.push(',');
            }
            let (id, dns) = &self.machines[(i % MACHINES) as usize];
            out.push_str(&format!(
                "{{\"Timestamp\":\"{}\",\"DeviceId\":{id},\"DeviceName\":{dns},\"ActionType\":\"{}\",\"ReportId\":{}}}",
                iso8601(EPOCH.saturating_sub(i * 60)),
                ACTIONS[(i % ACTIONS.len() as u64) as usize],
                i + 1
            ));
        }
        if f + 1 == self.frames() {
            out.push_str(self.tail);
        }
        Bytes::from(out)
    }
}

/// Where an answer stops until released: before frame `before` (0: before the first byte; past
/// the last frame: never), until the `release_streams()` generation moves past `start`.
#[derive(Debug, Clone)]
pub(crate) struct Hold {
    pub(crate) before: u64,
    pub(crate) gate: watch::Receiver<u64>,
    /// The generation when the answer started: a release made after that lets it go on.
    pub(crate) start: u64,
}

/// A 200 with the query's rows in `shape`, streamed (held per `hold`).
pub(crate) fn response(
    tenant: &TenantData,
    query: &str,
    shape: Shape,
    base: &str,
    hold: Option<Hold>,
) -> Response<Body> {
    let document = Arc::new(Document::new(tenant, query, shape, base));
    // `iter` + `then` is lazy: a frame is made only when the connection asks for the next one.
    let frames = stream::iter(0..document.frames()).then(move |f| {
        let document = document.clone();
        let held = hold.as_ref().filter(|h| h.before == f).cloned();
        async move {
            if let Some(mut held) = held {
                // A closed channel means the simulator is gone: send the rest.
                let _ = held.gate.wait_for(|g| *g > held.start).await;
            }
            Ok::<_, std::convert::Infallible>(Frame::data(document.frame(f)))
        }
    });
    let content_type = match shape {
        Shape::Legacy => support::JSON,
        Shape::Graph => support::ODATA_JSON,
    };
    support::response(
        StatusCode::OK,
        content_type,
        StreamBody::new(frames).boxed_unsync(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tenant() -> TenantData {
        TenantData {
            name: "contoso".into(),
            id: "11111111-aaaa-4aaa-8aaa-000000000001".into(),
            ordinal: 1,
        }
    }

    #[test]
    fn row_counts() {
        assert_eq!(rows_asked("DeviceInfo | take 3"), 3);
        assert_eq!(rows_asked("DeviceInfo|TAKE 7"), 7);
        assert_eq!(rows_asked("DeviceInfo | limit 12"), 12);
        assert_eq!(rows_asked("DeviceInfo"), 5);
    }

    #[test]
    fn frames_join_into_json_in_both_shapes() {
        for (shape, rows) in [(Shape::Legacy, 0), (Shape::Graph, 1), (Shape::Graph, 1025)] {
            let doc = Document::new(&tenant(), &format!("T | take {rows}"), shape, "http://h");
            let whole: Vec<u8> = (0..doc.frames()).flat_map(|f| doc.frame(f)).collect();
            let v: Value = serde_json::from_slice(&whole).unwrap();
            let results = if shape == Shape::Graph {
                "results"
            } else {
                "Results"
            };
            assert_eq!(v[results].as_array().unwrap().len(), rows as usize);
        }
        let legacy = Document::new(&tenant(), "T | take 99999", Shape::Legacy, "h");
        assert_eq!(legacy.rows, MAX_LEGACY_ROWS);
    }
}
