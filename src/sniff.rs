//! Request-smuggling guard below hyper.
//!
//! hyper resolves a request that carries both `Content-Length` and `Transfer-Encoding` the RFC
//! way (drops the length, reads chunked, closes the connection afterwards), so by the time the
//! proxy sees the request nothing shows that it was ambiguous. Such requests are attacks, not
//! mistakes, and must be refused, so this wrapper watches the bytes of an HTTP/1 connection as
//! hyper reads them: every line that starts with one of the two header names is noted, and a
//! header block (lines up to an empty one) holding both raises the connection's flag, which the
//! proxy checks before forwarding. It keeps a few bytes of state per connection and allocates
//! nothing. Body lines are scanned too: a body would have to contain a CRLF-framed
//! `content-length:` *and* `transfer-encoding:` line with no blank line between them to trip it,
//! and then only the (already closing) connection's later requests are refused.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const CL: &[u8] = b"content-length:";
const TE: &[u8] = b"transfer-encoding:";
/// Enough of a line to recognise either name.
const PREFIX: usize = 18;

/// Line-by-line state of the scan.
#[derive(Debug, Default)]
struct Scanner {
    /// The current line's first bytes, lower-cased.
    line: [u8; PREFIX],
    line_len: usize,
    /// Whether the current line is empty so far (only CR seen).
    saw_cr_only: bool,
    cl: bool,
    te: bool,
}

impl Scanner {
    fn feed(&mut self, bytes: &[u8], flag: &AtomicBool) {
        for &b in bytes {
            if b == b'\n' {
                self.end_line(flag);
                continue;
            }
            if self.line_len == 0 && b == b'\r' && !self.saw_cr_only {
                self.saw_cr_only = true;
                continue;
            }
            if self.line_len < PREFIX {
                self.line[self.line_len] = b.to_ascii_lowercase();
            }
            self.line_len += 1;
        }
    }

    fn end_line(&mut self, flag: &AtomicBool) {
        if self.line_len == 0 {
            // An empty line ends a header block.
            if self.cl && self.te {
                flag.store(true, Ordering::Relaxed);
            }
            self.cl = false;
            self.te = false;
        } else {
            let seen = &self.line[..self.line_len.min(PREFIX)];
            self.cl |= seen.starts_with(CL);
            self.te |= seen.starts_with(TE);
        }
        self.line_len = 0;
        self.saw_cr_only = false;
    }
}

pin_project_lite::pin_project! {
    /// An IO that scans what is read for ambiguous request lengths.
    #[derive(Debug)]
    pub struct LengthSniffer<IO> {
        #[pin]
        io: IO,
        scanner: Scanner,
        flag: Arc<AtomicBool>,
    }
}

impl<IO> LengthSniffer<IO> {
    /// `flag` turns true once a header block with both lengths was read.
    pub fn new(io: IO, flag: Arc<AtomicBool>) -> Self {
        LengthSniffer {
            io,
            scanner: Scanner::default(),
            flag,
        }
    }
}

impl<IO: AsyncRead> AsyncRead for LengthSniffer<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            this.scanner.feed(&buf.filled()[before..], this.flag);
        }
        polled
    }
}

impl<IO: AsyncWrite> AsyncWrite for LengthSniffer<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> bool {
        let flag = AtomicBool::new(false);
        let mut s = Scanner::default();
        for c in chunks {
            s.feed(c, &flag);
        }
        flag.load(Ordering::Relaxed)
    }

    #[test]
    fn both_lengths_in_one_block_are_flagged_in_either_order_and_split_anywhere() {
        let req = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(scan(&[req]));
        let rev = b"POST /x HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\ncontent-length: 4\r\n\r\n";
        assert!(scan(&[rev]));
        for split in 1..req.len() {
            assert!(scan(&[&req[..split], &req[split..]]), "split at {split}");
        }
    }

    #[test]
    fn one_length_or_separate_requests_are_fine() {
        assert!(!scan(&[
            b"POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"
        ]));
        assert!(!scan(&[
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
        ]));
        assert!(!scan(&[
            b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab",
            b"POST /y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ]));
        // A header whose name merely contains the words is not the header.
        assert!(!scan(&[
            b"GET / HTTP/1.1\r\nX-Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
    }
}
