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
//!
//! The same wrapper tells HTTP/2 (prior knowledge) from HTTP/1 by the first bytes: they are kept
//! in a 24-byte array and handed to hyper with whatever else has arrived, so hyper's first read
//! sees the whole request head, as on a bare socket, and its read buffer keeps its initial size.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::ConnInfo;

const CL: &[u8] = b"content-length:";
const TE: &[u8] = b"transfer-encoding:";
/// Enough of a line to recognise either name.
const PREFIX: usize = 18;
/// What an HTTP/2 client with prior knowledge sends first (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

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
        // Off for HTTP/2, whose binary frames are not header lines.
        scan: bool,
        // Bytes read by `poll_detect`, read again by hyper: `preface[start..end]`.
        preface: [u8; 24],
        start: u8,
        end: u8,
        conn: Arc<ConnInfo>,
    }
}

impl<IO> LengthSniffer<IO> {
    /// Raises `conn`'s ambiguous-length flag once a header block with both lengths was read.
    pub(crate) fn new(io: IO, conn: Arc<ConnInfo>) -> Self {
        LengthSniffer {
            io,
            scanner: Scanner::default(),
            scan: true,
            preface: [0; 24],
            start: 0,
            end: 0,
            conn,
        }
    }
}

impl<IO: AsyncRead + Unpin> LengthSniffer<IO> {
    /// Read until the first bytes show whether the client speaks HTTP/2 with prior knowledge
    /// (true) or anything else, HTTP/1 (false). What was read is handed out again by
    /// `poll_read`. HTTP/2 turns the length scan off.
    pub(crate) fn poll_detect(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            let end = usize::from(self.end);
            if self.preface[..end] != H2_PREFACE[..end] {
                return Poll::Ready(Ok(false));
            }
            if end == H2_PREFACE.len() {
                self.scan = false;
                return Poll::Ready(Ok(true));
            }
            let mut buf = ReadBuf::new(&mut self.preface[end..]);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            if n == 0 {
                // Closed early: hyper sees the few bytes, then the end.
                return Poll::Ready(Ok(false));
            }
            self.end += n as u8;
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
        let polled = if this.start < this.end {
            let (start, end) = (usize::from(*this.start), usize::from(*this.end));
            let n = (end - start).min(buf.remaining());
            buf.put_slice(&this.preface[start..start + n]);
            *this.start += n as u8;
            if this.start == this.end && buf.remaining() > 0 {
                // Whatever else is there, in the same read: hyper parses the head at once and
                // needs no bigger buffer. An error comes back on the next read.
                let _ = this.io.poll_read(cx, buf);
            }
            Poll::Ready(Ok(()))
        } else {
            this.io.poll_read(cx, buf)
        };
        if *this.scan {
            if let Poll::Ready(Ok(())) = &polled {
                this.scanner
                    .feed(&buf.filled()[before..], &this.conn.ambiguous_length);
            }
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
