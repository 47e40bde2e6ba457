//! Request coalescing: identical concurrent `GET`s share one upstream request.
//!
//! A request is coalescable when it is a `GET` with an empty body and no `Range`,
//! `Cache-Control: no-cache`/`no-store` or `Pragma: no-cache`. Its [`Key`] is the tenant, the
//! API, the path and query as sent upstream, the client (never shared across clients, whose
//! rights differ), the base the answer's links are rewritten to, and the request headers that
//! change the answer ([`VARY`]).
//!
//! The first request of a key (the leader) goes upstream as usual: rate limit, token, send.
//! Requests with the same key that arrive meanwhile (followers) do not touch the rate limit or
//! the token: they wait for the leader's response head, then get the same status, headers and
//! the full body. A follower may join until the response head has arrived *and* the body sent so
//! far is larger than [`JOIN_WINDOW`] (that prefix is kept and replayed to late joiners); after
//! that a new request starts a new flight.
//!
//! The body is read from upstream by one task and copied to every member (the leader included)
//! through a bounded channel of [`CHANNEL_FRAMES`] frames each: a slow member slows the shared
//! stream for all (as a slow client slows its own stream without coalescing); a member that goes
//! away is dropped, and the upstream body is dropped once no member is left. An error of the
//! leader before its response head (rate limited, token, upstream unreachable) is returned to
//! every follower as the same error response. If the leader goes away before its head, the
//! followers start over (one of them leads).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot};

use crate::cache::Fill;
use crate::error::ProxyError;
use crate::rewrite::{BoxError, ResponseStream};

/// Frames buffered per member before the shared stream waits for it.
pub const CHANNEL_FRAMES: usize = 16;
/// Body bytes kept for late joiners; once the body sent passes this, no one joins any more.
pub const JOIN_WINDOW: usize = 64 * 1024;

/// The request headers that change the answer, in the key.
pub const VARY: [HeaderName; 5] = [
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::ACCEPT_LANGUAGE,
    HeaderName::from_static("prefer"),
    HeaderName::from_static("consistencylevel"),
];

/// What makes two requests the same request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub tenant: Arc<str>,
    pub api: usize,
    pub path: Box<str>,
    pub client: Option<Arc<str>>,
    pub links: Option<Box<str>>,
    pub headers: Box<[(u8, HeaderValue)]>,
}

impl Key {
    /// The key of a request that may be shared (coalesced or cached); `None` for one that may
    /// not: not a `GET`, a body, `Range`, or the client asked for a fresh answer.
    #[allow(clippy::too_many_arguments)]
    pub fn of(
        method: &Method,
        headers: &HeaderMap,
        body_empty: bool,
        tenant: &Arc<str>,
        api: usize,
        path: &str,
        client: Option<&Arc<str>>,
        links: Option<&str>,
    ) -> Option<Key> {
        if method != Method::GET || !body_empty || headers.contains_key(header::RANGE) {
            return None;
        }
        if wants_fresh(headers) {
            return None;
        }
        let mut vary = Vec::new();
        for (i, name) in VARY.iter().enumerate() {
            for value in headers.get_all(name) {
                vary.push((i as u8, value.clone()));
            }
        }
        Some(Key {
            tenant: tenant.clone(),
            api,
            path: path.into(),
            client: client.cloned(),
            links: links.map(Into::into),
            headers: vary.into_boxed_slice(),
        })
    }
}

/// `Cache-Control: no-cache`/`no-store` or `Pragma: no-cache`.
pub fn wants_fresh(headers: &HeaderMap) -> bool {
    let has = |name: HeaderName, what: &[&str]| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',').any(|d| {
                    let d = d.trim();
                    what.iter().any(|w| d.eq_ignore_ascii_case(w))
                })
            })
        })
    };
    has(header::CACHE_CONTROL, &["no-cache", "no-store"]) || has(header::PRAGMA, &["no-cache"])
}

/// The response head every member gets.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub empty: bool,
}

/// The leader's error, as its response.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: StatusCode,
    pub body: Bytes,
    pub retry_after: Option<u64>,
}

impl Failure {
    fn of(err: &ProxyError) -> Self {
        Failure {
            status: err.status(),
            body: err.body(),
            retry_after: err.retry_after().map(|d| d.as_secs()),
        }
    }

    /// The same response the leader's error makes.
    pub fn response(&self) -> Response<Bytes> {
        let mut response = Response::new(self.body.clone());
        *response.status_mut() = self.status;
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[derive(Debug, Clone)]
enum Piece {
    Data(Bytes),
    Trailers(HeaderMap),
    Error(Arc<str>),
}

#[derive(Debug, Default)]
struct Flight {
    head: Option<Head>,
    /// Members still waiting for the head.
    waiting: Vec<oneshot::Sender<Result<Head, Failure>>>,
    members: Vec<mpsc::Sender<Piece>>,
    /// The body so far, while others may still join.
    sent: Vec<Bytes>,
    sent_bytes: usize,
    open: bool,
}

impl Flight {
    fn add_member(&mut self) -> Member {
        let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
        let (head_tx, head_rx) = oneshot::channel();
        match &self.head {
            Some(head) => {
                let _ = head_tx.send(Ok(head.clone()));
            }
            None => self.waiting.push(head_tx),
        }
        self.members.push(tx);
        Member {
            head: head_rx,
            body: SharedBody {
                replay: self.sent.iter().cloned().collect(),
                rx,
                empty: false,
                done: false,
            },
        }
    }
}

type Flights = Arc<Mutex<HashMap<Key, Arc<Mutex<Flight>>>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The flights in progress (one per snapshot).
#[derive(Debug, Default)]
pub struct Coalescer {
    flights: Flights,
}

/// A request's place: lead a new flight, or follow one in progress.
#[derive(Debug)]
pub enum Join {
    Lead(Leader),
    Follow(Member),
}

impl Coalescer {
    pub fn join(&self, key: &Key) -> Join {
        let mut flights = lock(&self.flights);
        if let Some(flight) = flights.get(key) {
            let mut flight = lock(flight);
            if flight.open {
                return Join::Follow(flight.add_member());
            }
        }
        let flight = Arc::new(Mutex::new(Flight {
            open: true,
            ..Flight::default()
        }));
        let member = lock(&flight).add_member();
        flights.insert(key.clone(), flight.clone());
        Join::Lead(Leader {
            key: key.clone(),
            flight,
            flights: self.flights.clone(),
            member: Some(member),
        })
    }

    /// Flights open for joining (tests, metrics).
    pub fn open_flights(&self) -> usize {
        lock(&self.flights).len()
    }
}

/// No one joins `flight` any more.
fn close(flights: &Flights, key: &Key, flight: &Arc<Mutex<Flight>>) {
    let mut map = lock(flights);
    if map.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
        map.remove(key);
    }
    let mut f = lock(flight);
    f.open = false;
    f.sent = Vec::new();
}

/// A follower (or the leader itself) of a flight.
#[derive(Debug)]
pub struct Member {
    head: oneshot::Receiver<Result<Head, Failure>>,
    body: SharedBody,
}

/// Why a follower got no response: the leader failed (same error), or went away (start over).
#[derive(Debug)]
pub enum Wait {
    Failed(Failure),
    Gone,
}

impl Member {
    pub async fn wait(mut self) -> Result<Response<SharedBody>, Wait> {
        match self.head.await {
            Ok(Ok(head)) => {
                self.body.empty = head.empty;
                let mut response = Response::new(self.body);
                *response.status_mut() = head.status;
                *response.headers_mut() = head.headers;
                Ok(response)
            }
            Ok(Err(failure)) => Err(Wait::Failed(failure)),
            Err(_) => Err(Wait::Gone),
        }
    }
}

/// The request that goes upstream for its flight.
#[derive(Debug)]
pub struct Leader {
    key: Key,
    flight: Arc<Mutex<Flight>>,
    flights: Flights,
    member: Option<Member>,
}

impl Leader {
    /// Share the leader's result with its flight; the leader's own response comes back. `fill`
    /// also gets the body (the cache).
    pub fn publish(
        mut self,
        result: Result<Response<ResponseStream>, ProxyError>,
        fill: Option<Fill>,
    ) -> Result<Response<SharedBody>, ProxyError> {
        // Only `publish` (which consumes the leader) and `drop` take it.
        #[allow(clippy::expect_used)]
        let member = self.member.take().expect("a leader publishes once");
        let response = match result {
            Ok(response) => response,
            Err(err) => {
                close(&self.flights, &self.key, &self.flight);
                let failure = Failure::of(&err);
                let mut f = lock(&self.flight);
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
        };
        {
            let mut f = lock(&self.flight);
            f.head = Some(head.clone());
            for waiting in f.waiting.drain(..) {
                let _ = waiting.send(Ok(head.clone()));
            }
        }
        let mut own = member.body;
        own.empty = head.empty;
        if head.empty {
            close(&self.flights, &self.key, &self.flight);
            lock(&self.flight).members.clear();
            if let Some(fill) = fill {
                fill.complete(&head, Bytes::new());
            }
        } else {
            let flights = self.flights.clone();
            let key = self.key.clone();
            let flight = self.flight.clone();
            tokio::spawn(pump(body, flights, key, flight, fill.map(|f| (f, head))));
        }
        Ok(Response::from_parts(parts, own))
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if self.member.is_some() {
            // Gone before its head: the followers start over.
            close(&self.flights, &self.key, &self.flight);
            let mut f = lock(&self.flight);
            f.waiting.clear();
            f.members.clear();
        }
    }
}

/// Read the upstream body once and copy it to every member.
async fn pump(
    mut body: ResponseStream,
    flights: Flights,
    key: Key,
    flight: Arc<Mutex<Flight>>,
    mut fill: Option<(Fill, Head)>,
) {
    let mut kept = Vec::new();
    let mut kept_bytes = 0usize;
    let mut clean_end = false;
    loop {
        let piece = match body.frame().await {
            None => {
                clean_end = true;
                break;
            }
            Some(Err(e)) => Piece::Error(e.to_string().into()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => Piece::Data(data),
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => Piece::Trailers(trailers),
                    Err(_) => continue,
                },
            },
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
            let mut f = lock(&flight);
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
            f.members.retain(|m| !m.is_closed());
            if f.members.is_empty() {
                shut = true;
            }
            (f.members.clone(), shut)
        };
        let members = if shut && lock(&flight).open {
            close(&flights, &key, &flight);
            // Joined between the two locks: served too.
            let mut f = lock(&flight);
            f.members.retain(|m| !m.is_closed());
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
    close(&flights, &key, &flight);
    lock(&flight).members.clear();
    if let (true, Some((fill, head))) = (clean_end, fill) {
        fill.complete(&head, concat(kept, kept_bytes));
    }
}

fn concat(parts: Vec<Bytes>, len: usize) -> Bytes {
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    let mut all = bytes::BytesMut::with_capacity(len);
    for part in parts {
        all.extend_from_slice(&part);
    }
    all.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(method: Method, headers: &[(&str, &str)], client: Option<&str>) -> Option<Key> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap_or(header::ACCEPT),
                HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("x")),
            );
        }
        let client: Option<Arc<str>> = client.map(Into::into);
        Key::of(
            &method,
            &map,
            true,
            &Arc::from("t"),
            0,
            "/api/incidents",
            client.as_ref(),
            None,
        )
    }

    #[test]
    fn only_plain_gets_are_shared() {
        assert!(key(Method::GET, &[], None).is_some());
        assert!(key(Method::POST, &[], None).is_none());
        assert!(key(Method::HEAD, &[], None).is_none());
        assert!(key(Method::GET, &[("range", "bytes=0-9")], None).is_none());
        for fresh in ["no-store", "No-Cache", "max-age=0, no-cache"] {
            assert!(key(Method::GET, &[("cache-control", fresh)], None).is_none());
        }
        assert!(key(Method::GET, &[("pragma", "no-cache")], None).is_none());
        assert!(key(Method::GET, &[("cache-control", "max-age=0")], None).is_some());
    }

    #[test]
    fn clients_and_answer_changing_headers_are_in_the_key() {
        let plain = key(Method::GET, &[], None);
        assert_ne!(plain, key(Method::GET, &[], Some("a")));
        assert_ne!(
            key(Method::GET, &[], Some("a")),
            key(Method::GET, &[], Some("b"))
        );
        assert_ne!(
            plain,
            key(Method::GET, &[("prefer", "odata.maxpagesize=5")], None)
        );
        assert_ne!(
            plain,
            key(Method::GET, &[("consistencylevel", "eventual")], None)
        );
        assert_eq!(plain, key(Method::GET, &[("user-agent", "x")], None));
    }
}

/// A member's copy of the shared body: the replayed prefix, then the channel.
#[derive(Debug)]
pub struct SharedBody {
    replay: VecDeque<Bytes>,
    rx: mpsc::Receiver<Piece>,
    empty: bool,
    done: bool,
}

impl Body for SharedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.empty || self.done {
            return Poll::Ready(None);
        }
        if let Some(data) = self.replay.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Piece::Data(data))) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Poll::Ready(Some(Piece::Trailers(t))) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Poll::Ready(Some(Piece::Error(message))) => {
                self.done = true;
                Poll::Ready(Some(Err(message.to_string().into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.empty || self.done
    }

    fn size_hint(&self) -> SizeHint {
        if self.empty {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }
}
