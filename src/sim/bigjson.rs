//! `GET /api/_test/bigjson?pages=N`: one JSON document of exactly N × 64 KiB, generated a page
//! at a time as the client reads, for testing that the proxy rewrites paging links in a body of
//! any size with flat memory.
//!
//! Shape: `{"@odata.context":"{base}/api/$metadata#Incidents","value":[item, ...],
//! "@odata.nextLink":"{base}/api/_test/bigjson?pages=N&$skip=N"}` where each of the N items
//! carries its own absolute `@odata.context` and `@odata.nextLink` and is padded so that every
//! 64 KiB frame ends exactly on an item: 2N + 2 links on the simulator's host in all.

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::header::{HeaderValue, CONTENT_LENGTH};
use http::{Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::Value;

use super::support::{self, defender_error, Body};

/// Bytes per page (and per frame).
pub(crate) const PAGE: usize = 64 * 1024;
/// 4 GiB: enough for any memory test, and a bound on a typo.
const MAX_PAGES: u64 = 65_536;
/// Padding is sliced from here: a page is a few copies, not 64 Ki pushes of one character.
static PAD: [u8; PAGE] = [b'x'; PAGE];

/// What every page is made of; only the item number changes from page to page.
#[derive(Debug)]
struct Document {
    pages: u64,
    head: String,
    tail: String,
    item_context: String,
    link: String,
}

impl Document {
    fn new(base: &str, pages: u64) -> Document {
        let quoted = |s: String| Value::from(s).to_string();
        Document {
            pages,
            head: format!(
                "{{\"@odata.context\":{},\"value\":[",
                quoted(format!("{base}/api/$metadata#Incidents"))
            ),
            tail: format!(
                "],\"@odata.nextLink\":{}}}",
                quoted(format!(
                    "{base}/api/_test/bigjson?pages={pages}&$skip={pages}"
                ))
            ),
            item_context: quoted(format!("{base}/api/$metadata#Incidents/$entity")),
            link: format!("{base}/api/_test/bigjson?pages={pages}"),
        }
    }

    /// Page `i`: the head on the first, a separating comma on the others, item `i` padded to
    /// fill the page, the tail on the last.
    fn page(&self, i: u64) -> Bytes {
        let mut out = Vec::with_capacity(PAGE);
        out.extend_from_slice(if i == 0 { self.head.as_bytes() } else { b"," });
        out.extend_from_slice(
            format!(
                "{{\"@odata.context\":{},\"@odata.nextLink\":{},\"id\":{i},\"pad\":\"",
                self.item_context,
                Value::from(format!("{}&$skip={}", self.link, i + 1)),
            )
            .as_bytes(),
        );
        let close = b"\"}";
        let tail = if i + 1 == self.pages {
            self.tail.as_bytes()
        } else {
            b""
        };
        let pad = PAGE.saturating_sub(out.len() + close.len() + tail.len());
        out.extend_from_slice(&PAD[..pad]);
        out.extend_from_slice(close);
        out.extend_from_slice(tail);
        Bytes::from(out)
    }
}

pub(crate) fn response(base: &str, query: Option<&str>) -> Response<Body> {
    let pages = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "pages")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .filter(|n| (1..=MAX_PAGES).contains(n));
    let Some(pages) = pages else {
        return defender_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Query parameter pages=<1..={MAX_PAGES}> is required."),
        );
    };
    let document = Document::new(base, pages);
    // `iter` + `map` is lazy: a page is made only when the connection asks for the next frame.
    let frames = stream::iter(0..pages)
        .map(move |i| Ok::<_, std::convert::Infallible>(Frame::data(document.page(i))));
    let mut resp = support::response(
        StatusCode::OK,
        support::ODATA_JSON,
        StreamBody::new(frames).boxed_unsync(),
    );
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(pages * PAGE as u64));
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_exactly_64_kib_and_join_into_json() {
        let doc = Document::new("http://127.0.0.1:1234", 3);
        let pages: Vec<Bytes> = (0..3).map(|i| doc.page(i)).collect();
        assert!(pages.iter().all(|p| p.len() == PAGE));
        let whole: Vec<u8> = pages.concat();
        let v: Value = serde_json::from_slice(&whole).unwrap();
        assert_eq!(v["value"].as_array().unwrap().len(), 3);
        assert_eq!(
            v["value"][1]["@odata.nextLink"],
            "http://127.0.0.1:1234/api/_test/bigjson?pages=3&$skip=2"
        );
        // One page alone is head, item and tail in one frame.
        let one = Document::new("http://h", 1).page(0);
        assert_eq!(one.len(), PAGE);
        serde_json::from_slice::<Value>(&one).unwrap();
    }
}
