//! The simulator's shared, mutable state: per-tenant failure modes set by tests, registered
//! certificates, issued and revoked tokens, seen assertion ids, rate-limit windows and the
//! recorder, plus the notifications tests wait on instead of sleeping.
//!
//! One `std::sync::Mutex` guards it all: every critical section is a few map operations and no
//! lock is ever held across an `.await`, so contention is no concern even under benchmarks.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use ring::hmac;
use tokio::sync::watch;

use super::hunting::Hold;
use super::limits::Limiter;
use super::records::{ApiRequestRecord, TokenRequestRecord};
use super::{jwt, SimConfig, SimCredential};
use crate::sync::LockExt;

/// Time as the simulator sees it. Derived from tokio's clock (anchored to the wall clock at
/// start) so a test that pauses and advances tokio time moves token expiry and rate-limit
/// windows along with the proxy's own timers.
#[derive(Debug)]
pub(crate) struct Clock {
    unix_at_start: Duration,
    start: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        Clock {
            unix_at_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            start: tokio::time::Instant::now(),
        }
    }

    /// Seconds since the Unix epoch, for JWT claims.
    pub(crate) fn unix_secs(&self) -> u64 {
        (self.unix_at_start + self.start.elapsed()).as_secs()
    }

    /// A monotonic instant, for rate-limit windows.
    pub(crate) fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

/// Failure modes of one tenant, keyed by lower-case tenant id.
#[derive(Debug, Clone)]
pub(crate) struct TenantModes {
    /// `false`: no app is consented in the tenant -> AADSTS700016.
    pub(crate) consented: bool,
    /// Consent to one app (lower-case client id) given (`true`) or withdrawn (`false`) at run
    /// time, over [`SimConfig::consents`].
    pub(crate) app_consent: HashMap<String, bool>,
    /// Token requests still to fail, with what status and `Retry-After`.
    pub(crate) fail_remaining: u32,
    pub(crate) fail_status: StatusCode,
    pub(crate) fail_retry_after: Option<u32>,
    /// Added before the token endpoint answers.
    pub(crate) delay: Duration,
    /// `tid` claim to put in tokens instead of the tenant's id.
    pub(crate) tid_override: Option<String>,
    /// Appended to the access tokens issued (a broken token endpoint or a middlebox that
    /// garbles them, e.g. with a non-ASCII character).
    pub(crate) token_suffix: Option<String>,
    /// Added before the API answers a request carrying this tenant's token.
    pub(crate) api_delay: Duration,
    /// API requests still to answer 429, and the `Retry-After` to send.
    pub(crate) force_429_remaining: u32,
    pub(crate) force_429_retry_after: Option<String>,
    /// Graph hunting queries still to answer 429 `TooManyRequests`, with `Retry-After` seconds.
    pub(crate) hunting_429_remaining: u32,
    pub(crate) hunting_429_retry_after: u32,
    /// Graph hunting queries still to answer the CPU-quota 400.
    pub(crate) hunting_quota_remaining: u32,
    /// The legacy hunting endpoints answer as retired.
    pub(crate) legacy_hunting_retired: bool,
    /// Throttle headers on every API answer, `Retry-After` on successful ones, and answers
    /// still to turn from 200 into 206 with a `Warning` (see `warnings`).
    pub(crate) throttle: Option<super::ThrottleHeaders>,
    pub(crate) success_retry_after: Option<String>,
    pub(crate) partial_remaining: u32,
    /// Application roles granted (`true`) or withheld (`false`) on top of the tenant's configured
    /// `roles`, in tokens issued from now on.
    pub(crate) role_overrides: HashMap<String, bool>,
}

impl Default for TenantModes {
    fn default() -> Self {
        TenantModes {
            consented: true,
            app_consent: HashMap::new(),
            fail_remaining: 0,
            fail_status: StatusCode::SERVICE_UNAVAILABLE,
            fail_retry_after: None,
            delay: Duration::ZERO,
            tid_override: None,
            token_suffix: None,
            api_delay: Duration::ZERO,
            force_429_remaining: 0,
            force_429_retry_after: None,
            hunting_429_remaining: 0,
            hunting_429_retry_after: 0,
            hunting_quota_remaining: 0,
            legacy_hunting_retired: false,
            throttle: None,
            success_retry_after: None,
            partial_remaining: 0,
            role_overrides: HashMap::new(),
        }
    }
}

/// Record counts since the last reset (they keep counting past the record cap).
#[derive(Debug, Default, Clone)]
pub(crate) struct Counts {
    pub(crate) token: usize,
    pub(crate) api: usize,
    /// Token requests that arrived, per lower-case `{tenant}`, counted before any
    /// [`TenantModes::delay`] (records are only written once the answer is decided).
    pub(crate) token_started: HashMap<String, usize>,
}

/// Everything behind the lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) lifetime: Duration,
    pub(crate) refresh_in: Option<Duration>,
    pub(crate) tenants: HashMap<String, TenantModes>,
    /// (Lower-case client id, certificate thumbprint (`x5t#S256` and `x5t`)) -> PKCS#1 public
    /// key DER: the certificates each app's assertions may be signed with.
    pub(crate) certs: HashMap<(String, String), Vec<u8>>,
    /// Federated identity credentials of the app: (`iss`, `sub`) pairs whose tokens are accepted
    /// as client assertions.
    pub(crate) federations: HashSet<(String, String)>,
    /// `jti`s of accepted assertions, to refuse replays.
    pub(crate) seen_jti: HashSet<String>,
    /// `uti` of every issued token -> the tenant id it was issued for, so revocation can find them.
    pub(crate) issued: HashMap<String, String>,
    pub(crate) revoked: HashSet<String>,
    /// Lower-case client id -> the secret accepted instead of the configured one
    /// (`set_app_secret`: a rotated secret).
    pub(crate) secrets: HashMap<String, String>,
    pub(crate) limiter: Limiter,
    pub(crate) token_records: VecDeque<TokenRequestRecord>,
    pub(crate) api_records: VecDeque<ApiRequestRecord>,
    /// Hunting answers started while set stop before this frame until `release_streams()`.
    pub(crate) hunting_hold: Option<u64>,
}

/// State shared by the [`super::Simulator`] handle and all connections.
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    /// Signs access tokens; random per simulator so a token from another instance never verifies.
    pub(crate) key: hmac::Key,
    pub(crate) clock: Clock,
    state: Mutex<State>,
    pub(crate) counts: watch::Sender<Counts>,
    /// Generation counter of `release_streams()`; `/api/_test/stream` waits for it to move.
    pub(crate) release: watch::Sender<u64>,
    /// Cloud -> `http://ip:port` of its listener, once served (or bound by `RunningSim`).
    bases: RwLock<BTreeMap<String, String>>,
    /// Gzip successful JSON answers for clients that accept it (`SimConfig::gzip_json`, changed
    /// by `set_gzip_json`); outside the lock since every API answer reads it.
    gzip_json: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("bases", &self.bases)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(config: SimConfig) -> Self {
        let rng = ring::rand::SystemRandom::new();
        // A fresh random key; ring's generate only fails if the OS RNG does, then fall back to
        // fastrand (this key only has to be unguessable by tests, not by attackers).
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            let bytes: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..))
                .take(32)
                .collect();
            hmac::Key::new(hmac::HMAC_SHA256, &bytes)
        });
        let mut certs = HashMap::new();
        for app in &config.apps {
            if let SimCredential::Certificate {
                cert_der,
                public_key_pkcs1_der,
            } = &app.credential
            {
                add_certificate(&mut certs, &app.client_id, cert_der, public_key_pkcs1_der);
            }
        }
        let state = State {
            lifetime: config.token_lifetime,
            refresh_in: config.refresh_in,
            tenants: HashMap::new(),
            certs,
            federations: HashSet::new(),
            seen_jti: HashSet::new(),
            issued: HashMap::new(),
            revoked: HashSet::new(),
            secrets: HashMap::new(),
            limiter: Limiter::default(),
            token_records: VecDeque::new(),
            api_records: VecDeque::new(),
            hunting_hold: None,
        };
        Shared {
            key,
            clock: Clock::new(),
            state: Mutex::new(state),
            counts: watch::Sender::new(Counts::default()),
            release: watch::Sender::new(0),
            bases: RwLock::new(BTreeMap::new()),
            gzip_json: AtomicBool::new(config.gzip_json),
            config,
        }
    }

    /// The state; a panic in another holder (only possible in a test) does not poison it for good.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// A copy of a tenant's modes.
    pub(crate) fn modes(&self, tenant_id: &str) -> TenantModes {
        self.lock()
            .tenants
            .get(&tenant_id.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// Changes a tenant's modes under the lock.
    pub(crate) fn with_modes<R>(
        &self,
        tenant_id: &str,
        f: impl FnOnce(&mut TenantModes) -> R,
    ) -> R {
        let mut state = self.lock();
        f(state
            .tenants
            .entry(tenant_id.to_ascii_lowercase())
            .or_default())
    }

    pub(crate) fn record_token(&self, record: TokenRequestRecord) {
        let mut state = self.lock();
        if state.token_records.len() >= self.config.max_records {
            state.token_records.pop_front();
        }
        state.token_records.push_back(record);
        drop(state);
        self.counts.send_modify(|c| c.token += 1);
    }

    pub(crate) fn record_api(&self, record: ApiRequestRecord) {
        let mut state = self.lock();
        if state.api_records.len() >= self.config.max_records {
            state.api_records.pop_front();
        }
        state.api_records.push_back(record);
        drop(state);
        self.counts.send_modify(|c| c.api += 1);
    }

    pub(crate) fn gzip_json(&self) -> bool {
        self.gzip_json.load(Ordering::Relaxed)
    }

    pub(crate) fn set_gzip_json(&self, on: bool) {
        self.gzip_json.store(on, Ordering::Relaxed);
    }

    /// The base URL of `cloud`'s listener, once known.
    pub(crate) fn base_url(&self, cloud: &str) -> Option<String> {
        self.bases
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(cloud)
            .cloned()
    }

    pub(crate) fn set_base_url(&self, cloud: &str, base: &str) {
        self.bases
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cloud.to_owned(), base.to_owned());
    }

    /// Every cloud's listener base URL known so far, by cloud.
    pub(crate) fn base_urls(&self) -> BTreeMap<String, String> {
        self.bases.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the tenant has consented to the app with `client_id` (see `profiles`).
    pub(crate) fn consented(&self, tenant_id: &str, client_id: &str) -> bool {
        let modes = self.modes(tenant_id);
        modes.consented
            && modes
                .app_consent
                .get(&client_id.to_ascii_lowercase())
                .copied()
                .unwrap_or_else(|| self.config.consented_by_default(tenant_id, client_id))
    }

    /// The [`Hold`] of a hunting answer starting now, if `hold_hunting_streams` set one.
    pub(crate) fn hunting_hold(&self) -> Option<Hold> {
        let before = self.lock().hunting_hold?;
        let mut gate = self.release.subscribe();
        let start = *gate.borrow_and_update();
        Some(Hold {
            before,
            gate,
            start,
        })
    }

    /// Configured tenant whose id is `tenant_id` (case-insensitive).
    pub(crate) fn tenant_by_id(&self, tenant_id: &str) -> Option<&super::SimTenant> {
        self.config
            .tenants
            .iter()
            .find(|t| t.id.eq_ignore_ascii_case(tenant_id))
    }
}

/// Registers a certificate of the app `client_id` under both its thumbprints.
pub(crate) fn add_certificate(
    certs: &mut HashMap<(String, String), Vec<u8>>,
    client_id: &str,
    cert_der: &[u8],
    public_key_pkcs1_der: &[u8],
) {
    let client = client_id.to_ascii_lowercase();
    for thumb in [
        jwt::thumbprint_s256(cert_der),
        jwt::thumbprint_sha1(cert_der),
    ] {
        certs.insert((client.clone(), thumb), public_key_pkcs1_der.to_vec());
    }
}
