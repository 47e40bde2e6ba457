//! Streaming decoding of `gzip`, `deflate` and `br` bodies, so encoded JSON can be rewritten.
//!
//! Each step turns part of the pending compressed frame into a bounded frame (at most
//! [`CHUNK`] bytes for brotli, about twice that for flate2's buffer and flush), so a highly
//! compressed body never expands into one huge frame: memory stays at the decoder's window
//! (32 KiB for gzip/deflate; for brotli the window the stream declares, at most 16 MiB, since
//! large-window streams are refused) plus one output chunk.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};
use bytes::{Buf, Bytes, BytesMut};
use flate2::write::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::{BoxError, Encoding};

/// The most decoded bytes one brotli step yields (a flate2 step yields at most its 32 KiB buffer
/// from the write and about as much from the flush).
pub(crate) const CHUNK: usize = 32 * 1024;

type Brotli = BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>;

enum Decoder {
    Gzip(MultiGzDecoder<Vec<u8>>),
    /// `deflate` before its first two bytes are known: RFC 9110 says zlib, some servers send
    /// raw deflate, and the zlib header tells them apart.
    DeflateSniff(Option<u8>),
    Zlib(ZlibDecoder<Vec<u8>>),
    RawDeflate(DeflateDecoder<Vec<u8>>),
    /// Boxed: the state is a few KiB, and only one allocation per response.
    Brotli(Box<Brotli>),
    /// The stream ended; any later bytes are ignored.
    Done,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decoder::Gzip(_) => "Gzip",
            Decoder::DeflateSniff(_) => "DeflateSniff",
            Decoder::Zlib(_) => "Zlib",
            Decoder::RawDeflate(_) => "RawDeflate",
            Decoder::Brotli(_) => "Brotli",
            Decoder::Done => "Done",
        })
    }
}

fn corrupt(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The two bytes of a zlib header: deflate method, a window up to 32 KiB, and the check bits.
fn is_zlib_header(cmf: u8, flg: u8) -> bool {
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

/// The three flate2 write-side decoders, decoding into a `Vec` that each step empties.
trait FlateDecoder: Write {
    fn output(&mut self) -> &mut Vec<u8>;
    fn try_finish(&mut self) -> io::Result<()>;
}

macro_rules! flate_decoder {
    ($($ty:ident),*) => {$(
        impl FlateDecoder for $ty<Vec<u8>> {
            fn output(&mut self) -> &mut Vec<u8> {
                self.get_mut()
            }
            fn try_finish(&mut self) -> io::Result<()> {
                $ty::try_finish(self)
            }
        }
    )*};
}
flate_decoder!(MultiGzDecoder, ZlibDecoder, DeflateDecoder);

/// One flate2 step: feed what it takes, then collect what it has decoded; `true` once the
/// stream has ended (checked: gzip's CRC and length).
fn flate_step(dec: &mut impl FlateDecoder, input: &mut Bytes) -> io::Result<(Bytes, bool)> {
    let n = dec.write(input)?;
    // A zlib or deflate decoder takes nothing once its stream has ended: later bytes are
    // ignored. (A gzip decoder reads them as the next member, as RFC 1952 says.)
    let ended = n == 0;
    if ended {
        input.clear();
        dec.try_finish()?;
    } else {
        input.advance(n);
        // Moves what is decoded out of flate2's buffer now, not at the next write.
        dec.flush()?;
    }
    Ok((Bytes::from(std::mem::take(dec.output())), ended))
}

/// The input has ended: check the stream is complete and collect the last output.
fn flate_finish(dec: &mut impl FlateDecoder) -> io::Result<Bytes> {
    dec.try_finish()?;
    Ok(Bytes::from(std::mem::take(dec.output())))
}

impl Decoder {
    fn new(encoding: Encoding) -> Self {
        match encoding {
            Encoding::Gzip => Decoder::Gzip(MultiGzDecoder::new(Vec::new())),
            Encoding::Deflate => Decoder::DeflateSniff(None),
            Encoding::Brotli => {
                let mut state = Box::new(Brotli::new(
                    StandardAlloc::default(),
                    StandardAlloc::default(),
                    StandardAlloc::default(),
                ));
                // Large-window brotli (up to 1 GiB) is not HTTP's `br`; refuse it, and with it
                // the memory it would take.
                state.large_window = false;
                Decoder::Brotli(state)
            }
        }
    }

    /// Decode some of `input` (not empty). Always progresses: consumes input, yields output,
    /// or fails.
    fn step(&mut self, input: &mut Bytes) -> io::Result<Bytes> {
        let (out, ended) = match self {
            Decoder::Gzip(dec) => flate_step(dec, input)?,
            Decoder::Zlib(dec) => flate_step(dec, input)?,
            Decoder::RawDeflate(dec) => flate_step(dec, input)?,
            Decoder::DeflateSniff(first) => {
                let (cmf, flg) = match *first {
                    None if input.len() < 2 => {
                        *first = Some(input[0]);
                        input.advance(1);
                        return Ok(Bytes::new());
                    }
                    None => (input[0], input[1]),
                    Some(cmf) => {
                        // Put the byte back in front, once per response.
                        let mut joined = BytesMut::with_capacity(1 + input.len());
                        joined.extend_from_slice(&[cmf]);
                        joined.extend_from_slice(input);
                        *input = joined.freeze();
                        (cmf, input[1])
                    }
                };
                *self = if is_zlib_header(cmf, flg) {
                    Decoder::Zlib(ZlibDecoder::new(Vec::new()))
                } else {
                    Decoder::RawDeflate(DeflateDecoder::new(Vec::new()))
                };
                return self.step(input);
            }
            Decoder::Brotli(state) => brotli_step(state, input)?,
            Decoder::Done => {
                input.clear();
                (Bytes::new(), true)
            }
        };
        if ended {
            *self = Decoder::Done;
        }
        Ok(out)
    }

    /// The input has ended: the rest of the output, one chunk a call, then `None`. Fails when
    /// the stream was cut short.
    fn finish_step(&mut self) -> io::Result<Option<Bytes>> {
        let out = match self {
            Decoder::Gzip(dec) => flate_finish(dec)?,
            Decoder::Zlib(dec) => flate_finish(dec)?,
            Decoder::RawDeflate(dec) => flate_finish(dec)?,
            Decoder::DeflateSniff(first) => {
                return match first {
                    Some(_) => Err(corrupt("truncated deflate stream")),
                    None => {
                        *self = Decoder::Done;
                        Ok(None)
                    }
                };
            }
            Decoder::Brotli(state) => {
                let (out, ended) = brotli_step(state, &mut Bytes::new())?;
                if ended {
                    *self = Decoder::Done;
                } else if out.is_empty() {
                    return Err(corrupt("truncated brotli stream"));
                }
                return Ok(Some(out));
            }
            Decoder::Done => return Ok(None),
        };
        *self = Decoder::Done;
        Ok(Some(out))
    }
}

/// One brotli call into a fresh chunk; `true` once the stream has ended.
fn brotli_step(state: &mut Brotli, input: &mut Bytes) -> io::Result<(Bytes, bool)> {
    let mut out = vec![0u8; CHUNK];
    let (mut avail_in, mut in_off) = (input.len(), 0usize);
    let (mut avail_out, mut out_off, mut total) = (CHUNK, 0usize, 0usize);
    let result = BrotliDecompressStream(
        &mut avail_in,
        &mut in_off,
        input,
        &mut avail_out,
        &mut out_off,
        &mut out,
        &mut total,
        state,
    );
    let ended = match result {
        BrotliResult::ResultFailure => return Err(corrupt("corrupt brotli stream")),
        BrotliResult::ResultSuccess => {
            // Bytes after the end of the stream are ignored.
            in_off = input.len();
            true
        }
        BrotliResult::NeedsMoreInput | BrotliResult::NeedsMoreOutput => false,
    };
    input.advance(in_off);
    out.truncate(out_off);
    Ok((Bytes::from(out), ended))
}

pin_project_lite::pin_project! {
    /// An encoded body, decoded as it streams. Trailers follow the decoded data.
    #[project = DecodeBodyProj]
    #[derive(Debug)]
    pub(crate) struct DecodeBody<B> {
        #[pin]
        body: B,
        decoder: Decoder,
        // The compressed frame being decoded.
        input: Bytes,
        // Any compressed byte has arrived (an empty body is not a truncated stream).
        seen: bool,
        // The inner body has ended: the decoder is being drained.
        eof: bool,
        trailers: Option<HeaderMap>,
    }
}

impl<B> DecodeBody<B> {
    pub(crate) fn new(body: B, encoding: Encoding) -> Self {
        DecodeBody {
            body,
            decoder: Decoder::new(encoding),
            input: Bytes::new(),
            seen: false,
            eof: false,
            trailers: None,
        }
    }
}

impl<B> DecodeBodyProj<'_, B> {
    /// A corrupt or cut stream ends the body: the error is reported once, then nothing more
    /// (not the same error again for a caller that polls on).
    fn fail(&mut self, err: io::Error) -> BoxError {
        *self.decoder = Decoder::Done;
        *self.input = Bytes::new();
        *self.eof = true;
        *self.trailers = None;
        err.into()
    }
}

impl<B> Body for DecodeBody<B>
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
            if !this.input.is_empty() {
                match this.decoder.step(this.input) {
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    Err(err) => return Poll::Ready(Some(Err(this.fail(err)))),
                }
            }
            if *this.eof || this.body.is_end_stream() {
                *this.eof = true;
                if !*this.seen {
                    *this.decoder = Decoder::Done;
                }
                match this.decoder.finish_step() {
                    Ok(Some(out)) if out.is_empty() => continue,
                    Ok(Some(out)) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    Ok(None) => {
                        return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
                    }
                    Err(err) => return Poll::Ready(Some(Err(this.fail(err)))),
                }
            }
            match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        *this.seen |= !data.is_empty();
                        *this.input = data;
                    }
                    Err(frame) => {
                        *this.trailers = frame.into_trailers().ok();
                        *this.eof = true;
                    }
                },
                Some(Err(err)) => return Poll::Ready(Some(Err(err.into()))),
                None => *this.eof = true,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.input.is_empty()
            && self.trailers.is_none()
            && match self.decoder {
                Decoder::Done => self.eof || self.body.is_end_stream(),
                // Nothing arrived and nothing will: an empty body (HEAD, 204).
                _ => !self.seen && self.body.is_end_stream(),
            }
    }

    fn size_hint(&self) -> SizeHint {
        if self.is_end_stream() {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }
}
