//! The optional short response cache (`[cache] ttl = "15s"`; off when absent).
//!
//! Only `GET 200` responses whose whole body fits `max_entry_bytes` are kept, for `ttl`; the
//! body is copied while it streams to the client and stored only when it completed within the
//! bound. One store per tenant, bounded by `max_bytes_per_tenant` (oldest entries go first);
//! entries are keyed like coalescing ([`Key`]: path, API, client, the headers that change the
//! answer), so nothing is shared across tenants or clients. A client sending
//! `Cache-Control: no-store`/`no-cache` bypasses it. Responses carry `X-Cache: HIT`, `MISS` or
//! `BYPASS`. A reload starts with an empty cache.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::time::Instant;

use super::key::{Head, Key};
use crate::config::CacheConfig;
use crate::sync::LockExt;

/// The response header saying what the cache did.
pub(crate) static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// What the cache did for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss,
    Bypass,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "HIT",
            Outcome::Miss => "MISS",
            Outcome::Bypass => "BYPASS",
        }
    }

    pub fn header(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }
}

#[derive(Debug)]
struct Entry {
    headers: HeaderMap,
    body: Bytes,
    expires: Instant,
    seq: u64,
    size: usize,
}

#[derive(Debug, Default)]
struct Store {
    entries: HashMap<Key, Entry>,
    /// Insertion order (all entries live `ttl`, so also expiry order).
    order: VecDeque<(u64, Key)>,
    bytes: usize,
    next: u64,
}

impl Store {
    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= old.size;
        }
    }

    /// Drop expired entries, then the oldest while over `limit`.
    fn trim(&mut self, now: Instant, limit: usize) {
        while let Some((seq, key)) = self.order.front() {
            let live = self.entries.get(key).filter(|e| e.seq == *seq);
            match live {
                None => {}
                Some(entry) if entry.expires <= now || self.bytes > limit => {
                    let key = key.clone();
                    self.remove(&key);
                }
                Some(_) => break,
            }
            self.order.pop_front();
        }
    }
}

/// The per-tenant stores.
#[derive(Debug)]
pub struct Cache {
    ttl: Duration,
    max_entry: usize,
    max_tenant: usize,
    tenants: Mutex<HashMap<Arc<str>, Store>>,
}

impl Cache {
    /// `None` when `[cache]` has no `ttl` (off).
    pub fn new(config: &CacheConfig) -> Option<Arc<Cache>> {
        let ttl = config.ttl?;
        Some(Arc::new(Cache {
            ttl,
            max_entry: usize::try_from(config.max_entry_bytes).unwrap_or(usize::MAX),
            max_tenant: usize::try_from(config.max_bytes_per_tenant).unwrap_or(usize::MAX),
            tenants: Mutex::new(HashMap::new()),
        }))
    }

    /// A fresh stored answer: its headers and body (status 200).
    pub fn get(&self, key: &Key) -> Option<(HeaderMap, Bytes)> {
        let mut tenants = self.tenants.locked();
        let store = tenants.get_mut(&key.tenant)?;
        let now = Instant::now();
        store.trim(now, self.max_tenant);
        let entry = store.entries.get(key)?;
        (entry.expires > now).then(|| (entry.headers.clone(), entry.body.clone()))
    }

    fn put(&self, key: Key, headers: HeaderMap, body: Bytes) {
        let size = body.len()
            + headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len())
                .sum::<usize>();
        if body.len() > self.max_entry || size > self.max_tenant {
            return;
        }
        let now = Instant::now();
        let mut tenants = self.tenants.locked();
        let store = tenants.entry(key.tenant.clone()).or_default();
        store.remove(&key);
        let seq = store.next;
        store.next += 1;
        store.order.push_back((seq, key.clone()));
        store.bytes += size;
        store.entries.insert(
            key,
            Entry {
                headers,
                body,
                expires: now + self.ttl,
                seq,
                size,
            },
        );
        store.trim(now, self.max_tenant);
    }

    /// Bytes held for `tenant` (tests, metrics).
    pub fn tenant_bytes(&self, tenant: &str) -> usize {
        self.tenants.locked().get(tenant).map_or(0, |s| s.bytes)
    }

    /// Where a response for `key` goes once its body is complete.
    pub fn fill(self: &Arc<Self>, key: Key) -> Fill {
        Fill {
            cache: self.clone(),
            key,
        }
    }
}

/// A pending store of one response.
#[derive(Debug)]
pub struct Fill {
    cache: Arc<Cache>,
    key: Key,
}

impl Fill {
    /// Bodies larger than this are not kept.
    pub fn max_bytes(&self) -> usize {
        self.cache.max_entry
    }

    /// The body completed: keep it if the answer may be kept ([`storable`]).
    pub fn complete(self, head: &Head, body: Bytes) {
        if storable(head) {
            self.cache.put(self.key, head.headers.clone(), body);
        }
    }
}

/// Only a `200` is kept: an error is not worth repeating, and a `206` is an incomplete answer
/// (Graph's `Warning: 199`: a federated provider failed), which a later request must not get
/// as if it were whole (see [`Head::is_partial`]).
pub(super) fn storable(head: &Head) -> bool {
    head.status == StatusCode::OK
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(tenant: &str, path: &str) -> Key {
        Key::new(tenant.into(), 0, path.into(), None, None, Box::new([]))
    }

    fn cache(ttl: u64, entry: u64, tenant: u64) -> Arc<Cache> {
        Cache::new(&CacheConfig {
            ttl: Some(Duration::from_secs(ttl)),
            max_entry_bytes: entry,
            max_bytes_per_tenant: tenant,
        })
        .unwrap()
    }

    fn head(status: StatusCode) -> Head {
        Head {
            status,
            headers: HeaderMap::new(),
            empty: false,
            warnings: None,
        }
    }

    #[test]
    fn off_without_ttl() {
        assert!(Cache::new(&CacheConfig::default()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_ttl() {
        let c = cache(15, 1024, 4096);
        c.fill(key("a", "/x"))
            .complete(&head(StatusCode::OK), Bytes::from_static(b"body"));
        assert_eq!(c.get(&key("a", "/x")).unwrap().1, "body");
        tokio::time::advance(Duration::from_secs(14)).await;
        assert!(c.get(&key("a", "/x")).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(c.get(&key("a", "/x")).is_none());
        assert_eq!(c.tenant_bytes("a"), 0, "expired entries are dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn only_200_that_fit_and_never_across_tenants() {
        let c = cache(15, 4, 4096);
        c.fill(key("a", "/404"))
            .complete(&head(StatusCode::NOT_FOUND), Bytes::from_static(b"x"));
        c.fill(key("a", "/big"))
            .complete(&head(StatusCode::OK), Bytes::from_static(b"12345"));
        c.fill(key("a", "/ok"))
            .complete(&head(StatusCode::OK), Bytes::from_static(b"1234"));
        assert!(c.get(&key("a", "/404")).is_none());
        assert!(c.get(&key("a", "/big")).is_none());
        assert!(c.get(&key("a", "/ok")).is_some());
        assert!(c.get(&key("b", "/ok")).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_answer_is_never_kept() {
        let c = cache(15, 1024, 4096);
        let mut partial = head(StatusCode::PARTIAL_CONTENT);
        partial.headers.insert(
            http::header::WARNING,
            HeaderValue::from_static("199 - \"Microsoft/MCAS/504/10000\""),
        );
        c.fill(key("a", "/alerts"))
            .complete(&partial, Bytes::from_static(b"{\"value\":[]}"));
        assert!(c.get(&key("a", "/alerts")).is_none());
        assert_eq!(c.tenant_bytes("a"), 0);
        // Nor anything but a 200 (a 2xx that is not the whole answer, or says nothing).
        for status in [
            StatusCode::CREATED,
            StatusCode::NO_CONTENT,
            StatusCode::NOT_MODIFIED,
        ] {
            assert!(!storable(&head(status)), "{status}");
        }
        assert!(storable(&head(StatusCode::OK)));
    }

    #[tokio::test(start_paused = true)]
    async fn oldest_go_first_over_the_tenant_bound() {
        let c = cache(15, 100, 250);
        for path in ["/1", "/2", "/3"] {
            c.fill(key("a", path))
                .complete(&head(StatusCode::OK), Bytes::from(vec![b'x'; 100]));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        c.fill(key("b", "/1"))
            .complete(&head(StatusCode::OK), Bytes::from(vec![b'x'; 100]));
        assert!(c.get(&key("a", "/1")).is_none(), "oldest evicted");
        assert!(c.get(&key("a", "/2")).is_some());
        assert!(c.get(&key("a", "/3")).is_some());
        assert!(c.get(&key("b", "/1")).is_some(), "other tenants untouched");
        assert_eq!(c.tenant_bytes("a"), 200);
    }
}
