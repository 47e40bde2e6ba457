//! The shared backend: every replica's decisions for a (tenant, route class) run as one atomic Lua
//! script on Redis, on Redis's own clock, so N replicas together stay inside one limit.
//!
//! Failure handling lives here too: every call is bounded by [`CALL_TIMEOUT`]; after a failure
//! Redis is skipped for [`RETRY_AFTER_FAILURE`] (so requests don't each pay a timeout while it is
//! down), then one request probes it again; the outage is logged once when it starts and once
//! when it ends. The caller decides what a failure means (`on_backend_error`).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, Script};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::gcra::ClassParams;
use super::local::Refusal;
use super::verdict::Verdict;
use super::RateLimitInitError;
use crate::config::{OnBackendError, RedisBackendConfig};

/// Longest a decision waits for Redis before falling back.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// How long Redis is skipped after a failure before one request tries it again.
pub(crate) const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// KEYS[1]: the class's GCRA state, a hash of theoretical arrival times in microseconds (`m`, `h`);
/// KEYS[2]: the class's pause flag, whose PTTL is the pause.
/// ARGV: emission interval and tolerance (microseconds) of the minute window, then of the hour
/// window; an interval of 0 means the window is not limited.
/// Returns {1, 0, 0} admitted, {0, wait_ms, 0|1} refused by the minute|hour window (the longer
/// wait if both refuse), {0, pause_ms, 2} paused. Nothing is written unless admitted.
/// Microsecond timestamps (~2^51) are exact in Lua's doubles; `%.0f` keeps them exact as strings.
const DECIDE: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return {0, paused, 2} end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local fields = {'m', 'h'}
local new = {}
local wait, which, horizon = 0, 0, 0
for i = 1, 2 do
  local t = tonumber(ARGV[2 * i - 1])
  if t > 0 then
    local tau = tonumber(ARGV[2 * i])
    local tat = tonumber(redis.call('HGET', KEYS[1], fields[i])) or now
    if tat < now then tat = now end
    if tat - tau - now > wait then wait, which = tat - tau - now, i - 1 end
    new[i] = tat + t
    if new[i] - now > horizon then horizon = new[i] - now end
  end
end
if wait > 0 then return {0, math.ceil(wait / 1000), which} end
for i = 1, 2 do
  if new[i] then redis.call('HSET', KEYS[1], fields[i], string.format('%.0f', new[i])) end
end
if horizon > 0 then redis.call('PEXPIRE', KEYS[1], math.ceil(horizon / 1000) + 1000) end
return {1, 0, 0}
";

/// KEYS[1]: pause flag; ARGV[1]: pause in ms. Only ever lengthens the pause.
const PAUSE: &str = r"
local want = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < want then redis.call('SET', KEYS[1], '1', 'PX', want) end
return 1
";

/// Redis keys and script arguments of one (tenant, route class).
#[derive(Debug)]
pub(crate) struct RedisClass {
    state_key: Box<str>,
    pause_key: Box<str>,
    args: [u64; 4],
    params: ClassParams,
}

impl RedisClass {
    /// `class` is `default` or the route's prefix: stable across replicas even if their route
    /// lists differ in order. The `{...}` hash tag keeps both keys of a class in one cluster slot.
    pub(crate) fn new(tenant_id: &str, class: &str, params: ClassParams) -> Self {
        let clean = |s: &str| s.replace(['{', '}'], "_");
        let tag = format!("defender-proxy:{{{}/{}}}", clean(tenant_id), clean(class));
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let mut args = [0; 4];
        for (i, p) in params.iter().enumerate() {
            if let Some(p) = p {
                // At least 1 µs: 0 would mean "not limited" to the script.
                args[2 * i] = micros(p.period).max(1);
                args[2 * i + 1] = micros(p.tolerance());
            }
        }
        Self {
            state_key: format!("{tag}:tat").into(),
            pause_key: format!("{tag}:pause").into(),
            args,
            params,
        }
    }

    pub(crate) fn pause_key(&self) -> &str {
        &self.pause_key
    }
}

/// Why no decision came from Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// Skipped: Redis failed less than [`RETRY_AFTER_FAILURE`] ago.
    Skipped,
    /// The call failed or timed out (counted).
    Failed,
}

pub(crate) struct RedisBackend {
    client: redis::Client,
    /// Created on first use: building it needs a running tokio runtime, `RateLimiter::new` may
    /// not have one. `None` if the client refused the configuration (then every call fails).
    manager: OnceLock<Option<ConnectionManager>>,
    decide: Script,
    pause: Script,
    /// For logs: the URL without credentials.
    url: String,
    pub(crate) on_error: OnBackendError,
    /// Replicas sharing the limits: the local fallback allows each a 1/replicas share.
    pub(crate) replicas: NonZeroU32,
    base: Instant,
    /// Milliseconds since `base` until which Redis is skipped; 0: not skipping.
    skip_until_ms: AtomicU64,
    /// In an outage (logged when it starts, and when it ends).
    down: AtomicBool,
    errors: AtomicU64,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.url)
            .field("on_error", &self.on_error)
            .field("down", &self.down)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// No I/O: the connection is made on the first decision.
    pub(crate) fn new(config: &RedisBackendConfig) -> Result<Self, RateLimitInitError> {
        let url = redact(&config.url);
        let bad_url = |source| RateLimitInitError::RedisUrl {
            url: url.clone(),
            source,
        };
        let mut info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(bad_url)?;
        if let Some(password) = &config.password {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose_secret());
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(bad_url)?;
        Ok(Self {
            client,
            manager: OnceLock::new(),
            decide: Script::new(DECIDE),
            pause: Script::new(PAUSE),
            url,
            on_error: config.on_error,
            replicas: config.replicas,
            base: Instant::now(),
            skip_until_ms: AtomicU64::new(0),
            down: AtomicBool::new(false),
            errors: AtomicU64::new(0),
        })
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// One atomic decision for both windows of a class.
    pub(crate) async fn decide(&self, class: &RedisClass) -> Result<Verdict, Unavailable> {
        let mut invocation = self.decide.key(&*class.state_key);
        invocation.key(&*class.pause_key).arg(&class.args[..]);
        let reply: Vec<i64> = self
            .call(|mut con| {
                let invocation = &invocation;
                async move { invocation.invoke_async(&mut con).await }
            })
            .await?;
        let wait = Duration::from_millis(reply.get(1).copied().unwrap_or(0).max(0).unsigned_abs());
        Ok(match reply.as_slice() {
            [1, ..] => Verdict::Admit,
            [_, _, 2] => Verdict::Paused(wait),
            [_, _, which] => {
                let limit = class
                    .params
                    .get(usize::from(*which == 1))
                    .copied()
                    .flatten()
                    .map(|p| p.limit);
                match limit {
                    Some(limit) => Verdict::OverLimit(Refusal { wait, limit }),
                    // The script only names a window it was given.
                    None => Verdict::Admit,
                }
            }
            // Malformed reply: treat as an outage rather than guess.
            _ => return Err(self.failed(&"unexpected script reply")),
        })
    }

    /// Shares a pause with the other replicas (best effort; the local pause is already set).
    pub(crate) async fn pause(&self, pause_key: &str, pause: Duration) {
        let ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
        let mut invocation = self.pause.key(pause_key);
        invocation.arg(ms);
        let _: Result<i64, _> = self
            .call(|mut con| {
                let invocation = &invocation;
                async move { invocation.invoke_async(&mut con).await }
            })
            .await;
    }

    /// Runs one script call within [`CALL_TIMEOUT`], with the skip-after-failure rule. A call
    /// that fails on a dropped connection is tried once more: the manager reconnects on such an
    /// error, and the retry is what makes the first probe after Redis returns succeed.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, Unavailable>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if !self.may_try() {
            return Err(Unavailable::Skipped);
        }
        let Some(manager) = self.manager() else {
            return Err(self.failed(&"the Redis client could not be set up"));
        };
        let attempts = async {
            match f(manager.clone()).await {
                Err(e)
                    if e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_unrecoverable_error() =>
                {
                    f(manager).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, attempts).await {
            Ok(Ok(value)) => {
                self.skip_until_ms.store(0, Ordering::Relaxed);
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(backend = %self.url, "rate limit backend reachable again");
                }
                Ok(value)
            }
            Ok(Err(e)) => Err(self.failed(&e)),
            Err(_) => Err(self.failed(&"timed out")),
        }
    }

    fn manager(&self) -> Option<ConnectionManager> {
        self.manager
            .get_or_init(|| {
                // No retries inside the manager: our own probe every RETRY_AFTER_FAILURE is the
                // retry, and a backoff inside would hide Redis's return for seconds.
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(0)
                    .set_connection_timeout(Some(CALL_TIMEOUT))
                    .set_response_timeout(Some(CALL_TIMEOUT));
                match ConnectionManager::new_lazy_with_config(self.client.clone(), config) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        tracing::error!(backend = %self.url, error = %e, "rate limit backend client setup failed");
                        None
                    }
                }
            })
            .clone()
    }

    /// Whether to call Redis now: yes unless it failed recently; once the skip time is over,
    /// exactly one caller (the one whose compare-exchange wins) probes it, the rest keep skipping.
    fn may_try(&self) -> bool {
        let until = self.skip_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        let now = self.now_ms();
        now >= until
            && self
                .skip_until_ms
                .compare_exchange(
                    until,
                    now + ms(RETRY_AFTER_FAILURE),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    fn failed(&self, error: &dyn std::fmt::Display) -> Unavailable {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.skip_until_ms
            .store(self.now_ms() + ms(RETRY_AFTER_FAILURE), Ordering::Relaxed);
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(backend = %self.url, error = %error,
                "rate limit backend unreachable; using on_backend_error until it answers again");
        }
        Unavailable::Failed
    }

    fn now_ms(&self) -> u64 {
        // +1 keeps 0 free to mean "not skipping".
        ms(self.base.elapsed()) + 1
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The URL without any `user:password@` part, for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***@{}", &url[..scheme_end + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact("redis://u:p@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn keys_share_a_hash_tag() {
        let c = RedisClass::new("t-1", "/api/{x}", [None, None]);
        assert_eq!(&*c.state_key, "defender-proxy:{t-1//api/_x_}:tat");
        assert_eq!(&*c.pause_key, "defender-proxy:{t-1//api/_x_}:pause");
        assert_eq!(c.args, [0; 4]);
    }
}
