//! The `gzip_json` mode: successful JSON answers gzip-encoded for clients that accept it, as
//! Microsoft's front ends do, so the proxy's paging-link rewrite meets encoded bodies.
//!
//! The encoding streams: each frame of the body is compressed and flushed as it comes, so a
//! streamed body of any size (`/api/_test/bigjson`) stays streamed and memory stays flat.

use std::io::Write as _;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use futures_util::stream;
use http::header::{
    HeaderMap, HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, VARY,
};
use http::{Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use super::support::Body;

/// Whether `Accept-Encoding` allows gzip: `gzip` (or `x-gzip`, or `*`) without `q=0`.
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, q)| {
                    k.trim().eq_ignore_ascii_case("q") && q.trim().parse::<f32>() == Ok(0.0)
                })
            });
            ["gzip", "x-gzip", "*"]
                .iter()
                .any(|c| coding.eq_ignore_ascii_case(c))
                && !refused
        })
}

/// `resp` gzip-encoded when it is a 200 with a JSON body; anything else is returned as it is.
pub(crate) fn encode_json(resp: Response<Body>) -> Response<Body> {
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    if resp.status() != StatusCode::OK || !is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts
        .headers
        .insert(VARY, HeaderValue::from_static("accept-encoding"));
    Response::from_parts(parts, compress(body))
}

/// The body, gzip-compressed frame by frame.
fn compress(body: Body) -> Body {
    // `None` once the trailer has been written.
    let state = (body, Some(GzEncoder::new(Vec::new(), Compression::fast())));
    let frames = stream::unfold(state, |(mut body, mut encoder)| async move {
        // Let the connection write what it has before the next frame: hyper keeps taking frames
        // from an always-ready body until its write buffer is full, which for frames of a few
        // hundred compressed bytes would hold back the first byte for thousands of frames.
        tokio::task::yield_now().await;
        loop {
            let enc = encoder.as_mut()?;
            match body.frame().await {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: none of ours has any
                    };
                    // A sync flush per frame: every frame in is a frame out, so the encoded
                    // body streams as the plain one would, and a client that went away is
                    // noticed at the next write instead of after compressing the whole body
                    // (highly compressible data could otherwise emit nothing for gigabytes).
                    // Writing to a `Vec` cannot fail; should it, the body ends short, visibly.
                    enc.write_all(&data).ok()?;
                    enc.flush().ok()?;
                    let out = std::mem::take(enc.get_mut());
                    if !out.is_empty() {
                        return Some((Ok(Frame::data(Bytes::from(out))), (body, encoder)));
                    }
                }
                Some(Err(never)) => match never {},
                None => {
                    let out = encoder.take()?.finish().ok()?;
                    return Some((Ok(Frame::data(Bytes::from(out))), (body, None)));
                }
            }
        }
    });
    StreamBody::new(frames).boxed_unsync()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn accepts(value: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, value.parse().unwrap());
        accepts_gzip(&headers)
    }

    #[test]
    fn accept_encoding() {
        assert!(accepts("gzip"));
        assert!(accepts("br, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("br, deflate"));
        assert!(!accepts("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
