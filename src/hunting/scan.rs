//! The byte-level pieces of the hunting translator: a structural scanner for values passed
//! through or skipped (strings, escapes, matched brackets, depth), and the small helpers for
//! keys and schema entries.

/// The deepest nesting accepted inside a value (serde_json's default recursion limit).
pub(crate) const MAX_DEPTH: usize = 128;

/// The structure of a value being skipped or passed through: strings and matched brackets.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub(super) stack: Vec<u8>,
    pub(super) in_string: bool,
    pub(super) escape: bool,
}

impl Scan {
    pub(super) fn open(&mut self, open: u8) {
        self.stack.clear();
        self.in_string = false;
        self.escape = false;
        self.stack.push(closer(open));
    }

    pub(super) fn string(&mut self) {
        self.stack.clear();
        self.in_string = true;
        self.escape = false;
    }

    /// One byte; true when the outermost container (or the string of [`Scan::string`]) ended.
    #[inline]
    pub(super) fn step(&mut self, b: u8) -> Result<bool, &'static str> {
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

impl Scan {
    /// [`Scan::step`] over `bytes` until the value ends: `Ok(Some(i))`, `i` the index of its
    /// last byte; `Ok(None)`: all of `bytes` is inside it. The plain bytes of a string and the
    /// bytes between structural ones are jumped over in a tight loop, not stepped one by one
    /// (a 50 MB result is nearly all of them).
    pub(super) fn run(&mut self, bytes: &[u8]) -> Result<Option<usize>, (&'static str, usize)> {
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            let next = if self.escape {
                Some(0)
            } else if self.in_string {
                rest.iter()
                    .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            } else {
                rest.iter()
                    .position(|&b| matches!(b, b'"' | b'{' | b'}' | b'[' | b']'))
            };
            let Some(n) = next else {
                return Ok(None);
            };
            i += n;
            if self.step(bytes[i]).map_err(|what| (what, i))? {
                return Ok(Some(i));
            }
            i += 1;
        }
        Ok(None)
    }
}

pub(super) fn closer(open: u8) -> u8 {
    if open == b'{' {
        b'}'
    } else {
        b']'
    }
}

pub(super) fn check_escape(b: u8) -> Result<(), &'static str> {
    match b {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u' => Ok(()),
        _ => Err("invalid escape in a string"),
    }
}

pub(super) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A JSON string's raw content (between its quotes) equal to `lit`, escapes decoded.
pub(super) fn key_is(raw: &[u8], lit: &str) -> bool {
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
pub(super) fn rename_keys(entry: &[u8]) -> Vec<u8> {
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
