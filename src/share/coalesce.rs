//! Coalescing: a request leads a new flight or follows one in progress ([`Coalescer::join`]);
//! the leader's result is published to its followers ([`Leader::publish`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use tokio::sync::oneshot;

use super::cache::{storable, Fill};
use super::flight::{Failure, Flight, Flights, Place};
use super::key::{Head, Key};
use super::stream::{pump, First, Mode, SharedBody};
use crate::error::ProxyError;
use crate::metrics::UpstreamWarnings;
use crate::rewrite::ResponseStream;
use crate::sync::LockExt;

/// The flights in progress (one per snapshot).
#[derive(Debug, Default)]
pub(super) struct Coalescer {
    flights: Flights,
}

/// A request's place: lead a new flight, or follow one in progress.
#[derive(Debug)]
pub(super) enum Join {
    Lead(Leader),
    Follow(Member),
}

impl Coalescer {
    pub(super) fn join(&self, key: &Arc<Key>) -> Join {
        let mut flights = self.flights.locked();
        let slot = flights.entry(key.clone());
        if let std::collections::hash_map::Entry::Occupied(flight) = &slot {
            let mut flight = flight.get().locked();
            if flight.open {
                return Join::Follow(add_member(&mut flight));
            }
        }
        let flight = Arc::new(Mutex::new(Flight {
            open: true,
            ..Flight::default()
        }));
        slot.insert_entry(flight.clone());
        Join::Lead(Leader {
            place: Some(Place {
                key: key.clone(),
                flight,
                flights: self.flights.clone(),
            }),
        })
    }
}

/// A follower of a flight.
#[derive(Debug)]
pub(super) struct Member {
    head: oneshot::Receiver<Result<Head, Failure>>,
    body: SharedBody,
}

/// Why a follower got no response: the leader failed (same error), or went away (start over).
#[derive(Debug)]
pub(super) enum Wait {
    Failed(Failure),
    Gone,
}

impl Member {
    pub(super) async fn wait(mut self) -> Result<Response<SharedBody>, Wait> {
        match self.head.await {
            Ok(Ok(head)) => {
                self.body.empty = head.empty;
                let mut response = Response::new(self.body);
                *response.status_mut() = head.status;
                *response.headers_mut() = head.headers;
                if let Some(warnings) = head.warnings {
                    response.extensions_mut().insert(warnings);
                }
                Ok(response)
            }
            Ok(Err(failure)) => Err(Wait::Failed(failure)),
            Err(_) => Err(Wait::Gone),
        }
    }
}

/// The request that goes upstream for its flight.
#[derive(Debug)]
pub(super) struct Leader {
    /// Taken by `publish`; still here on drop means the leader went away before its head.
    place: Option<Place>,
}

impl Leader {
    /// Share the leader's result with its flight; the leader's own response comes back. `fill`
    /// also gets the body (the cache).
    ///
    /// While no one has joined, the leader's body streams straight from upstream (no task, no
    /// channel: the common case costs nothing); the first follower to join makes it hand the
    /// upstream body to a pump (see [`SharedBody`]).
    pub(super) fn publish(
        mut self,
        result: Result<Response<ResponseStream>, ProxyError>,
        fill: Option<Fill>,
    ) -> Result<Response<SharedBody>, ProxyError> {
        // Only `publish` (which consumes the leader) and `drop` take it.
        #[allow(clippy::expect_used)]
        let place = self.place.take().expect("a leader publishes once");
        let response = match result {
            Ok(response) => response,
            Err(err) => {
                place.close();
                let failure = Failure::of(&err);
                let mut f = place.flight.locked();
                for waiting in f.waiting.drain(..) {
                    let _ = waiting.send(Err(failure.clone()));
                }
                f.members.clear();
                return Err(err);
            }
        };
        let (parts, body) = response.into_parts();
        let head = Head {
            status: parts.status,
            headers: parts.headers.clone(),
            empty: body.is_end_stream(),
            warnings: parts.extensions.get::<Arc<UpstreamWarnings>>().cloned(),
        };
        let fill = fill.filter(|_| storable(&head));
        let partial = head.is_partial();
        if partial {
            // Before the head is out, so no one joins between: those who asked before it get
            // it, a later request asks anew (see `Head::is_partial`).
            place.close();
        }
        let followed = {
            let mut f = place.flight.locked();
            f.head = Some(head.clone());
            for waiting in f.waiting.drain(..) {
                let _ = waiting.send(Ok(head.clone()));
            }
            f.has_members()
        };
        if head.empty {
            place.dissolve();
            if let Some(fill) = fill {
                fill.complete(&head, Bytes::new());
            }
            return Ok(Response::from_parts(parts, SharedBody::empty()));
        }
        let own = if followed || fill.is_some() {
            let rx = place.flight.locked().add_channel();
            tokio::spawn(pump(body, First::Read, place, fill.map(|f| (f, head))));
            SharedBody::channel(VecDeque::new(), rx)
        } else {
            SharedBody {
                mode: Mode::Direct {
                    body: Some(body),
                    place: (!partial).then_some(place),
                },
                empty: false,
                done: false,
            }
        };
        Ok(Response::from_parts(parts, own))
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(place) = &self.place {
            // Gone before its head: the followers start over.
            place.dissolve();
        }
    }
}

/// A new follower of `flight`: the head when it comes (or at once), the body so far, then the rest.
fn add_member(flight: &mut Flight) -> Member {
    let (head_tx, head_rx) = oneshot::channel();
    match &flight.head {
        Some(head) => {
            let _ = head_tx.send(Ok(head.clone()));
        }
        None => flight.waiting.push(head_tx),
    }
    let replay = flight.sent.iter().cloned().collect();
    Member {
        head: head_rx,
        body: SharedBody::channel(replay, flight.add_channel()),
    }
}

#[cfg(test)]
#[path = "coalesce_tests.rs"]
mod tests;
