//! One coalescing flight: the response head and the body so far for late joiners, the members
//! the body is copied to, and where the flight is listed for joining ([`Place`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body::Frame;
use tokio::sync::{mpsc, oneshot};

use super::key::{Head, Key};
use crate::error::ProxyError;
use crate::rewrite::BoxError;
use crate::sync::LockExt;

/// Frames buffered per member before the shared stream waits for it.
pub(crate) const CHANNEL_FRAMES: usize = 16;
/// Body bytes kept for late joiners; once the body sent passes this, no one joins any more.
pub(crate) const JOIN_WINDOW: usize = 64 * 1024;

/// The leader's error, as its response (made once, by [`ProxyError::to_response`], for every
/// follower).
#[derive(Debug, Clone)]
pub(super) struct Failure {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Failure {
    pub(super) fn of(err: &ProxyError) -> Self {
        let (parts, body) = err.to_response::<Bytes>().into_parts();
        Failure {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// The same response the leader's error made.
    pub(super) fn response(&self) -> Response<Bytes> {
        let mut response = Response::new(self.body.clone());
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
    }
}

#[derive(Debug, Clone)]
pub(super) enum Piece {
    Data(Bytes),
    Trailers(HeaderMap),
    Error(Arc<str>),
}

impl Piece {
    /// A polled frame as a piece; `None` for a frame that is neither data nor trailers.
    pub(super) fn of(polled: Result<Frame<Bytes>, BoxError>) -> Option<Piece> {
        match polled {
            Err(e) => Some(Piece::Error(e.to_string().into())),
            Ok(frame) => match frame.into_data() {
                Ok(data) => Some(Piece::Data(data)),
                Err(frame) => frame.into_trailers().ok().map(Piece::Trailers),
            },
        }
    }

    pub(super) fn into_frame(self) -> Result<Frame<Bytes>, BoxError> {
        match self {
            Piece::Data(data) => Ok(Frame::data(data)),
            Piece::Trailers(t) => Ok(Frame::trailers(t)),
            Piece::Error(message) => Err(message.to_string().into()),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Flight {
    pub(super) head: Option<Head>,
    /// Members still waiting for the head.
    pub(super) waiting: Vec<oneshot::Sender<Result<Head, Failure>>>,
    /// Where the pump sends the body: the followers, and the leader once a pump runs.
    pub(super) members: Vec<mpsc::Sender<Piece>>,
    /// The body so far, while others may still join.
    pub(super) sent: Vec<Bytes>,
    pub(super) sent_bytes: usize,
    pub(super) open: bool,
}

impl Flight {
    pub(super) fn add_channel(&mut self) -> mpsc::Receiver<Piece> {
        let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
        self.members.push(tx);
        rx
    }

    /// Someone still listens (members that went away are forgotten here).
    pub(super) fn has_members(&mut self) -> bool {
        self.members.retain(|m| !m.is_closed());
        !self.members.is_empty()
    }
}

/// Keyed by the whole request (tenant, path, client...): foldhash, seeded per process, costs a
/// fraction of SipHash on keys this long.
pub(super) type FlightMap = HashMap<Arc<Key>, Arc<Mutex<Flight>>, foldhash::fast::RandomState>;
pub(super) type Flights = Arc<Mutex<FlightMap>>;

/// A flight and where it is listed.
#[derive(Debug)]
pub(super) struct Place {
    pub(super) key: Arc<Key>,
    pub(super) flight: Arc<Mutex<Flight>>,
    pub(super) flights: Flights,
}

impl Place {
    /// No one joins any more.
    pub(super) fn close(&self) {
        let mut map = self.flights.locked();
        self.unlist(&mut map, &mut self.flight.locked());
    }

    /// Close unless someone joined (then `false`, and the flight stays open). Both locks are
    /// held, in `join`'s order, so no one can join between the look and the close.
    pub(super) fn close_unless_followed(&self) -> bool {
        let mut map = self.flights.locked();
        let mut f = self.flight.locked();
        if f.has_members() {
            return false;
        }
        self.unlist(&mut map, &mut f);
        true
    }

    /// Off the list of flights open for joining (unless a newer flight took the key).
    fn unlist(&self, map: &mut FlightMap, f: &mut Flight) {
        if map
            .get(&self.key)
            .is_some_and(|other| Arc::ptr_eq(other, &self.flight))
        {
            map.remove(&self.key);
        }
        f.open = false;
        f.sent = Vec::new();
    }

    /// Close, and let go of every member and waiter (they see the end of the stream).
    pub(super) fn dissolve(&self) {
        self.close();
        let mut f = self.flight.locked();
        f.waiting.clear();
        f.members.clear();
    }
}
