//! Shared answers: the optional short response cache and request coalescing, behind one entry.
//!
//! The hot path asks once, with the request's [`Key`] ([`Key::of`]; `None` for requests that are
//! never shared): [`Sharing::lookup`] answers from the cache or from an identical request already
//! in flight ([`Lookup::Answered`]: neither the rate limit nor the token is touched), or lets the
//! request go upstream ([`Lookup::Go`]); its result then goes through [`Turn::finish`], which
//! shares it with the requests that joined meanwhile and fills the cache.
//!
//! - `key.rs`: what makes two requests the same request: a `GET` with an empty body and no
//!   `Range`, `Cache-Control: no-cache`/`no-store` or `Pragma: no-cache`, keyed by tenant, API,
//!   upstream path and query, client (never shared across clients, whose rights differ), the base
//!   the answer's links are rewritten to, and the request headers that change the answer (`VARY`).
//! - `cache.rs`: `[cache] ttl` (off when absent): complete `GET 200`s up to `max_entry_bytes`,
//!   per tenant up to `max_bytes_per_tenant`, oldest first out; `X-Cache: HIT | MISS | BYPASS`.
//! - `coalesce.rs`: the first request of a key leads a flight; requests with the same key that
//!   arrive meanwhile follow it and get the same status, headers and full body. A follower may
//!   join until the head has arrived *and* more than `JOIN_WINDOW` of the body has gone out (that
//!   prefix is replayed to late joiners). The leader's error before its head is every follower's
//!   answer; if the leader goes away before its head, the followers start over.
//! - `flight.rs`: one flight's state and its place in the list of flights open for joining.
//! - `stream.rs`: a member's copy of the body. While nobody has joined, the leader's body streams
//!   straight from upstream (the unshared request pays for no task and no channel); once someone
//!   has, one task (the pump) reads it and copies it to every member through bounded channels of
//!   `CHANNEL_FRAMES` frames: a slow member slows the shared stream for all.

mod cache;
mod coalesce;
mod flight;
mod key;
mod stream;

use std::sync::Arc;

use bytes::Bytes;
use http::Response;

pub(crate) use cache::{Cache, Outcome, X_CACHE};
pub(crate) use key::Key;
pub(crate) use stream::SharedBody;

use crate::config::CacheConfig;
use crate::error::ProxyError;
use crate::rewrite::ResponseStream;
use coalesce::{Coalescer, Join, Leader, Wait};

/// What `handle_inner` answers with: the upstream body streamed through, a share of one (see
/// [`SharedBody`]), or a body made whole here (a cache hit, a leader's error for a
/// follower).
// Moved once per request; boxing the stream would cost an allocation per request instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Downstream {
    Upstream(ResponseStream),
    Shared(SharedBody),
    Full(Bytes),
}

/// The cache (when on) and the coalescing flights of one snapshot: a reload starts both afresh.
#[derive(Debug)]
pub struct Sharing {
    coalescer: Coalescer,
    cache: Option<Arc<Cache>>,
}

/// What [`Sharing::lookup`] found for a request.
#[derive(Debug)]
pub enum Lookup {
    /// Answered without going upstream: from the cache, or (`coalesced`) as a follower of an
    /// identical request in flight, with the leader's answer or error.
    Answered {
        response: Response<Downstream>,
        coalesced: bool,
        cache: Option<Outcome>,
    },
    /// The request goes upstream; hand its result to [`Turn::finish`].
    Go(Turn),
}

/// A request that goes upstream, leading its flight (when shareable) and filling the cache.
#[derive(Debug)]
pub struct Turn {
    leader: Option<Leader>,
    fill: Option<cache::Fill>,
    cache: Option<Outcome>,
}

impl Sharing {
    pub fn new(config: &CacheConfig) -> Self {
        Sharing {
            coalescer: Coalescer::default(),
            cache: Cache::new(config),
        }
    }

    /// The cache, when `[cache]` is on (tests read its size).
    pub fn cache(&self) -> Option<&Arc<Cache>> {
        self.cache.as_ref()
    }

    /// A fresh cached answer, or one already on its way for the same request; else this
    /// request's turn to go upstream.
    pub async fn lookup(&self, key: Option<Key>) -> Lookup {
        let key = key.map(Arc::new);
        let mut outcome = None;
        if let Some(cache) = &self.cache {
            let hit = key.as_ref().and_then(|key| cache.get(key));
            outcome = Some(match (&key, &hit) {
                (_, Some(_)) => Outcome::Hit,
                (Some(_), None) => Outcome::Miss,
                (None, _) => Outcome::Bypass,
            });
            if let Some((headers, data)) = hit {
                let mut response = Response::new(Downstream::Full(data));
                *response.headers_mut() = headers;
                return Lookup::Answered {
                    response: mark(response, outcome),
                    coalesced: false,
                    cache: outcome,
                };
            }
        }
        let mut leader = None;
        while let Some(key) = &key {
            match self.coalescer.join(key) {
                Join::Lead(lead) => {
                    leader = Some(lead);
                    break;
                }
                Join::Follow(member) => {
                    let response = match member.wait().await {
                        Ok(response) => mark(response.map(Downstream::Shared), outcome),
                        Err(Wait::Failed(failure)) => failure.response().map(Downstream::Full),
                        // The leader went away before its answer: start over.
                        Err(Wait::Gone) => continue,
                    };
                    return Lookup::Answered {
                        response,
                        coalesced: true,
                        cache: outcome,
                    };
                }
            }
        }
        let fill = self
            .cache
            .as_ref()
            .zip(key)
            .map(|(cache, key)| cache.fill(Arc::unwrap_or_clone(key)));
        Lookup::Go(Turn {
            leader,
            fill,
            cache: outcome,
        })
    }
}

impl Turn {
    /// What the cache did (`MISS` or `BYPASS`), when it is on.
    pub fn cache(&self) -> Option<Outcome> {
        self.cache
    }

    /// This request's upstream result, shared with its flight's followers (and stored in the
    /// cache when it qualifies); the request's own response comes back.
    pub fn finish(
        self,
        result: Result<Response<ResponseStream>, ProxyError>,
    ) -> Result<Response<Downstream>, ProxyError> {
        let response = match self.leader {
            Some(leader) => leader.publish(result, self.fill)?.map(Downstream::Shared),
            None => result?.map(Downstream::Upstream),
        };
        Ok(mark(response, self.cache))
    }
}

/// `X-Cache`, when the cache is on.
fn mark(mut response: Response<Downstream>, outcome: Option<Outcome>) -> Response<Downstream> {
    if let Some(outcome) = outcome {
        response
            .headers_mut()
            .insert(X_CACHE.clone(), outcome.header());
    }
    response
}
