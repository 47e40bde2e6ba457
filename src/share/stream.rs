//! The shared body: a member's copy of a flight's upstream body, streamed straight through
//! while nobody has joined, or fed by the [`pump`] that copies it to every member.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::cache::Fill;
use super::flight::{Piece, Place, JOIN_WINDOW};
use super::key::Head;
use crate::rewrite::{BoxError, ResponseStream};
use crate::sync::LockExt;

/// A member's copy of the shared body.
///
/// The leader's copy starts `Direct`: frames come straight from upstream, each kept for late
/// joiners while the flight is open. When it finds a follower (checked under the flight's lock
/// as each frame arrives, so no frame is missed), it hands the upstream body and that frame to a
/// [`pump`] and becomes a `Channel` like the followers. Followers' copies are `Channel`s: the
/// replayed prefix, then the pump's frames.
#[derive(Debug)]
pub struct SharedBody {
    pub(super) mode: Mode,
    pub(super) empty: bool,
    pub(super) done: bool,
}

// One per response; boxing the stream would cost an allocation per request instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Mode {
    Direct {
        /// Taken when handed to a pump.
        body: Option<ResponseStream>,
        /// `Some` while others may join.
        place: Option<Place>,
    },
    Channel {
        replay: VecDeque<Bytes>,
        rx: mpsc::Receiver<Piece>,
    },
}

impl SharedBody {
    pub(super) fn channel(replay: VecDeque<Bytes>, rx: mpsc::Receiver<Piece>) -> Self {
        SharedBody {
            mode: Mode::Channel { replay, rx },
            empty: false,
            done: false,
        }
    }

    pub(super) fn empty() -> Self {
        SharedBody {
            mode: Mode::Direct {
                body: None,
                place: None,
            },
            empty: true,
            done: true,
        }
    }

    /// The direct stream's next frame, kept for joiners while the flight is open. `Err`: someone
    /// joined, and what was read goes to a pump.
    fn poll_direct(
        body: &mut ResponseStream,
        place: &mut Option<Place>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Polled, First>> {
        let polled = ready!(Pin::new(&mut *body).poll_frame(cx));
        let Some(open) = place.as_ref() else {
            return Poll::Ready(Ok(polled));
        };
        let data = match &polled {
            Some(Ok(frame)) if !body.is_end_stream() => frame.data_ref().cloned(),
            _ => None,
        };
        if let Some(data) = data {
            let mut f = open.flight.locked();
            if f.has_members() {
                drop(f);
                return Poll::Ready(Err(First::of(polled)));
            }
            if f.sent_bytes + data.len() <= JOIN_WINDOW {
                f.sent_bytes += data.len();
                f.sent.push(data);
                return Poll::Ready(Ok(polled));
            }
        }
        // The window passed, or the body ended: from here on a plain stream, unless someone
        // joined.
        if open.close_unless_followed() {
            *place = None;
            Poll::Ready(Ok(polled))
        } else {
            Poll::Ready(Err(First::of(polled)))
        }
    }
}

impl Body for SharedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.empty || this.done {
            return Poll::Ready(None);
        }
        loop {
            let first = match &mut this.mode {
                Mode::Direct {
                    body: Some(body),
                    place,
                } => match ready!(Self::poll_direct(body, place, cx)) {
                    Ok(polled) => {
                        this.done = matches!(polled, None | Some(Err(_)));
                        return Poll::Ready(polled);
                    }
                    Err(first) => first,
                },
                Mode::Direct { body: None, .. } => return Poll::Ready(None),
                Mode::Channel { replay, rx } => {
                    if let Some(data) = replay.pop_front() {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    let piece = ready!(rx.poll_recv(cx));
                    this.done = !matches!(piece, Some(Piece::Data(_) | Piece::Trailers(_)));
                    return Poll::Ready(piece.map(Piece::into_frame));
                }
            };
            // Someone joined: the upstream body goes to a pump, and this copy reads from it.
            let Mode::Direct { body, place } = &mut this.mode else {
                return Poll::Ready(None);
            };
            let (Some(body), Some(place)) = (body.take(), place.take()) else {
                return Poll::Ready(None);
            };
            let rx = place.flight.locked().add_channel();
            tokio::spawn(pump(body, first, place, None));
            this.mode = Mode::Channel {
                replay: VecDeque::new(),
                rx,
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.empty || self.done {
            return true;
        }
        match &self.mode {
            Mode::Direct {
                body: Some(body), ..
            } => body.is_end_stream(),
            Mode::Direct { body: None, .. } => true,
            Mode::Channel { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.empty {
            return SizeHint::with_exact(0);
        }
        match &self.mode {
            Mode::Direct {
                body: Some(body), ..
            } => body.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for SharedBody {
    /// The leader's client went away mid-body while others may still join: followers that
    /// joined get the rest through a pump.
    fn drop(&mut self) {
        let Mode::Direct { body, place } = &mut self.mode else {
            return;
        };
        let (Some(body), Some(place)) = (body.take(), place.take()) else {
            return;
        };
        if place.close_unless_followed() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(pump(body, First::Read, place, None));
            }
            Err(_) => place.dissolve(),
        }
    }
}

/// What polling a body gives.
pub(super) type Polled = Option<Result<Frame<Bytes>, BoxError>>;

/// Where a pump starts: reading, or with what the leader's direct stream read last.
#[derive(Debug)]
pub(super) enum First {
    Read,
    Piece(Piece),
    End,
}

impl First {
    fn of(polled: Polled) -> Self {
        match polled {
            None => First::End,
            Some(frame) => Piece::of(frame).map_or(First::Read, First::Piece),
        }
    }
}

/// Read the upstream body once and copy it to every member, starting with `first`.
pub(super) async fn pump(
    mut body: ResponseStream,
    mut first: First,
    place: Place,
    mut fill: Option<(Fill, Head)>,
) {
    let mut kept = Vec::new();
    let mut kept_bytes = 0usize;
    let mut clean_end = false;
    loop {
        let piece = match std::mem::replace(&mut first, First::Read) {
            First::Piece(piece) => Some(piece),
            First::End => None,
            First::Read => match body.frame().await {
                None => None,
                Some(frame) => match Piece::of(frame) {
                    Some(piece) => Some(piece),
                    None => continue,
                },
            },
        };
        let Some(piece) = piece else {
            clean_end = true;
            break;
        };
        if let (Some((f, _)), Piece::Data(data)) = (&fill, &piece) {
            kept_bytes += data.len();
            if kept_bytes <= f.max_bytes() {
                kept.push(data.clone());
            } else {
                fill = None;
                kept = Vec::new();
            }
        }
        if !matches!(piece, Piece::Data(_)) {
            fill = None;
        }
        // The body's last frame (a known length reached): store before anyone has it all, so
        // a client's next request already finds it.
        if matches!(piece, Piece::Data(_)) && body.is_end_stream() {
            if let Some((fill, head)) = fill.take() {
                fill.complete(&head, concat(std::mem::take(&mut kept), kept_bytes));
            }
        }
        let (members, shut) = {
            let mut f = place.flight.locked();
            let mut shut = false;
            if f.open {
                match &piece {
                    Piece::Data(data) if f.sent_bytes + data.len() <= JOIN_WINDOW => {
                        f.sent_bytes += data.len();
                        f.sent.push(data.clone());
                    }
                    _ => shut = true,
                }
            }
            if !f.has_members() {
                shut = true;
            }
            (f.members.clone(), shut)
        };
        let members = if shut && place.flight.locked().open {
            place.close();
            // Joined between the two locks: served too.
            let mut f = place.flight.locked();
            f.has_members();
            f.members.clone()
        } else {
            members
        };
        if members.is_empty() {
            return;
        }
        let is_error = matches!(piece, Piece::Error(_));
        for member in &members {
            let _ = member.send(piece.clone()).await;
        }
        if is_error {
            break;
        }
    }
    place.dissolve();
    if let (true, Some((fill, head))) = (clean_end, fill) {
        fill.complete(&head, concat(kept, kept_bytes));
    }
}

pub(super) fn concat(parts: Vec<Bytes>, len: usize) -> Bytes {
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    let mut all = bytes::BytesMut::with_capacity(len);
    for part in parts {
        all.extend_from_slice(&part);
    }
    all.freeze()
}
