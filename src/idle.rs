//! Bodies that must keep moving: a deadline between frames, for the client's request body
//! (`[listen] body_idle_timeout`, as nginx's `client_body_timeout`) and the API's response body
//! (`[upstream] body_idle_timeout`, as nginx's `proxy_read_timeout`).
//!
//! Without one, a peer that sends part of a body and then nothing holds a connection, a
//! connection permit and (on the way up) an open upstream request forever: `response_timeout`
//! covers the response head only, and the idle-connection watch spares in-flight requests.
//!
//! The timer costs nothing for a body that never makes its reader wait: it is allocated the
//! first time the inner body is not ready, and re-armed (not re-allocated) after each frame.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// A body's error, boxed: what hyper takes from a body, and what the response bodies yield.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// No frame came within the idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleTimeout(pub Duration);

impl fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no body data for {}", humantime::format_duration(self.0))
    }
}

impl StdError for IdleTimeout {}

/// The deadline between two frames of one body. 16 bytes: it sits in every response stream.
#[derive(Debug)]
pub(crate) struct IdleTimer {
    /// Milliseconds (a `u32` keeps the timer small; the config caps the value far below).
    timeout_ms: u32,
    /// Whether `sleep` was set for the current wait (cleared by every frame).
    armed: bool,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    pub(crate) fn new(timeout: Duration) -> Self {
        IdleTimer {
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            armed: false,
            sleep: None,
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.timeout_ms))
    }

    /// The body made progress (a frame, or its end): the next wait starts a new deadline.
    pub(crate) fn progressed(&mut self) {
        self.armed = false;
    }

    /// The body is not ready: `Ready` once the deadline of this wait has passed, else the task
    /// is woken when it passes.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<IdleTimeout> {
        // The clock is read only when a wait starts, not on every wake-up of the same wait.
        let timeout = self.timeout();
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if !self.armed {
                    sleep.as_mut().reset(Instant::now() + timeout);
                }
                sleep
            }
            None => self.sleep.insert(Box::pin(tokio::time::sleep(timeout))),
        };
        self.armed = true;
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(IdleTimeout(self.timeout())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Poll `body` under this deadline: its frames as they come, or [`IdleTimeout`] once it has
    /// been silent for the timeout.
    pub(crate) fn poll_frame<B>(
        &mut self,
        body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Watched<B::Error>>>
    where
        B: Body<Data = Bytes>,
    {
        match body.poll_frame(cx) {
            Poll::Ready(frame) => {
                self.progressed();
                Poll::Ready(frame.map(|f| f.map_err(BodyFault::Inner)))
            }
            Poll::Pending => self
                .poll_expired(cx)
                .map(|timeout| Some(Err(BodyFault::Idle(timeout)))),
        }
    }
}

/// A frame of a watched body, or why there is none.
type Watched<E> = Result<Frame<Bytes>, BodyFault<E>>;

/// Why a watched body failed: its own error, or silence.
#[derive(Debug)]
pub(crate) enum BodyFault<E> {
    Inner(E),
    Idle(IdleTimeout),
}

/// A response body from the API with the upstream idle timeout.
#[derive(Debug)]
pub struct IdleBody<B> {
    body: B,
    timer: IdleTimer,
}

impl<B> IdleBody<B> {
    pub fn new(body: B, timeout: Duration) -> Self {
        IdleBody {
            body,
            timer: IdleTimer::new(timeout),
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        this.timer
            .poll_frame(Pin::new(&mut this.body), cx)
            .map_err(|fault| match fault {
                BodyFault::Inner(e) => e.into(),
                BodyFault::Idle(timeout) => Box::new(timeout) as BoxError,
            })
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Why the client's body did not arrive whole: the client's doing, never the API's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// Nothing for `[listen] body_idle_timeout`: 408.
    Idle(IdleTimeout),
    /// The body broke off (connection closed or reset mid-upload, bad chunking): 400.
    Incomplete,
}

impl fmt::Display for ClientFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientFault::Idle(idle) => write!(f, "request body stalled: {idle}"),
            ClientFault::Incomplete => f.write_str("request body incomplete"),
        }
    }
}

impl StdError for ClientFault {}

/// Where a streamed body leaves its [`ClientFault`] for the handler: when the upstream exchange
/// then fails, the handler answers the client's fault instead of a 502. (The error itself does
/// not always come back: hyper's HTTP/2 client resets the stream and drops it.)
pub(crate) type FaultCell = Arc<OnceLock<ClientFault>>;

/// The client's request body under `[listen] body_idle_timeout`.
#[derive(Debug)]
pub struct ClientBody {
    body: Incoming,
    timer: IdleTimer,
    /// Set once the body is streamed upstream (see [`ClientBody::watch`]).
    fault: Option<FaultCell>,
}

impl ClientBody {
    pub fn new(body: Incoming, timeout: Duration) -> Self {
        ClientBody {
            body,
            timer: IdleTimer::new(timeout),
            fault: None,
        }
    }

    /// The cell this body records its fault in from now on (one allocation, only for bodies
    /// streamed upstream; a body read whole first reports its fault directly).
    pub fn watch(&mut self) -> FaultCell {
        self.fault.get_or_insert_with(FaultCell::default).clone()
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientFault;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientFault>>> {
        let this = self.get_mut();
        this.timer
            .poll_frame(Pin::new(&mut this.body), cx)
            .map_err(|fault| {
                let fault = match fault {
                    BodyFault::Inner(_) => ClientFault::Incomplete,
                    BodyFault::Idle(idle) => ClientFault::Idle(idle),
                };
                if let Some(cell) = &this.fault {
                    let _ = cell.set(fault);
                }
                fault
            })
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures_util::{stream, StreamExt};
    use http_body_util::{BodyExt, StreamBody};

    #[test]
    fn the_timer_is_small() {
        assert!(std::mem::size_of::<IdleTimer>() <= 16);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_fails_after_the_timeout_and_a_moving_one_never() {
        // Frames 9 s apart under a 10 s deadline: never idle for 10 s, so it completes.
        let slow = stream::unfold(0u8, |n| async move {
            (n < 3).then_some(())?;
            tokio::time::sleep(Duration::from_secs(9)).await;
            Some((
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"x"))),
                n + 1,
            ))
        });
        let body = IdleBody::new(StreamBody::new(Box::pin(slow)), Duration::from_secs(10));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "xxx");

        // One frame, then nothing: an error after exactly the timeout.
        let stalled = stream::iter([Ok::<_, std::convert::Infallible>(Frame::data(
            Bytes::from_static(b"x"),
        ))])
        .chain(stream::pending());
        let mut body = IdleBody::new(StreamBody::new(stalled), Duration::from_secs(10));
        assert!(body.frame().await.unwrap().is_ok());
        let start = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(
            err.downcast_ref::<IdleTimeout>(),
            Some(&IdleTimeout(Duration::from_secs(10)))
        );
    }
}
