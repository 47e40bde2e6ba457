//! Test helpers on the API under `/api/_test/` (same token rules as the real endpoints): they
//! let proxy tests prove body streaming both ways, header forwarding and early flushing without
//! timers.
//!
//! - `POST|PUT /api/_test/echo`: `{"bytes": N, "sha256": "hex"}` of the request body.
//! - `GET /api/_test/stream`: `{"part":1}\n` at once, `{"part":2}\n` after
//!   [`super::Simulator::release_streams`].
//! - `GET /api/_test/bytes?n=N`: N bytes generated in 64 KiB chunks, never buffered.
//! - `GET /api/_test/headers`: the received headers as a JSON object (token redacted).
//! - `GET /api/_test/bigjson?pages=N`: a JSON document of N × 64 KiB full of absolute paging
//!   links, generated as it is sent (see `bigjson`).

use bytes::Bytes;
use futures_util::stream;
use http::header::{HeaderValue, CONTENT_LENGTH};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::json;

use super::bigjson;
use super::records::headers_json;
use super::state::Shared;
use super::support::{self, defender_error, Body, ReadBody};

const CHUNK: usize = 64 * 1024;
/// The one chunk every `/api/_test/bytes` frame is sliced from: zero-copy, no per-chunk allocation.
static CHUNK_BYTES: [u8; CHUNK] = [b'x'; CHUNK];

pub(crate) async fn handle(
    shared: &Shared,
    parts: &Parts,
    read: &ReadBody,
    base: &str,
) -> Response<Body> {
    let path = parts.uri.path().to_ascii_lowercase();
    match (path.as_str(), &parts.method) {
        ("/api/_test/echo", &Method::POST | &Method::PUT) => support::json(
            StatusCode::OK,
            &json!({"bytes": read.len, "sha256": read.sha256}),
        ),
        ("/api/_test/stream", &Method::GET) => gated_stream(shared),
        ("/api/_test/bytes", &Method::GET) => bytes(parts.uri.query()),
        ("/api/_test/bigjson", &Method::GET) => bigjson::response(base, parts.uri.query()),
        ("/api/_test/headers", &Method::GET) => {
            support::json(StatusCode::OK, &headers_json(&parts.headers))
        }
        (
            "/api/_test/echo" | "/api/_test/stream" | "/api/_test/bytes" | "/api/_test/headers"
            | "/api/_test/bigjson",
            _,
        ) => defender_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The HTTP method is not allowed on this resource.",
        ),
        _ => defender_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "No such test endpoint.",
        ),
    }
}

/// Part 1 now, part 2 once the release generation moves past the one seen at request time.
fn gated_stream(shared: &Shared) -> Response<Body> {
    let mut gate = shared.release.subscribe();
    // Taken before part 1 is sent, so a release made after the client saw part 1 always counts.
    let start = *gate.borrow_and_update();
    let parts = stream::unfold(0u8, move |step| {
        let mut gate = gate.clone();
        async move {
            match step {
                0 => Some((frame(b"{\"part\":1}\n"), 1)),
                1 => {
                    // A closed channel means the simulator is gone: end the body early.
                    gate.wait_for(|g| *g > start).await.ok()?;
                    Some((frame(b"{\"part\":2}\n"), 2))
                }
                _ => None,
            }
        }
    });
    let body = StreamBody::new(parts).boxed_unsync();
    support::response(StatusCode::OK, "application/x-ndjson", body)
}

fn frame(bytes: &'static [u8]) -> Result<Frame<Bytes>, std::convert::Infallible> {
    Ok(Frame::data(Bytes::from_static(bytes)))
}

/// `n` bytes of `x`, streamed.
fn bytes(query: Option<&str>) -> Response<Body> {
    let n = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "n")
        .and_then(|(_, v)| v.parse::<u64>().ok());
    let Some(n) = n else {
        return defender_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Query parameter n=<bytes> is required.",
        );
    };
    let chunks = stream::unfold(n, |left| async move {
        (left > 0).then(|| {
            let len = left.min(CHUNK as u64) as usize;
            (frame(&CHUNK_BYTES[..len]), left - len as u64)
        })
    });
    let mut resp = support::response(
        StatusCode::OK,
        "application/octet-stream",
        StreamBody::new(chunks).boxed_unsync(),
    );
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(n));
    resp
}
