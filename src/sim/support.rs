//! Small helpers shared by the simulator's handlers: the response body type, JSON and
//! Defender-shaped error responses, body reading with hashing, ids and timestamps.
//!
//! Kept free of simulator state so every handler builds responses the same way and none needs
//! `Response::builder()` (whose `Result` would invite an `unwrap` on the request path).

use std::convert::Infallible;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use ring::digest;

/// Every simulator response body: a full buffer or a stream, never failing.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Content type the Defender API puts on its OData responses.
pub(crate) const ODATA_JSON: &str = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8";
/// Content type of plain JSON answers (errors, Entra, control endpoints).
pub(crate) const JSON: &str = "application/json; charset=utf-8";

/// A whole-buffer body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A response with the given status, content type and body.
pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Body,
) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A JSON response; serialising a `Value` cannot fail, so no error path is needed.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    response(status, JSON, full(value.to_string()))
}

/// An OData JSON response, as the Defender API sends its collections and entities.
pub(crate) fn odata(value: &serde_json::Value) -> Response<Body> {
    response(StatusCode::OK, ODATA_JSON, full(value.to_string()))
}

/// The Defender API's error shape: `{"error":{"code","message","target"}}`, where `target` is a
/// tracking id, random per response like the real API's.
pub(crate) fn defender_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message, "target": uuid()}}),
    )
}

/// A random version-4 style UUID string (not cryptographic; ids and trace ids only).
pub(crate) fn uuid() -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        0x8000 | fastrand::u16(..0x4000),
        fastrand::u64(..1 << 48)
    )
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    // A table, not `format!` per byte: every recorded request hashes its body.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// `2026-01-05T08:00:00Z` for a Unix time.
pub(crate) fn iso8601(unix_secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(unix_secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// `2026-01-05 08:00:00Z`, the form Entra ID uses in its error bodies.
pub(crate) fn entra_timestamp(unix_secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(unix_secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}Z")
}

/// Unix seconds to UTC calendar fields (Howard Hinnant's days-to-civil), to avoid a date crate.
fn civil(unix_secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// What [`read_hashed`] learned from a request body.
#[derive(Debug)]
pub(crate) struct ReadBody {
    pub(crate) len: u64,
    pub(crate) sha256: String,
    /// The body itself, when it was no longer than the caller's `keep` limit.
    pub(crate) kept: Option<Bytes>,
}

/// Reads a body to its end, hashing as it goes so large uploads are never held in memory; keeps
/// the bytes only up to `keep` (for handlers that parse small JSON or form bodies).
pub(crate) async fn read_hashed<B>(mut body: B, keep: usize) -> Result<ReadBody, B::Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut len = 0u64;
    let mut kept = Some(BytesMut::new());
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers carry no body bytes
        };
        ctx.update(&data);
        len += data.len() as u64;
        if let Some(buf) = kept.as_mut() {
            if buf.len() + data.len() <= keep {
                buf.extend_from_slice(&data);
            } else {
                kept = None;
            }
        }
    }
    Ok(ReadBody {
        len,
        sha256: hex(ctx.finish().as_ref()),
        kept: kept.map(BytesMut::freeze),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn calendar_conversion() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_767_600_000), "2026-01-05T08:00:00Z");
        assert_eq!(entra_timestamp(951_782_400), "2000-02-29 00:00:00Z");
    }

    #[test]
    fn uuid_shape() {
        let id = uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
