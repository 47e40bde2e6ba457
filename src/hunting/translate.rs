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
//! `body.rs`'s `HuntingBody` applies a translator to an `http_body::Body`, frame by frame;
//! `scan.rs` holds the byte-level pieces.

use std::time::Duration;

use bytes::Bytes;

pub(crate) use super::scan::MAX_DEPTH;
use super::scan::{check_escape, is_ws, key_is, rename_keys, Scan};
use state::{Kind, State, Step};

/// The longest top-level key held; longer keys are never `schema`/`results`, so they are dropped.
pub(crate) const MAX_KEY: usize = 256;
/// The longest schema entry (and dropped scalar value) accepted.
pub(crate) const MAX_ENTRY: usize = 8 * 1024;
#[cfg_attr(not(test), allow(dead_code))] // The bound the tests hold it to.
/// The most bytes a [`Translator`] ever holds: a key (with its quotes), an entry, a bracket stack.
pub(crate) const HELD_BOUND: usize = MAX_KEY + 2 + MAX_ENTRY + MAX_DEPTH;

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
                    let ended = self
                        .scan
                        .run(&bytes[i..])
                        .map_err(|(what, at)| self.err(what, i + at))?;
                    let Some(last) = ended.map(|n| i + n) else {
                        break; // The rest of the frame is inside the results.
                    };
                    let start = pass_start.take().unwrap_or(i);
                    out.push(input.slice(start..=last));
                    self.state = State::AfterValue;
                    i = last + 1;
                    continue;
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
                    if self.key_byte(b, i)? == Step::Again {
                        continue;
                    }
                }
                State::Colon => {
                    if b != b':' {
                        return Err(self.err("expected ':'", i));
                    }
                    self.state = State::Value;
                }
                State::Value => {
                    if self.value_start(b, i, out)? {
                        pass_start = Some(i);
                    }
                }
                State::SkipString | State::SkipContainer => {
                    if self.scan.step(b).map_err(|w| self.err(w, i))? {
                        self.state = State::AfterValue;
                    }
                }
                State::SkipScalar => {
                    if self.scalar_byte(b, i)? == Step::Again {
                        continue;
                    }
                }
                State::SchemaFirst
                | State::SchemaNext
                | State::SchemaEntry
                | State::SchemaAfter => self.schema_byte(b, i, out)?,
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

    /// A byte of a top-level key (`i` its offset in the frame).
    fn key_byte(&mut self, b: u8, i: usize) -> Result<Step, TranslateError> {
        if self.key_escape {
            check_escape(b).map_err(|w| self.err(w, i))?;
            self.key_escape = false;
        } else if b == b'\\' {
            self.key_escape = true;
        } else if b == b'"' {
            self.end_key(i)?;
            // Past the quote: `end_key` moved to the colon.
            return Ok(Step::Next);
        } else if b < 0x20 {
            return Err(self.err("control character in a key", i));
        }
        if self.key.len() <= MAX_KEY {
            self.key.push(b);
        } else {
            self.key_overflow = true;
        }
        Ok(Step::Next)
    }

    /// The first byte of a top-level value. `true`: the results array starts here (its bytes
    /// pass through from `i` on).
    fn value_start(
        &mut self,
        b: u8,
        i: usize,
        out: &mut Vec<Bytes>,
    ) -> Result<bool, TranslateError> {
        match (self.kind, b) {
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
                self.state = State::Results;
                return Ok(true);
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
        }
        Ok(false)
    }

    /// A byte of a dropped number or literal, held to be checked when it ends; the byte that
    /// ends it is the next state's (`Step::Again`).
    fn scalar_byte(&mut self, b: u8, i: usize) -> Result<Step, TranslateError> {
        if is_ws(b) || b == b',' || b == b'}' {
            if serde_json::from_slice::<serde_json::Value>(&self.entry).is_err() {
                return Err(self.err("invalid value", i));
            }
            self.entry.clear();
            self.state = State::AfterValue;
            return Ok(Step::Again);
        }
        if self.entry.len() >= MAX_ENTRY {
            return Err(self.err("value too long", i));
        }
        self.entry.push(b);
        Ok(Step::Next)
    }

    /// A byte of the schema array: between entries, or inside one (held, then renamed).
    fn schema_byte(&mut self, b: u8, i: usize, out: &mut Vec<Bytes>) -> Result<(), TranslateError> {
        match (self.state, b) {
            (State::SchemaEntry, _) => {
                if self.entry.len() >= MAX_ENTRY {
                    return Err(self.err("schema entry too long", i));
                }
                self.entry.push(b);
                if self.scan.step(b).map_err(|w| self.err(w, i))? {
                    self.end_entry(out, i)?;
                }
            }
            (State::SchemaFirst | State::SchemaNext, b'{') => self.begin_entry(),
            (State::SchemaFirst, b']') | (State::SchemaAfter, b']') => {
                out.push(Bytes::from_static(b"]"));
                self.state = State::AfterValue;
            }
            (State::SchemaAfter, b',') => self.state = State::SchemaNext,
            (State::SchemaAfter, _) => {
                return Err(self.err("expected ',' or ']' in the schema", i));
            }
            _ => return Err(self.err("schema entry is not an object", i)),
        }
        Ok(())
    }
}

mod state;
#[cfg(test)]
mod tests;
