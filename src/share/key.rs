//! What makes two requests the same request (the [`Key`] of the cache and of coalescing), and
//! the response head both hand out.

use std::sync::Arc;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::metrics::UpstreamWarnings;

/// The request headers that change the answer, in the key.
pub(crate) const VARY: [HeaderName; 5] = [
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
    /// What the API warned about on it, for every member's access line.
    pub warnings: Option<Arc<UpstreamWarnings>>,
}

impl Head {
    /// An answer that is not the whole answer: Graph's 206 with `Warning: 199` (a federated
    /// provider failed). `Range` requests are never shared (see [`Key::of`]), so no 206 here is
    /// a range. It goes to the requests that asked before it came, never to one that comes
    /// after its head: the flight closes at once and the cache does not keep it.
    pub(super) fn is_partial(&self) -> bool {
        self.status == StatusCode::PARTIAL_CONTENT
    }
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
