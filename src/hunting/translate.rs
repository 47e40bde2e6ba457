//! Graph's `runHuntingQuery` answer translated, streaming, into the legacy hunting answer.
//!
//! Graph answers `{"@odata.context": "...", "schema": [{"name": .., "type": ..}], "results":
//! [..]}`; legacy tools expect `{"Schema": [{"Name": .., "Type": ..}], "Results": [..], "Stats":
//! {"ExecutionTime": <seconds>}}`. [`Translator`] is a state machine over the bytes of the body:
//!
//! - the top-level members go out in the order they arrive, `schema` renamed `Schema` and
//!   `results` renamed `Results` (either case accepted); every other member (`@odata.context`,
//!   unknown keys) is dropped, its value checked and skipped;
//! - `Results` passes through byte for byte, as zero-copy slices of the input frames; its rows
//!   are checked structurally only (strings, escapes, matched brackets, depth), not their
//!   scalars: Graph writes them and the client parses them;
//! - each schema entry is held (at most [`MAX_ENTRY`] bytes), checked with `serde_json`, and
//!   goes out with its top-level keys `name`/`type` renamed `Name`/`Type`, values unchanged;
//! - [`Translator::finish`] appends `"Stats": {"ExecutionTime": <s>}` (and empty `Schema` or
//!   `Results` if Graph sent none) and closes the object.
//!
//! What is held between frames never exceeds [`HELD_BOUND`] bytes, whatever the body size.
//! Invalid JSON is an error, never a panic; after an error the translator only errors.
//! [`HuntingBody`] applies a translator to an `http_body::Body`, frame by frame.

// Not wired into the proxy yet (the rest of issue 13 does that); the tests use all of it.
#![cfg_attr(not(test), allow(dead_code))]

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame};

/// The longest top-level key held; longer keys are never `schema`/`results`, so they are dropped.
pub(crate) const MAX_KEY: usize = 256;
/// The longest schema entry (and dropped scalar value) accepted.
pub(crate) const MAX_ENTRY: usize = 8 * 1024;
/// The deepest nesting accepted inside a value (serde_json's default recursion limit).
pub(crate) const MAX_DEPTH: usize = 128;
/// The most bytes a [`Translator`] ever holds: a key (with its quotes), an entry, a bracket stack.
pub(crate) const HELD_BOUND: usize = MAX_KEY + 2 + MAX_ENTRY + MAX_DEPTH;

/// The boxed error of a [`HuntingBody`].
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a Graph hunting answer could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TranslateError {
    /// The body is not the JSON object expected.
    #[error("Graph hunting answer invalid at byte {offset}: {what}")]
    Invalid { what: &'static str, offset: u64 },
    /// The body ended before the object did.
    #[error("Graph hunting answer ended before its JSON object did")]
    Truncated,
}

/// Which top-level member a value belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Schema,
    Results,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the top-level `{`.
    Start,
    /// After `{`: a key or `}`.
    FirstKey,
    /// After `,`: a key.
    Key,
    /// Inside a top-level key.
    InKey,
    /// After a key: `:`.
    Colon,
    /// After `:`: the value.
    Value,
    /// Inside a dropped string value.
    SkipString,
    /// Inside a dropped object or array.
    SkipContainer,
    /// Inside a dropped number or literal.
    SkipScalar,
    /// After `"schema": [`: an entry or `]`.
    SchemaFirst,
    /// Inside a schema entry.
    SchemaEntry,
    /// After a schema entry: `,` or `]`.
    SchemaAfter,
    /// After a `,` in the schema: an entry.
    SchemaNext,
    /// Inside the results array (passed through).
    Results,
    /// After a top-level value: `,` or `}`.
    AfterValue,
    /// After the top-level `}`: whitespace only.
    Done,
    /// An error was returned.
    Failed,
}

/// The structure of a value being skipped or passed through: strings and matched brackets.
#[derive(Debug, Default)]
struct Scan {
    stack: Vec<u8>,
    in_string: bool,
    escape: bool,
}

impl Scan {
    fn open(&mut self, open: u8) {
        self.stack.clear();
        self.in_string = false;
        self.escape = false;
        self.stack.push(closer(open));
    }

    fn string(&mut self) {
        self.stack.clear();
        self.in_string = true;
        self.escape = false;
    }

    /// One byte; true when the outermost container (or the string of [`Scan::string`]) ended.
    #[inline]
    fn step(&mut self, b: u8) -> Result<bool, &'static str> {
        if self.in_string {
            if self.escape {
                check_escape(b)?;
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_string = false;
                return Ok(self.stack.is_empty());
            } else if b < 0x20 {
                return Err("control character in a string");
            }
            return Ok(false);
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err("nested too deep");
                }
                self.stack.push(closer(b));
            }
            b'}' | b']' => {
                if self.stack.pop() != Some(b) {
                    return Err("mismatched bracket");
                }
                return Ok(self.stack.is_empty());
            }
            _ => {}
        }
        Ok(false)
    }
}

fn closer(open: u8) -> u8 {
    if open == b'{' {
        b'}'
    } else {
        b']'
    }
}

fn check_escape(b: u8) -> Result<(), &'static str> {
    match b {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u' => Ok(()),
        _ => Err("invalid escape in a string"),
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A JSON string's raw content (between its quotes) equal to `lit`, escapes decoded.
fn key_is(raw: &[u8], lit: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw == lit.as_bytes();
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).is_ok_and(|s| s == lit)
}

/// A schema entry (a checked JSON object) with its top-level keys `name`/`type` renamed.
fn rename_keys(entry: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry.len());
    let (mut depth, mut in_string, mut escape, mut expect_key) = (0usize, false, false, false);
    let mut key_start = None;
    for (i, &b) in entry.iter().enumerate() {
        if in_string {
            if escape {
                escape = false;
            } else if b == b'\\' {
                escape = true;
            } else if b == b'"' {
                in_string = false;
                if let Some(start) = key_start.take() {
                    let key = &entry[start..i];
                    if key_is(key, "name") {
                        out.extend_from_slice(b"Name");
                    } else if key_is(key, "type") {
                        out.extend_from_slice(b"Type");
                    } else {
                        out.extend_from_slice(key);
                    }
                    out.push(b'"');
                    continue;
                }
            }
            if key_start.is_none() {
                out.push(b);
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                if depth == 1 && expect_key {
                    key_start = Some(i + 1);
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1;
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_key = true,
            _ => {}
        }
        out.push(b);
    }
    out
}

/// The streaming translation of one Graph hunting answer (see the module docs).
#[derive(Debug)]
pub(crate) struct Translator {
    state: State,
    kind: Kind,
    /// The key being read, with its quotes (at most `MAX_KEY + 2` bytes).
    key: Vec<u8>,
    key_escape: bool,
    key_overflow: bool,
    /// The schema entry or dropped scalar being read (at most `MAX_ENTRY` bytes).
    entry: Vec<u8>,
    scan: Scan,
    /// Top-level members written so far (for the commas).
    members: usize,
    /// Schema entries written so far (for the commas).
    entries: usize,
    seen_schema: bool,
    seen_results: bool,
    /// Input bytes before the current frame (for error offsets).
    offset: u64,
    high_water: usize,
}

impl Default for Translator {
    fn default() -> Self {
        Self::new()
    }
}

impl Translator {
    pub(crate) fn new() -> Self {
        Translator {
            state: State::Start,
            kind: Kind::Drop,
            key: Vec::new(),
            key_escape: false,
            key_overflow: false,
            entry: Vec::new(),
            scan: Scan::default(),
            members: 0,
            entries: 0,
            seen_schema: false,
            seen_results: false,
            offset: 0,
            high_water: 0,
        }
    }

    /// The bytes held now (a partial key, a partial schema entry, a bracket stack).
    pub(crate) fn held(&self) -> usize {
        self.key.len() + self.entry.len() + self.scan.stack.len()
    }

    /// The most bytes ever held (at most [`HELD_BOUND`]).
    pub(crate) fn high_water(&self) -> usize {
        self.high_water
    }

    /// Translates the next bytes of the body, appending the output to `out` (slices of `input`
    /// where they pass through unchanged).
    pub(crate) fn feed(
        &mut self,
        input: Bytes,
        out: &mut Vec<Bytes>,
    ) -> Result<(), TranslateError> {
        if self.state == State::Failed {
            return Err(TranslateError::Invalid {
                what: "an earlier error",
                offset: self.offset,
            });
        }
        let result = self.feed_inner(&input, out);
        self.high_water = self.high_water.max(self.held());
        if result.is_err() {
            self.state = State::Failed;
            self.key = Vec::new();
            self.entry = Vec::new();
            self.scan = Scan::default();
        }
        self.offset += input.len() as u64;
        result
    }

    /// The end of the body: the `Stats` member and the closing `}`.
    ///
    /// `execution_time` is how long the query took (the proxy measures it from the request
    /// sent); it goes out in seconds with millisecond precision.
    pub(crate) fn finish(self, execution_time: Duration) -> Result<Bytes, TranslateError> {
        match self.state {
            State::Done => {}
            State::Failed => {
                return Err(TranslateError::Invalid {
                    what: "an earlier error",
                    offset: self.offset,
                })
            }
            _ => return Err(TranslateError::Truncated),
        }
        let mut tail = String::new();
        let mut members = self.members;
        let mut member = |tail: &mut String, text: &str| {
            if members > 0 {
                tail.push(',');
            }
            members += 1;
            tail.push_str(text);
        };
        if !self.seen_schema {
            member(&mut tail, "\"Schema\":[]");
        }
        if !self.seen_results {
            member(&mut tail, "\"Results\":[]");
        }
        let millis = execution_time.as_millis();
        let stats = format!(
            "\"Stats\":{{\"ExecutionTime\":{}.{:03}}}}}",
            millis / 1000,
            millis % 1000
        );
        member(&mut tail, &stats);
        Ok(Bytes::from(tail))
    }

    fn err(&self, what: &'static str, at: usize) -> TranslateError {
        TranslateError::Invalid {
            what,
            offset: self.offset + at as u64,
        }
    }

    fn member_prefix(&mut self, out: &mut Vec<Bytes>, name: &'static str) {
        if self.members > 0 {
            out.push(Bytes::from_static(b","));
        }
        self.members += 1;
        out.push(Bytes::from_static(name.as_bytes()));
    }

    fn begin_key(&mut self) {
        self.key.clear();
        self.key.push(b'"');
        self.key_escape = false;
        self.key_overflow = false;
        self.state = State::InKey;
    }

    fn end_key(&mut self, at: usize) -> Result<(), TranslateError> {
        self.key.push(b'"');
        self.kind = if self.key_overflow {
            Kind::Drop
        } else {
            let raw = &self.key[1..self.key.len() - 1];
            if self.key.contains(&b'\\') {
                if serde_json::from_slice::<String>(&self.key).is_err() {
                    return Err(self.err("invalid key", at));
                }
            } else if std::str::from_utf8(raw).is_err() {
                return Err(self.err("key not UTF-8", at));
            }
            if key_is(raw, "schema") || key_is(raw, "Schema") {
                Kind::Schema
            } else if key_is(raw, "results") || key_is(raw, "Results") {
                Kind::Results
            } else {
                Kind::Drop
            }
        };
        self.key.clear();
        self.state = State::Colon;
        Ok(())
    }

    fn begin_entry(&mut self) {
        self.entry.clear();
        self.entry.push(b'{');
        self.scan.open(b'{');
        self.state = State::SchemaEntry;
    }

    fn end_entry(&mut self, out: &mut Vec<Bytes>, at: usize) -> Result<(), TranslateError> {
        if serde_json::from_slice::<serde_json::Value>(&self.entry).is_err() {
            return Err(self.err("invalid schema entry", at));
        }
        if self.entries > 0 {
            out.push(Bytes::from_static(b","));
        }
        self.entries += 1;
        out.push(Bytes::from(rename_keys(&self.entry)));
        self.high_water = self.high_water.max(self.held());
        self.entry.clear();
        self.state = State::SchemaAfter;
        Ok(())
    }

    fn feed_inner(&mut self, input: &Bytes, out: &mut Vec<Bytes>) -> Result<(), TranslateError> {
        let bytes = &input[..];
        // Where the pass-through of the results array starts in this frame.
        let mut pass_start = (self.state == State::Results).then_some(0);
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                State::Results => {
                    if self.scan.step(b).map_err(|w| self.err(w, i))? {
                        let start = pass_start.take().unwrap_or(i);
                        out.push(input.slice(start..=i));
                        self.state = State::AfterValue;
                    }
                }
                _ if is_ws(b)
                    && !matches!(
                        self.state,
                        State::InKey
                            | State::SkipString
                            | State::SkipContainer
                            | State::SkipScalar
                            | State::SchemaEntry
                    ) => {}
                State::Start => {
                    if b != b'{' {
                        return Err(self.err("not a JSON object", i));
                    }
                    out.push(Bytes::from_static(b"{"));
                    self.state = State::FirstKey;
                }
                State::FirstKey | State::Key => match b {
                    b'"' => self.begin_key(),
                    b'}' if self.state == State::FirstKey => self.state = State::Done,
                    _ => return Err(self.err("expected a key", i)),
                },
                State::InKey => {
                    if self.key_escape {
                        check_escape(b).map_err(|w| self.err(w, i))?;
                        self.key_escape = false;
                    } else if b == b'\\' {
                        self.key_escape = true;
                    } else if b == b'"' {
                        self.end_key(i)?;
                        i += 1;
                        continue;
                    } else if b < 0x20 {
                        return Err(self.err("control character in a key", i));
                    }
                    if self.key.len() <= MAX_KEY {
                        self.key.push(b);
                    } else {
                        self.key_overflow = true;
                    }
                }
                State::Colon => {
                    if b != b':' {
                        return Err(self.err("expected ':'", i));
                    }
                    self.state = State::Value;
                }
                State::Value => match (self.kind, b) {
                    (Kind::Schema, b'[') => {
                        if self.seen_schema {
                            return Err(self.err("schema twice", i));
                        }
                        self.seen_schema = true;
                        self.member_prefix(out, "\"Schema\":[");
                        self.state = State::SchemaFirst;
                    }
                    (Kind::Results, b'[') => {
                        if self.seen_results {
                            return Err(self.err("results twice", i));
                        }
                        self.seen_results = true;
                        self.member_prefix(out, "\"Results\":");
                        self.scan.open(b'[');
                        pass_start = Some(i);
                        self.state = State::Results;
                    }
                    (Kind::Schema, _) => return Err(self.err("schema is not an array", i)),
                    (Kind::Results, _) => return Err(self.err("results is not an array", i)),
                    (Kind::Drop, b'"') => {
                        self.scan.string();
                        self.state = State::SkipString;
                    }
                    (Kind::Drop, b'{' | b'[') => {
                        self.scan.open(b);
                        self.state = State::SkipContainer;
                    }
                    (Kind::Drop, b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
                        self.entry.clear();
                        self.entry.push(b);
                        self.state = State::SkipScalar;
                    }
                    (Kind::Drop, _) => return Err(self.err("expected a value", i)),
                },
                State::SkipString | State::SkipContainer => {
                    if self.scan.step(b).map_err(|w| self.err(w, i))? {
                        self.state = State::AfterValue;
                    }
                }
                State::SkipScalar => {
                    if is_ws(b) || b == b',' || b == b'}' {
                        if serde_json::from_slice::<serde_json::Value>(&self.entry).is_err() {
                            return Err(self.err("invalid value", i));
                        }
                        self.entry.clear();
                        self.state = State::AfterValue;
                        // The delimiter is the next state's.
                        continue;
                    }
                    if self.entry.len() >= MAX_ENTRY {
                        return Err(self.err("value too long", i));
                    }
                    self.entry.push(b);
                }
                State::SchemaFirst | State::SchemaNext => match b {
                    b'{' => self.begin_entry(),
                    b']' if self.state == State::SchemaFirst => {
                        out.push(Bytes::from_static(b"]"));
                        self.state = State::AfterValue;
                    }
                    _ => return Err(self.err("schema entry is not an object", i)),
                },
                State::SchemaEntry => {
                    if self.entry.len() >= MAX_ENTRY {
                        return Err(self.err("schema entry too long", i));
                    }
                    self.entry.push(b);
                    if self.scan.step(b).map_err(|w| self.err(w, i))? {
                        self.end_entry(out, i)?;
                    }
                }
                State::SchemaAfter => match b {
                    b',' => self.state = State::SchemaNext,
                    b']' => {
                        out.push(Bytes::from_static(b"]"));
                        self.state = State::AfterValue;
                    }
                    _ => return Err(self.err("expected ',' or ']' in the schema", i)),
                },
                State::AfterValue => match b {
                    b',' => self.state = State::Key,
                    b'}' => self.state = State::Done,
                    _ => return Err(self.err("expected ',' or '}'", i)),
                },
                State::Done => return Err(self.err("data after the JSON object", i)),
                State::Failed => return Err(self.err("an earlier error", i)),
            }
            i += 1;
        }
        if let Some(start) = pass_start {
            if start < bytes.len() {
                out.push(input.slice(start..));
            }
        }
        Ok(())
    }
}

pin_project_lite::pin_project! {
    /// A Graph hunting answer body translated into the legacy shape, frame by frame.
    ///
    /// `ExecutionTime` is the time since `sent_at` when the inner body ends. A translation error
    /// ends the body with an error (the client sees an incomplete response); trailers are dropped.
    #[derive(Debug)]
    pub(crate) struct HuntingBody<B> {
        #[pin]
        body: B,
        translator: Option<Translator>,
        pending: VecDeque<Bytes>,
        scratch: Vec<Bytes>,
        sent_at: Instant,
        done: bool,
    }
}

impl<B> HuntingBody<B> {
    /// `body` is Graph's 200 answer; `sent_at` is when the request was sent to Graph.
    pub(crate) fn new(body: B, sent_at: Instant) -> Self {
        HuntingBody {
            body,
            translator: Some(Translator::new()),
            pending: VecDeque::new(),
            scratch: Vec::new(),
            sent_at,
            done: false,
        }
    }
}

impl<B> Body for HuntingBody<B>
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
        let mut this = self.project();
        loop {
            if let Some(data) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let (Ok(data), Some(translator)) =
                        (frame.into_data(), this.translator.as_mut())
                    else {
                        continue;
                    };
                    if let Err(err) = translator.feed(data, this.scratch) {
                        *this.done = true;
                        this.scratch.clear();
                        return Poll::Ready(Some(Err(Box::new(err))));
                    }
                    this.pending
                        .extend(this.scratch.drain(..).filter(|b| !b.is_empty()));
                }
                Some(Err(err)) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(err.into())));
                }
                None => {
                    *this.done = true;
                    if let Some(translator) = this.translator.take() {
                        match translator.finish(this.sent_at.elapsed()) {
                            Ok(tail) => this.pending.push_back(tail),
                            Err(err) => return Poll::Ready(Some(Err(Box::new(err)))),
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests;
