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
//! While no one has joined, the leader's body streams straight from upstream to its client, each
//! frame kept for late joiners while the window is open: the common, unshared request pays for
//! no task and no channel. Once someone has joined, the body is read from upstream by one task
//! (the pump) and copied to every member (the leader included) through a bounded channel of
//! [`CHANNEL_FRAMES`] frames each: a slow member slows the shared
//! stream for all (as a slow client slows its own stream without coalescing); a member that goes
//! away is dropped, and the upstream body is dropped once no member is left. An error of the
//! leader before its response head (rate limited, token, upstream unreachable) is returned to
//! every follower as the same error response. If the leader goes away before its head, the
//! followers start over (one of them leads).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

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
#[derive(Debug, Clone)]
pub struct Key {
    pub tenant: Arc<str>,
    pub api: usize,
    pub path: Box<str>,
    pub client: Option<Arc<str>>,
    pub links: Option<Box<str>>,
    pub headers: Box<[(u8, HeaderValue)]>,
    /// Of all the above, computed once: a flight's key is hashed on join and on close, and
    /// the cache's on every lookup.
    hash: u64,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.api == other.api
            && self.tenant == other.tenant
            && self.path == other.path
            && self.client == other.client
            && self.links == other.links
            && self.headers == other.headers
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The fixed-seed hasher of [`Key`]s: the maps hash the result again with their own seed.
static KEY_HASHER: std::sync::LazyLock<foldhash::fast::RandomState> =
    std::sync::LazyLock::new(foldhash::fast::RandomState::default);

impl Key {
    pub fn new(
        tenant: Arc<str>,
        api: usize,
        path: Box<str>,
        client: Option<Arc<str>>,
        links: Option<Box<str>>,
        headers: Box<[(u8, HeaderValue)]>,
    ) -> Key {
        use std::hash::BuildHasher as _;
        let hash = KEY_HASHER.hash_one((&tenant, api, &path, &client, &links, &headers));
        Key {
            tenant,
            api,
            path,
            client,
            links,
            headers,
            hash,
        }
    }

    /// The key of a request that may be shared (coalesced or cached); `None` for one that may
    /// not: not a `GET`, a body, `Range`, or the client asked for a fresh answer. One pass over
    /// the request's headers (name comparisons, no lookups).
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
        if method != Method::GET || !body_empty {
            return None;
        }
        let mut vary = Vec::new();
        for (name, value) in headers {
            if name == header::RANGE {
                return None;
            }
            if (name == header::CACHE_CONTROL && has_directive(value, &["no-cache", "no-store"]))
                || (name == header::PRAGMA && has_directive(value, &["no-cache"]))
            {
                return None;
            }
            if let Some(i) = VARY.iter().position(|v| v == name) {
                vary.push((i as u8, value.clone()));
            }
        }
        // Canonical order: the same headers sent in another order make the same key.
        vary.sort_by_key(|(i, _)| *i);
        Some(Key::new(
            tenant.clone(),
            api,
            path.into(),
            client.cloned(),
            links.map(Into::into),
            vary.into_boxed_slice(),
        ))
    }
}

/// A comma-separated header value holds one of `what` (ASCII case-insensitive).
fn has_directive(value: &HeaderValue, what: &[&str]) -> bool {
    value.to_str().is_ok_and(|v| {
        v.split(',').any(|d| {
            let d = d.trim();
            what.iter().any(|w| d.eq_ignore_ascii_case(w))
        })
    })
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

impl Piece {
    /// A polled frame as a piece; `None` for a frame that is neither data nor trailers.
    fn of(polled: Result<Frame<Bytes>, BoxError>) -> Option<Piece> {
        match polled {
            Err(e) => Some(Piece::Error(e.to_string().into())),
            Ok(frame) => match frame.into_data() {
                Ok(data) => Some(Piece::Data(data)),
                Err(frame) => frame.into_trailers().ok().map(Piece::Trailers),
            },
        }
    }

    fn into_frame(self) -> Result<Frame<Bytes>, BoxError> {
        match self {
            Piece::Data(data) => Ok(Frame::data(data)),
            Piece::Trailers(t) => Ok(Frame::trailers(t)),
            Piece::Error(message) => Err(message.to_string().into()),
        }
    }
}

#[derive(Debug, Default)]
struct Flight {
    head: Option<Head>,
    /// Members still waiting for the head.
    waiting: Vec<oneshot::Sender<Result<Head, Failure>>>,
    /// Where the pump sends the body: the followers, and the leader once a pump runs.
    members: Vec<mpsc::Sender<Piece>>,
    /// The body so far, while others may still join.
    sent: Vec<Bytes>,
    sent_bytes: usize,
    open: bool,
}

impl Flight {
    fn add_member(&mut self) -> Member {
        let (head_tx, head_rx) = oneshot::channel();
        match &self.head {
            Some(head) => {
                let _ = head_tx.send(Ok(head.clone()));
            }
            None => self.waiting.push(head_tx),
        }
        let replay = self.sent.iter().cloned().collect();
        Member {
            head: head_rx,
            body: SharedBody::channel(replay, self.add_channel()),
        }
    }

    fn add_channel(&mut self) -> mpsc::Receiver<Piece> {
        let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
        self.members.push(tx);
        rx
    }

    /// Someone still listens (members that went away are forgotten here).
    fn has_members(&mut self) -> bool {
        self.members.retain(|m| !m.is_closed());
        !self.members.is_empty()
    }
}

/// Keyed by the whole request (tenant, path, client...): foldhash, seeded per process, costs a
/// fraction of SipHash on keys this long.
type FlightMap = HashMap<Arc<Key>, Arc<Mutex<Flight>>, foldhash::fast::RandomState>;
type Flights = Arc<Mutex<FlightMap>>;

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
    pub fn join(&self, key: &Arc<Key>) -> Join {
        let mut flights = lock(&self.flights);
        let slot = flights.entry(key.clone());
        if let std::collections::hash_map::Entry::Occupied(flight) = &slot {
            let mut flight = lock(flight.get());
            if flight.open {
                return Join::Follow(flight.add_member());
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

    /// Flights open for joining (tests, metrics).
    pub fn open_flights(&self) -> usize {
        lock(&self.flights).len()
    }
}

/// A flight and where it is listed.
#[derive(Debug)]
struct Place {
    key: Arc<Key>,
    flight: Arc<Mutex<Flight>>,
    flights: Flights,
}

impl Place {
    /// No one joins any more.
    fn close(&self) {
        let mut map = lock(&self.flights);
        self.unlist(&mut map, &mut lock(&self.flight));
    }

    /// Close unless someone joined (then `false`, and the flight stays open). Both locks are
    /// held, in `join`'s order, so no one can join between the look and the close.
    fn close_unless_followed(&self) -> bool {
        let mut map = lock(&self.flights);
        let mut f = lock(&self.flight);
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
    fn dissolve(&self) {
        self.close();
        let mut f = lock(&self.flight);
        f.waiting.clear();
        f.members.clear();
    }
}

/// A follower of a flight.
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
    pub fn publish(
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
                let mut f = lock(&place.flight);
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
        let followed = {
            let mut f = lock(&place.flight);
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
            let rx = lock(&place.flight).add_channel();
            tokio::spawn(pump(body, First::Read, place, fill.map(|f| (f, head))));
            SharedBody::channel(VecDeque::new(), rx)
        } else {
            SharedBody {
                mode: Mode::Direct {
                    body: Some(body),
                    place: Some(place),
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

/// What polling a body gives.
type Polled = Option<Result<Frame<Bytes>, BoxError>>;

/// Where a pump starts: reading, or with what the leader's direct stream read last.
#[derive(Debug)]
enum First {
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
async fn pump(
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
            let mut f = lock(&place.flight);
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
        let members = if shut && lock(&place.flight).open {
            place.close();
            // Joined between the two locks: served too.
            let mut f = lock(&place.flight);
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

/// A member's copy of the shared body.
///
/// The leader's copy starts `Direct`: frames come straight from upstream, each kept for late
/// joiners while the flight is open. When it finds a follower (checked under the flight's lock
/// as each frame arrives, so no frame is missed), it hands the upstream body and that frame to a
/// [`pump`] and becomes a `Channel` like the followers. Followers' copies are `Channel`s: the
/// replayed prefix, then the pump's frames.
#[derive(Debug)]
pub struct SharedBody {
    mode: Mode,
    empty: bool,
    done: bool,
}

// One per response; boxing the stream would cost an allocation per request instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Mode {
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
    fn channel(replay: VecDeque<Bytes>, rx: mpsc::Receiver<Piece>) -> Self {
        SharedBody {
            mode: Mode::Channel { replay, rx },
            empty: false,
            done: false,
        }
    }

    fn empty() -> Self {
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
            let mut f = lock(&open.flight);
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
            let rx = lock(&place.flight).add_channel();
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
