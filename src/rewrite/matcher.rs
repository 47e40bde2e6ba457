//! The link matcher: a byte state machine that finds `"…@odata.nextLink" : "<from>` (and the
//! context and delta link) in a JSON stream and swaps `<from>` for the proxy's base URL.
//!
//! Only the `<from>` prefix of a value is ever replaced, so the key, the whitespace and the rest
//! of the value are passed on as soon as they are seen: the one thing held back across frames is
//! a value's start while it may still turn out to be `<from>` (at most `2 * from.len() + 1`
//! bytes, escaped slashes counted). Frames where nothing is replaced leave as the same `Bytes`.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::LinkRewriter;

/// The keys whose values are links, each with its closing quote. Matched as key *suffixes*:
/// `"@odata.nextLink"` is the response's own, `"members@odata.nextLink"` is the OData annotation
/// of a nested collection (Graph `$expand`), the same kind of link. A string followed by `:` is a
/// key in valid JSON, and the closing quote here directly follows a letter, so it cannot be an
/// escaped one: no key inside a string value can match.
const KEYS: [&[u8]; 3] = [
    b"@odata.nextLink\"",
    b"@odata.context\"",
    b"@odata.deltaLink\"",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for the `@` that starts a key suffix.
    Scan,
    /// `pos` bytes of the keys in the `cand` bit set matched.
    Key { pos: u8, cand: u8 },
    /// After a key: whitespace, then `:`.
    Colon,
    /// After the colon: whitespace, then the value's opening quote.
    Quote,
    /// `pos` bytes of `from` matched; `backslash`: a `\` was read where `from` has `/`.
    Value { pos: usize, backslash: bool },
    /// All of `from` matched; the next byte says whether it was the whole base URL.
    End { backslash: bool },
}

/// JSON insignificant whitespace.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The state carried from one frame to the next.
#[derive(Debug)]
pub(crate) struct Matcher {
    links: LinkRewriter,
    state: State,
    /// The current value's bytes from earlier frames, while they may still be `from`.
    held: Vec<u8>,
    /// Stream offset of the current frame's first byte.
    offset: u64,
    /// Stream offset of the current value's first byte (valid in `Value`/`End`).
    value_start: u64,
    /// Stream offset just past the matched `from` (valid in `End`).
    from_end: u64,
    /// The value spelled a `/` of `from` as `\/`: the replacement is escaped the same way.
    escaped: bool,
    /// The most bytes `held` ever had: the bounded-memory promise, checked by tests.
    high_water: usize,
}

impl Matcher {
    pub(crate) fn new(links: LinkRewriter) -> Self {
        let cap = 2 * links.from().len() + 1;
        Matcher {
            links,
            state: State::Scan,
            held: Vec::with_capacity(cap),
            offset: 0,
            value_start: 0,
            from_end: 0,
            escaped: false,
            high_water: 0,
        }
    }

    pub(crate) fn high_water(&self) -> usize {
        self.high_water
    }

    /// Bytes are held back and must still be flushed.
    pub(crate) fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// One frame in, what can be sent now out: `data` itself when nothing was replaced or held.
    pub(crate) fn feed(&mut self, data: Bytes) -> Bytes {
        let len = data.len();
        let base = self.offset;
        self.offset += len as u64;
        // Built only when a link is replaced or held bytes must go first.
        let mut out: Option<BytesMut> = None;
        // `data[..emitted]` is already in `out`, or was the replaced `from`.
        let mut emitted = 0usize;
        // A counted handle, not a copy: `self` is borrowed mutably below.
        let from = self.links.from().clone();
        let mut i = 0usize;
        while i < len {
            match self.state {
                State::Scan => match memchr::memchr(b'@', &data[i..]) {
                    None => i = len,
                    Some(k) => {
                        i += k + 1;
                        self.state = State::Key {
                            pos: 1,
                            cand: 0b111,
                        };
                    }
                },
                State::Key { pos, cand } => {
                    let b = data[i];
                    let mut next = 0u8;
                    let mut complete = false;
                    for (k, key) in KEYS.iter().enumerate() {
                        if cand & (1 << k) != 0 && key[usize::from(pos)] == b {
                            if usize::from(pos) + 1 == key.len() {
                                complete = true;
                            } else {
                                next |= 1 << k;
                            }
                        }
                    }
                    if complete {
                        self.state = State::Colon;
                        i += 1;
                    } else if next != 0 {
                        self.state = State::Key {
                            pos: pos + 1,
                            cand: next,
                        };
                        i += 1;
                    } else {
                        // Not consumed: this byte may be the `@` of the next key.
                        self.state = State::Scan;
                    }
                }
                State::Colon => {
                    let b = data[i];
                    if b == b':' {
                        self.state = State::Quote;
                        i += 1;
                    } else if is_ws(b) {
                        i += 1;
                    } else {
                        self.state = State::Scan;
                    }
                }
                State::Quote => {
                    let b = data[i];
                    if b == b'"' && !from.is_empty() {
                        i += 1;
                        self.value_start = base + i as u64;
                        self.escaped = false;
                        self.state = State::Value {
                            pos: 0,
                            backslash: false,
                        };
                    } else if is_ws(b) {
                        i += 1;
                    } else {
                        // `null`, a number, or a value that is not a link we know.
                        self.state = State::Scan;
                    }
                }
                State::Value { pos, backslash } => {
                    let b = data[i];
                    let want = from[pos];
                    let matched = if backslash {
                        b == b'/'
                    } else if want == b'/' && b == b'\\' {
                        self.state = State::Value {
                            pos,
                            backslash: true,
                        };
                        i += 1;
                        continue;
                    } else if pos < self.links.ci_len() {
                        // Scheme and host: case-insensitive; `from`'s are stored lowercase.
                        b.to_ascii_lowercase() == want
                    } else {
                        b == want
                    };
                    if !matched {
                        self.mismatch(base, &mut out);
                        continue;
                    }
                    self.escaped |= backslash;
                    i += 1;
                    if pos + 1 == from.len() {
                        self.from_end = base + i as u64;
                        self.state = State::End { backslash: false };
                    } else {
                        self.state = State::Value {
                            pos: pos + 1,
                            backslash: false,
                        };
                    }
                }
                State::End { backslash } => {
                    // `from` is a whole base URL only if a path, a query or the value's end
                    // follows: `https://api.example.com.evil.example/` is another host.
                    let b = data[i];
                    let accept = if backslash {
                        b == b'/'
                    } else if b == b'\\' {
                        self.state = State::End { backslash: true };
                        i += 1;
                        continue;
                    } else {
                        matches!(b, b'/' | b'?' | b'"')
                    };
                    if accept {
                        emitted = self.accept(&data, base, emitted, &mut out);
                    } else {
                        self.mismatch(base, &mut out);
                    }
                    // Either way this byte is ordinary text (never an `@`): Scan skips it.
                }
            }
        }

        // A value still being matched: keep its bytes from this frame for the next one.
        let keep_end = match self.state {
            State::Value { .. } | State::End { .. } => {
                let start = self.value_start.saturating_sub(base) as usize;
                self.held.extend_from_slice(&data[start..]);
                self.high_water = self.high_water.max(self.held.len());
                start
            }
            _ => len,
        };
        match out {
            Some(mut out) => {
                out.extend_from_slice(&data[emitted..keep_end]);
                out.freeze()
            }
            // Nothing replaced, so nothing was emitted out of order: `emitted` is 0.
            None if keep_end == len => data,
            None => data.slice(..keep_end),
        }
    }

    /// The value was not a link to `from`: its held bytes go out as they came.
    fn mismatch(&mut self, base: u64, out: &mut Option<BytesMut>) {
        if self.value_start < base {
            // The value began in an earlier frame, so nothing of this frame was emitted yet
            // and the held bytes go first.
            let held = &self.held;
            out.get_or_insert_with(|| BytesMut::with_capacity(held.len()))
                .extend_from_slice(held);
        }
        self.held.clear();
        self.state = State::Scan;
    }

    /// `from` matched: emit everything before it, then `to`; returns the new `emitted`.
    fn accept(
        &mut self,
        data: &Bytes,
        base: u64,
        emitted: usize,
        out: &mut Option<BytesMut>,
    ) -> usize {
        let to = self.links.to_json(self.escaped);
        let out = out.get_or_insert_with(|| BytesMut::with_capacity(data.len() + to.len()));
        if self.value_start >= base {
            out.extend_from_slice(&data[emitted..(self.value_start - base) as usize]);
        }
        out.extend_from_slice(&to);
        let emitted = if self.from_end >= base {
            (self.from_end - base) as usize
        } else {
            // A `\` after `from`, held from the last frame, is not part of `from`: keep it.
            out.extend_from_slice(&self.held[(self.from_end - self.value_start) as usize..]);
            0
        };
        self.held.clear();
        self.state = State::Scan;
        emitted
    }

    /// End of the data: whatever is held was not a link after all (the body was cut short).
    pub(crate) fn finish(&mut self) -> Option<Bytes> {
        self.state = State::Scan;
        if self.held.is_empty() {
            return None;
        }
        let tail = Bytes::copy_from_slice(&self.held);
        self.held.clear();
        Some(tail)
    }
}

pin_project_lite::pin_project! {
    /// A JSON body with its API links pointed at the proxy, frame by frame.
    ///
    /// Memory is bounded by the largest frame plus the held-back value start; frames without a
    /// link pass through as the same `Bytes`. Trailers follow the last data, as they came.
    #[derive(Debug)]
    pub struct RewriteBody<B> {
        #[pin]
        body: B,
        matcher: Matcher,
        trailers: Option<HeaderMap>,
        // The inner body has ended (or sent its trailers): never polled again.
        done: bool,
    }
}

impl<B> RewriteBody<B> {
    pub(crate) fn new(body: B, rewriter: LinkRewriter) -> Self {
        RewriteBody {
            body,
            matcher: Matcher::new(rewriter),
            trailers: None,
            done: false,
        }
    }

    /// The most bytes ever held back between frames (a debug counter for the memory bound).
    pub(crate) fn held_high_water(&self) -> usize {
        self.matcher.high_water()
    }
}

impl<B: Body<Data = Bytes>> Body for RewriteBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        loop {
            if *this.done || this.body.is_end_stream() {
                *this.done = true;
                if let Some(tail) = this.matcher.finish() {
                    return Poll::Ready(Some(Ok(Frame::data(tail))));
                }
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = this.matcher.feed(data);
                        // An all-held frame yields nothing now; read on.
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body; the held bytes must go out before them.
                        *this.trailers = frame.into_trailers().ok();
                        *this.done = true;
                    }
                },
                Some(Err(err)) => {
                    // The body is broken: report it once, and send nothing after it.
                    *this.done = true;
                    let _ = this.matcher.finish();
                    return Poll::Ready(Some(Err(err)));
                }
                None => *this.done = true,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.trailers.is_none()
            && !self.matcher.holding()
            && (self.done || self.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        // A replaced link changes the length, and by how much is unknown until it is seen.
        if self.is_end_stream() {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }
}
