//! `[rate_limit]` as typed settings: policies, windows, route classes and the backend (local or
//! Redis) where their state lives.
//!
//! One file per config section (split out of `mod.rs`, which had grown past 500 lines); the
//! built-in policy is in `defaults.rs`.

use std::num::NonZeroU32;
use std::time::Duration;

use secrecy::SecretString;

/// `[rate_limit]`: per-tenant limits, how to wait for them, and where their state lives.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// The global policy (built-in defaults with `[rate_limit]` keys laid over them).
    pub defaults: LimitPolicy,
    /// Route classes with their own limits, matched by path prefix, longest prefix first: every
    /// `[[rate_limit.route]]`, then one per `[[api]]` (its prefix, its limits) unless a
    /// `[[rate_limit.route]]` has exactly that prefix already (the route wins).
    ///
    /// The path matched is the request path after the tenant prefix (the whole path in header
    /// mode), query excluded. A path of an `[[api]]` still carries that API's prefix there: its
    /// routes are written `/mde/api/advancedqueries`, and `/api/...` routes cover `[cloud]`'s API
    /// only.
    pub routes: Vec<RouteLimit>,
    pub backend: LimitBackend,
}

/// Limits of one route class plus how over-limit requests are treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitPolicy {
    pub windows: Windows,
    pub mode: LimitMode,
    /// Longest a queued request may wait for its slot before it gets a 429.
    pub max_wait: Duration,
    /// Most requests that may wait per tenant and route class; more get a 429 at once.
    pub max_queue: usize,
}

/// The two windows. `None` (configured as `0`) means no limit on that window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub per_minute: Option<NonZeroU32>,
    pub per_hour: Option<NonZeroU32>,
    /// Requests that may pass at once after a quiet spell (`burst`); `None`: derived from the
    /// per-minute limit (see `ratelimit::gcra`).
    pub burst: Option<NonZeroU32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMode {
    /// Over the limit: wait for a slot, first come first served (legacy tools don't retry).
    Queue,
    /// Over the limit: 429 at once.
    Reject,
}

/// A route class: a `[[rate_limit.route]]`, or the implicit one of an `[[api]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLimit {
    /// Matched on whole path segments, ASCII case-insensitively, e.g. `/api/advancedhunting` or
    /// an `[[api]]`'s `/mde`.
    pub path_prefix: String,
    /// Only the windows the route sets; a window it leaves out is not limited for this class.
    pub windows: Windows,
}

/// Where limiter state lives.
#[derive(Debug, Clone)]
pub enum LimitBackend {
    /// In this process (the default; nothing to install).
    Local,
    /// Shared by every replica through Redis.
    Redis(RedisBackendConfig),
}

/// `PartialEq` compares the password as a secret: in constant time, never copied out of its
/// `SecretString` (a reload compares the running backend with the new one).
#[derive(Debug, Clone)]
pub struct RedisBackendConfig {
    /// `redis://host:port[/db]` (no password inline: that is `password`).
    pub url: String,
    /// From `backend_password = { env = ... } | { file = ... }`.
    pub password: Option<SecretString>,
    pub on_error: OnBackendError,
    /// How many replicas share the limits; the local fallback allows `1/replicas` of each limit.
    pub replicas: NonZeroU32,
}

impl PartialEq for RedisBackendConfig {
    fn eq(&self, other: &Self) -> bool {
        let same_password = match (&self.password, &other.password) {
            (None, None) => true,
            (Some(a), Some(b)) => secrets_equal(a, b),
            _ => false,
        };
        self.url == other.url
            && self.on_error == other.on_error
            && self.replicas == other.replicas
            && same_password
    }
}

impl Eq for RedisBackendConfig {}

/// Whether two secrets hold the same text, in time that depends on their lengths only, without
/// copying either out of its `SecretString`.
pub(crate) fn secrets_equal(a: &SecretString, b: &SecretString) -> bool {
    use secrecy::ExposeSecret as _;
    let (a, b) = (a.expose_secret().as_bytes(), b.expose_secret().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBackendError {
    /// Fall back to local limits divided by `replicas` (logged and counted).
    Local,
    /// Answer 429 while the backend is unreachable.
    Reject,
}
