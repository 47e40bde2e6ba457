//! An error and its causes on one line, for logs: `a: b: c`.
//!
//! A leaf of its own (it imports nothing of the crate), so that the token broker and the hot
//! path both use it without one importing the other.

use std::fmt;

/// An error and its sources, `a: b: c`, for log lines. A source whose text its error's own text
/// already ends with (`"...: {0}"` over `#[source]`) is said once.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = self.0.to_string();
        f.write_str(&said)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            let text = e.to_string();
            if !said.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            said = text;
            source = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_says_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        enum Outer {
            #[error("outer: {0}")]
            Repeats(#[source] Inner),
            #[error("outer")]
            Hides(#[source] Inner),
        }
        #[derive(Debug, thiserror::Error)]
        #[error("inner")]
        struct Inner(#[source] std::io::Error);
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let refused = io().to_string();
        assert_eq!(
            Chain(&Outer::Repeats(Inner(io()))).to_string(),
            format!("outer: inner: {refused}")
        );
        assert_eq!(
            Chain(&Outer::Hides(Inner(io()))).to_string(),
            format!("outer: inner: {refused}")
        );
    }
}
