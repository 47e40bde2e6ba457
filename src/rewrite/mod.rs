//! Paging links rewritten: `@odata.nextLink` (and `@odata.context`, `@odata.deltaLink`) in JSON
//! responses, and the `Location` header, point at the API's own host; they are rewritten to the
//! same route on the proxy, so a tool that follows them keeps talking to the proxy (which holds
//! the token and the limits) instead of leaving for Microsoft's host with no credentials.
//!
//! - [`LinkRewriter`]: the `from` (API base URL) -> `to` (the same route on the proxy) pair.
//! - [`plan`] / [`fix_headers`]: which responses are rewritten (JSON only; identity, gzip,
//!   deflate or br), and the header changes that follow (no `Content-Length`, decoded bodies lose
//!   `Content-Encoding`, a strong `ETag` becomes weak).
//! - [`wrap`]: the one call the proxy makes; it returns a [`ResponseStream`].
//! - `matcher.rs`: the streaming byte state machine and [`RewriteBody`]; `decode.rs`: streaming
//!   decoders.
//!
//! The rewrite streams with bounded memory for any body size and leaves every other byte as it
//! came: frames with nothing to replace pass through as the same `Bytes`.
//!
//! Escaped slashes (`https:\/\/api...`) are matched too, and the replacement is escaped alike.
//! serde_json, System.Text.Json and Newtonsoft never escape `/`, but JSON allows it and some
//! encoders (PHP's) do, so a link spelled that way is not silently left pointing away.

mod decode;
mod matcher;
#[cfg(test)]
mod tests;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG};
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};

use decode::DecodeBody;
use tokio::time::Instant;

use crate::hunting::body::HuntingBody;
pub(crate) use matcher::RewriteBody;

/// The error of a rewritten body: the upstream's (a broken connection, the idle timeout), or a
/// decoder's (`io::Error`, `InvalidData`).
pub(crate) use crate::idle::BoxError;
use crate::idle::IdleBody;
use hyper::body::Incoming;

/// The upstream body a response stream wraps by default (see `upstream::UpstreamBody`).
type UpstreamBody = IdleBody<Incoming>;

/// The API's base URL as links spell it: made once per API (see [`LinkBase::to`]).
#[derive(Debug, Clone)]
pub struct LinkBase {
    /// `from` without a trailing `/`; its scheme and host lowercased (compared case-insensitively).
    from: Bytes,
    /// How many leading bytes of `from` are scheme and authority.
    ci_len: usize,
}

impl LinkBase {
    /// `from`: the API's base URL as it appears in links, e.g.
    /// `https://api.security.microsoft.com` (a path is allowed: `https://graph.microsoft.com/v1.0`).
    /// A trailing `/` is ignored.
    pub fn new(from: &str) -> Self {
        let from = from.trim_end_matches('/');
        // Scheme and authority end at the first `/` after `://` (hosts are case-insensitive;
        // paths are not).
        let ci_len = from.find("://").map_or(0, |s| {
            from[s + 3..].find('/').map_or(from.len(), |p| s + 3 + p)
        });
        let mut lowered = from.as_bytes().to_vec();
        lowered[..ci_len].make_ascii_lowercase();
        LinkBase {
            from: Bytes::from(lowered),
            ci_len,
        }
    }

    /// The rewriter of one response: links to this base go to `to` instead, e.g.
    /// `http://127.0.0.1:8080/contoso`, or `http://127.0.0.1:8080` for header-mode clients. A
    /// trailing `/` is ignored. Costs no copy of `to` in the usual case (nothing to escape).
    pub fn to(&self, to: String) -> LinkRewriter {
        let mut to = to;
        to.truncate(to.trim_end_matches('/').len());
        let to = Bytes::from(to);
        let to_json = if to.iter().any(|&b| needs_json_escape(b)) {
            json_escape(&to, false)
        } else {
            to.clone()
        };
        LinkRewriter {
            base: self.clone(),
            to,
            to_json,
        }
    }
}

/// The API's base URL as links spell it, and the same route on the proxy.
#[derive(Debug, Clone)]
pub struct LinkRewriter {
    base: LinkBase,
    /// `to` as given (trailing `/` trimmed), for headers.
    to: Bytes,
    /// `to` as a JSON string's content.
    to_json: Bytes,
}

impl LinkRewriter {
    /// [`LinkBase::new`]`(from)`[`.to`](LinkBase::to)`(to)`.
    pub fn new(from: &str, to: &str) -> Self {
        LinkBase::new(from).to(to.to_owned())
    }

    fn from(&self) -> &Bytes {
        &self.base.from
    }

    fn ci_len(&self) -> usize {
        self.base.ci_len
    }

    /// `to` as a JSON string's content; with `slashes`, each `/` escaped as `\/` (for links the
    /// API spelled that way; rare, so made when needed).
    fn to_json(&self, slashes: bool) -> Bytes {
        if slashes {
            json_escape(&self.to, true)
        } else {
            self.to_json.clone()
        }
    }

    /// `value` starts with `from` and then `/`, `?`, `#` or nothing: the length matched.
    fn prefix_len(&self, value: &[u8]) -> Option<usize> {
        let from = self.from();
        let n = from.len();
        if n == 0 || value.len() < n {
            return None;
        }
        let ci_len = self.ci_len();
        let (head, tail) = value[..n].split_at(ci_len);
        let same = head.eq_ignore_ascii_case(&from[..ci_len]) && tail == &from[ci_len..];
        (same && matches!(value.get(n), None | Some(b'/' | b'?' | b'#'))).then_some(n)
    }
}

fn needs_json_escape(b: u8) -> bool {
    matches!(b, b'"' | b'\\' | 0..=0x1f)
}

/// A URL as the content of a JSON string (a URL never needs it, but a config might be odd).
fn json_escape(s: &[u8], slashes: bool) -> Bytes {
    let mut out = Vec::with_capacity(s.len() + 8);
    for &b in s {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            b'/' if slashes => out.extend_from_slice(b"\\/"),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    Bytes::from(out)
}

/// How a response's body is sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Not JSON, a byte range, or an encoding the proxy can't read: untouched.
    Passthrough,
    /// Identity JSON: links rewritten.
    Rewrite,
    /// Encoded JSON: decoded, links rewritten, sent as identity.
    Decode(Encoding),
}

/// A content coding the proxy decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    /// RFC 9110's zlib format, or raw deflate as some servers send it.
    Deflate,
    Brotli,
}

/// What to do with a response's body, from its headers.
pub(crate) fn plan(headers: &HeaderMap) -> Plan {
    // A partial body's offsets would shift if its length changed.
    if !is_json(headers) || headers.contains_key(CONTENT_RANGE) {
        return Plan::Passthrough;
    }
    match content_encoding(headers) {
        Some(None) => Plan::Rewrite,
        Some(Some(encoding)) => Plan::Decode(encoding),
        None => Plan::Passthrough,
    }
}

/// `application/json` or `application/*+json`, in UTF-8 (the byte matcher's alphabet).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    let json = sub.eq_ignore_ascii_case("json")
        || sub
            .len()
            .checked_sub(5)
            .and_then(|at| sub.get(at..))
            .is_some_and(|end| end.eq_ignore_ascii_case("+json"));
    if !kind.eq_ignore_ascii_case("application") || !json {
        return false;
    }
    parts.all(|param| match param.split_once('=') {
        Some((name, charset)) if name.trim().eq_ignore_ascii_case("charset") => {
            let charset = charset.trim().trim_matches('"');
            ["utf-8", "utf8", "us-ascii"]
                .iter()
                .any(|c| charset.eq_ignore_ascii_case(c))
        }
        _ => true,
    })
}

/// `Some(None)`: identity; `Some(Some(_))`: one coding the proxy decodes; `None`: anything else
/// (unknown, or stacked codings).
fn content_encoding(headers: &HeaderMap) -> Option<Option<Encoding>> {
    let mut found = None;
    for value in headers.get_all(CONTENT_ENCODING) {
        for coding in value.to_str().ok()?.split(',') {
            let coding = coding.trim();
            let encoding = if coding.is_empty() || coding.eq_ignore_ascii_case("identity") {
                continue;
            } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                Encoding::Gzip
            } else if coding.eq_ignore_ascii_case("deflate") {
                Encoding::Deflate
            } else if coding.eq_ignore_ascii_case("br") {
                Encoding::Brotli
            } else {
                return None;
            };
            if found.replace(encoding).is_some() {
                return None;
            }
        }
    }
    Some(found)
}

/// The header changes `plan` needs: the length is unknown once links may change, a decoded body
/// has no coding, and a changed representation's strong validator becomes weak (RFC 9110
/// §8.8.1), as nginx does when it compresses.
pub(crate) fn fix_headers(plan: &Plan, headers: &mut HeaderMap) {
    match plan {
        Plan::Passthrough => return,
        Plan::Rewrite => {}
        Plan::Decode(_) => {
            headers.remove(CONTENT_ENCODING);
        }
    }
    headers.remove(CONTENT_LENGTH);
    if let Some(etag) = headers.get(ETAG) {
        if etag.as_bytes().first() == Some(&b'"') {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(weak) = HeaderValue::from_bytes(&weak) {
                headers.insert(ETAG, weak);
            }
        }
    }
}

/// A `Location` (or `Content-Location`) value on the API, rewritten to the proxy: absolute
/// (`https://api.../x`, host case-insensitive) or an absolute path under `from`'s path
/// (`/api/x`, which the client would otherwise resolve against the proxy's root). `None`: not
/// the API's.
pub(crate) fn rewrite_location(
    value: &HeaderValue,
    rewriter: &LinkRewriter,
) -> Option<HeaderValue> {
    let value = value.as_bytes();
    let rest = if let Some(n) = rewriter.prefix_len(value) {
        &value[n..]
    } else if value.starts_with(b"/") && !value.starts_with(b"//") {
        let path = &rewriter.from()[rewriter.ci_len()..];
        let ok = value.starts_with(path)
            && matches!(value.get(path.len()), None | Some(b'/' | b'?' | b'#'));
        if !ok || rewriter.ci_len() == 0 {
            return None;
        }
        &value[path.len()..]
    } else {
        return None;
    };
    let mut out = rewriter.to.to_vec();
    out.extend_from_slice(rest);
    HeaderValue::from_bytes(&out).ok()
}

pin_project_lite::pin_project! {
    #[project = StreamProj]
    #[derive(Debug)]
    enum Stream<B> {
        Passthrough { #[pin] body: B },
        // Boxed too: one allocation is cheaper than moving the rewriter's state with every
        // move of the response.
        Rewrite { body: Pin<Box<RewriteBody<B>>> },
        // Boxed: the decoders' state is large and encoded JSON rare; every response moves this.
        Decode { body: Pin<Box<RewriteBody<DecodeBody<B>>>> },
        // Graph's hunting answer in the legacy shape (see `crate::hunting`); boxed like the
        // rewriters, and decoded first should Graph encode it unasked.
        Hunting { body: Pin<Box<HuntingBody<B>>> },
        DecodeHunting { body: Pin<Box<HuntingBody<DecodeBody<B>>>> },
        // An answer made here whole (Graph's error, reshaped).
        Whole { data: Option<Bytes> },
    }
}

pin_project_lite::pin_project! {
    /// An upstream response body as the client gets it: untouched, rewritten, or decoded and
    /// rewritten (see [`plan`]). One concrete type, so nothing is boxed per response.
    #[derive(Debug)]
    pub struct ResponseStream<B = UpstreamBody> {
        #[pin]
        inner: Stream<B>,
        plan: Plan,
    }
}

/// The body as it is, for responses with nothing to rewrite (no rewriter is built for them).
pub(crate) fn passthrough(body: UpstreamBody) -> ResponseStream {
    ResponseStream {
        inner: Stream::Passthrough { body },
        plan: Plan::Passthrough,
    }
}

/// The body as `plan` (from [`plan`] on these headers) says, with the headers fixed to match.
pub(crate) fn wrap<B>(
    body: B,
    plan: Plan,
    headers: &mut HeaderMap,
    rewriter: &LinkRewriter,
) -> ResponseStream<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    fix_headers(&plan, headers);
    let inner = match plan {
        Plan::Passthrough => Stream::Passthrough { body },
        Plan::Rewrite => Stream::Rewrite {
            body: Box::pin(RewriteBody::new(body, rewriter.clone())),
        },
        Plan::Decode(encoding) => Stream::Decode {
            body: Box::pin(RewriteBody::new(
                DecodeBody::new(body, encoding),
                rewriter.clone(),
            )),
        },
    };
    ResponseStream { inner, plan }
}

/// Graph's 200 answer to a legacy hunting query, translated into the legacy shape as it streams
/// (`sent_at`: when the query went to Graph, for `Stats.ExecutionTime`). Decoded first if Graph
/// encoded it; an encoding the proxy can't read ends the body with an error.
pub(crate) fn hunting<B>(body: B, headers: &HeaderMap, sent_at: Instant) -> ResponseStream<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (inner, plan) = match content_encoding(headers) {
        Some(Some(encoding)) => (
            Stream::DecodeHunting {
                body: Box::pin(HuntingBody::new(DecodeBody::new(body, encoding), sent_at)),
            },
            Plan::Decode(encoding),
        ),
        // Unreadable codings reach the translator as they are, which refuses them.
        _ => (
            Stream::Hunting {
                body: Box::pin(HuntingBody::new(body, sent_at)),
            },
            Plan::Rewrite,
        ),
    };
    ResponseStream { inner, plan }
}

/// A body made here, whole.
pub(crate) fn whole<B>(data: Bytes) -> ResponseStream<B> {
    ResponseStream {
        inner: Stream::Whole { data: Some(data) },
        plan: Plan::Passthrough,
    }
}

#[cfg(test)]
/// [`wrap`], planned from the headers (tests, other sources).
pub(crate) fn wrap_body<B>(
    body: B,
    headers: &mut HeaderMap,
    rewriter: &LinkRewriter,
) -> ResponseStream<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let plan = plan(headers);
    wrap(body, plan, headers, rewriter)
}

impl<B> ResponseStream<B> {
    pub fn plan(&self) -> Plan {
        self.plan
    }

    /// The most bytes held back between frames so far (0 when not rewriting).
    pub fn held_high_water(&self) -> usize {
        match &self.inner {
            Stream::Passthrough { .. } | Stream::Whole { .. } => 0,
            Stream::Rewrite { body } => body.held_high_water(),
            Stream::Decode { body } => body.held_high_water(),
            Stream::Hunting { body } => body.held_high_water(),
            Stream::DecodeHunting { body } => body.held_high_water(),
        }
    }
}

impl<B> Body for ResponseStream<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().inner.project() {
            StreamProj::Passthrough { body } => body.poll_frame(cx).map_err(Into::into),
            StreamProj::Rewrite { body } => body.as_mut().poll_frame(cx).map_err(Into::into),
            StreamProj::Decode { body } => body.as_mut().poll_frame(cx),
            StreamProj::Hunting { body } => body.as_mut().poll_frame(cx),
            StreamProj::DecodeHunting { body } => body.as_mut().poll_frame(cx),
            StreamProj::Whole { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Stream::Passthrough { body } => body.is_end_stream(),
            Stream::Rewrite { body } => body.is_end_stream(),
            Stream::Decode { body } => body.is_end_stream(),
            Stream::Hunting { body } => body.is_end_stream(),
            Stream::DecodeHunting { body } => body.is_end_stream(),
            Stream::Whole { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Stream::Passthrough { body } => body.size_hint(),
            Stream::Rewrite { body } => body.size_hint(),
            Stream::Decode { body } => body.size_hint(),
            Stream::Hunting { body } => body.size_hint(),
            Stream::DecodeHunting { body } => body.size_hint(),
            Stream::Whole { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
