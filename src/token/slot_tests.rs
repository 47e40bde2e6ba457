//! Timing tests of the slot, on tokio's paused clock with a scripted token source.
//!
//! `settle(d)` sleeps on the paused clock: the runtime first runs every ready task (flights,
//! timers), then jumps the clock by exactly `d`, so these tests are deterministic.

use crate::token::Prepared;
use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;

use arc_swap::ArcSwap;
use secrecy::SecretString;
use tokio::sync::Semaphore;

use super::*;
use crate::config::{CloudPreset, TokenEndpointVersion};
use crate::token::claims::tests::fake_jwt;
use crate::token::{ErrorClass, FetchFuture, FetchedToken, Identity, TokenBroker, TokenSource};

const TENANT: &str = "22222222-2222-2222-2222-222222222222";
const SCOPE: &str = "https://api.security.microsoft.com/.default";

#[derive(Debug)]
enum Answer {
    Token {
        lifetime: u64,
        refresh_in: Option<u64>,
        tid: &'static str,
    },
    Fail(TokenError),
    /// The source panics, quoting a "secret" in its message.
    Panic,
    /// The source never answers (the slot's attempt timeout ends the attempt).
    Hang,
}

/// Entra's client's `attempt_timeout` with the default `response_timeout`; the timeout tests give
/// it to their fake with `timing_out`.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The other fakes' timeout: longer than any test holds a gated attempt, so the test decides
/// when an attempt ends.
const NO_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Answers from `script` in order, then `default`. With `gated`, each fetch first waits for a
/// permit from `release()`, to hold a flight open.
#[derive(Debug)]
struct Fake {
    calls: AtomicUsize,
    script: std::sync::Mutex<VecDeque<Answer>>,
    default: fn() -> Answer,
    gated: AtomicBool,
    gate: Semaphore,
    timeout: std::sync::Mutex<Duration>,
}

impl Fake {
    fn new(default: fn() -> Answer) -> Arc<Self> {
        Arc::new(Fake {
            calls: AtomicUsize::new(0),
            script: std::sync::Mutex::new(VecDeque::new()),
            default,
            gated: AtomicBool::new(false),
            gate: Semaphore::new(0),
            timeout: std::sync::Mutex::new(NO_TIMEOUT),
        })
    }
    fn timing_out(self: &Arc<Self>, after: Duration) -> &Arc<Self> {
        *self.timeout.lock().unwrap() = after;
        self
    }
    fn then(self: &Arc<Self>, answer: Answer) -> &Arc<Self> {
        self.script.lock().unwrap().push_back(answer);
        self
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn gate(&self) {
        self.gated.store(true, Ordering::SeqCst);
    }
    fn release(&self) {
        self.gate.add_permits(1);
    }
}

impl TokenSource for Fake {
    fn fetch<'a>(&'a self, tenant_id: &'a str, _scope: &'a str) -> FetchFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.gated.load(Ordering::SeqCst) {
                self.gate.acquire().await.expect("gate open").forget();
            }
            let answer = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(self.default);
            match answer {
                Answer::Token {
                    lifetime,
                    refresh_in,
                    tid,
                } => {
                    let tid = if tid.is_empty() { tenant_id } else { tid };
                    let jwt =
                        fake_jwt(&serde_json::json!({"tid": tid, "roles": ["Incident.Read.All"]}));
                    Ok(FetchedToken {
                        access_token: SecretString::from(jwt),
                        expires_in: Some(Duration::from_secs(lifetime)),
                        refresh_in: refresh_in.map(Duration::from_secs),
                    })
                }
                Answer::Fail(e) => Err(e),
                Answer::Panic => panic!("byte index 3 is not a char boundary of `secret-token`"),
                Answer::Hang => std::future::pending().await,
            }
        })
    }

    fn attempt_timeout(&self) -> Duration {
        *self.timeout.lock().unwrap()
    }
}

fn hour() -> Answer {
    Answer::Token {
        lifetime: 3600,
        refresh_in: None,
        tid: "",
    }
}
fn lasting(lifetime: u64) -> Answer {
    Answer::Token {
        lifetime,
        refresh_in: None,
        tid: "",
    }
}
fn unavailable(retry_after: Option<u64>) -> Answer {
    Answer::Fail(TokenError::Status {
        tenant_id: TENANT.into(),
        status: 503,
        retry_after: retry_after.map(Duration::from_secs),
    })
}
fn not_consented() -> Answer {
    Answer::Fail(TokenError::Entra {
        tenant_id: TENANT.into(),
        status: 400,
        error: "unauthorized_client".into(),
        codes: vec![700016],
        class: ErrorClass::Consent,
        consent_url: Some(format!(
            "https://login.microsoftonline.com/{TENANT}/adminconsent?client_id=1111"
        )),
        retry_after: None,
    })
}

fn slot(fake: &Arc<Fake>) -> Arc<TokenSlot> {
    let source: Arc<dyn TokenSource> = fake.clone();
    TokenSlot::new(TENANT, SCOPE, Arc::new(ArcSwap::from_pointee(source)))
}

async fn settle(d: Duration) {
    tokio::time::sleep(d).await;
}
const TICK: Duration = Duration::from_millis(1);
fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(start_paused = true)]
async fn concurrent_cold_gets_make_one_request() {
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    let gets = (0..100).map(|_| slot.get());
    let tokens = futures_util::future::join_all(gets).await;
    assert_eq!(fake.calls(), 1);
    let first = tokens[0].as_ref().unwrap();
    assert!(tokens
        .iter()
        .all(|t| Arc::ptr_eq(t.as_ref().unwrap(), first)));
    assert_eq!(first.tid(), TENANT);
}

#[tokio::test(start_paused = true)]
async fn warm_gets_make_no_request() {
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    let first = slot.get().await.unwrap();
    let started = Instant::now();
    for _ in 0..1000 {
        assert!(Arc::ptr_eq(&slot.get().await.unwrap(), &first));
    }
    assert_eq!((fake.calls(), Instant::now()), (1, started));
    let stats = slot.stats();
    assert_eq!(
        (stats.refresh_ok, stats.refresh_failed, stats.expires_in),
        (1, 0, Some(secs(3600)))
    );
}

#[tokio::test(start_paused = true)]
async fn refresh_at_half_life_in_background_while_old_token_serves() {
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    let old = slot.get().await.unwrap();
    slot.get().await.unwrap(); // used since the fetch
    fake.gate();
    settle(secs(1619)).await; // before the earliest jittered refresh point (1800 s - 10 %)
    assert_eq!(fake.calls(), 1);
    settle(secs(1981 - 1619)).await; // past the latest (1800 s + 10 %)
    assert_eq!(fake.calls(), 2, "refresh started by the timer");
    // The refresh is hanging: requests still get the old token, at once.
    let during = Instant::now();
    assert!(Arc::ptr_eq(&slot.get().await.unwrap(), &old));
    assert_eq!(Instant::now(), during);
    fake.release();
    settle(TICK).await;
    let new = slot.get().await.unwrap();
    assert!(!Arc::ptr_eq(&new, &old));
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn refresh_follows_refresh_in() {
    let fake = Fake::new(|| Answer::Token {
        lifetime: 86_400,
        refresh_in: Some(600),
        tid: "",
    });
    let slot = slot(&fake);
    slot.get().await.unwrap();
    slot.get().await.unwrap();
    settle(secs(530)).await;
    assert_eq!(fake.calls(), 1);
    settle(secs(140)).await; // 670 s > 600 s + 10 %
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn idle_slot_is_not_refreshed_until_a_request_comes() {
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    let old = slot.get().await.unwrap();
    settle(secs(3000)).await; // past refresh, before the usable deadline (3540 s)
    assert_eq!(fake.calls(), 1, "nobody used it: no refresh");
    // A late request still gets the current token and starts the refresh.
    assert!(Arc::ptr_eq(&slot.get().await.unwrap(), &old));
    settle(TICK).await;
    assert_eq!(fake.calls(), 2);
    assert!(!Arc::ptr_eq(&slot.get().await.unwrap(), &old));
}

#[tokio::test(start_paused = true)]
async fn never_hands_out_a_token_past_its_usable_deadline() {
    // 100 s lifetime: usable until 90 s (margin min(60 s, 10 s)).
    let fake = Fake::new(|| lasting(100));
    let slot = slot(&fake);
    let old = slot.get().await.unwrap();
    settle(secs(89)).await;
    assert!(Arc::ptr_eq(&slot.get().await.unwrap(), &old));
    fake.gate(); // the refresh that get() started hangs
    settle(TICK).await;
    assert_eq!(fake.calls(), 2);
    settle(secs(1)).await; // 90 s: deadline reached
    let waiting = tokio::spawn({
        let slot = slot.clone();
        async move { slot.get().await }
    });
    settle(secs(5)).await;
    assert!(
        !waiting.is_finished(),
        "must wait for the fresh token, not use the old one"
    );
    fake.release();
    let new = waiting.await.unwrap().unwrap();
    assert!(!Arc::ptr_eq(&new, &old));
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn cold_get_after_expiry_waits_for_a_new_token() {
    let fake = Fake::new(|| lasting(100));
    let slot = slot(&fake);
    let old = slot.get().await.unwrap();
    settle(secs(95)).await;
    let new = slot.get().await.unwrap();
    assert!(!Arc::ptr_eq(&new, &old));
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_with_backoff() {
    let fake = Fake::new(hour);
    fake.then(unavailable(None)).then(unavailable(None));
    let slot = slot(&fake);
    let started = Instant::now();
    slot.get().await.unwrap();
    assert_eq!(fake.calls(), 3);
    assert!(
        Instant::now() - started <= Duration::from_millis(600),
        "full jitter of 200 ms + 400 ms"
    );
    let stats = slot.stats();
    assert_eq!((stats.refresh_ok, stats.refresh_failed), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let fake = Fake::new(hour);
    fake.then(unavailable(Some(7)));
    let slot = slot(&fake);
    let started = Instant::now();
    slot.get().await.unwrap();
    assert_eq!(fake.calls(), 2);
    assert_eq!(Instant::now() - started, secs(7));
}

#[tokio::test(start_paused = true)]
async fn long_retry_after_ends_the_flight_and_is_remembered() {
    let fake = Fake::new(hour);
    fake.then(unavailable(Some(120)));
    let slot = slot(&fake);
    assert!(slot.get().await.is_err());
    settle(secs(100)).await;
    assert!(slot.get().await.is_err(), "still within Retry-After");
    assert_eq!(fake.calls(), 1);
    settle(secs(21)).await;
    slot.get().await.unwrap();
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn exhausted_transient_failure_is_remembered_briefly() {
    let fake = Fake::new(|| unavailable(None));
    let slot = slot(&fake);
    let err = slot.get().await.unwrap_err();
    assert_eq!(
        (err.class(), fake.calls()),
        (ErrorClass::Transient, MAX_ATTEMPTS as usize)
    );
    slot.get().await.unwrap_err();
    assert_eq!(fake.calls(), MAX_ATTEMPTS as usize);
    settle(TRANSIENT_MEMORY).await;
    slot.get().await.unwrap_err();
    assert_eq!(fake.calls(), 2 * MAX_ATTEMPTS as usize);
}

#[tokio::test(start_paused = true)]
async fn consent_error_is_remembered_for_a_minute() {
    let fake = Fake::new(not_consented);
    let slot = slot(&fake);
    let burst = futures_util::future::join_all((0..50).map(|_| slot.get())).await;
    for result in &burst {
        let err = result.as_ref().unwrap_err();
        assert_eq!(err.aadsts(), Some(700016));
        assert!(err
            .consent_url()
            .unwrap()
            .contains("/adminconsent?client_id=1111"));
    }
    settle(secs(59)).await;
    futures_util::future::join_all((0..50).map(|_| slot.get())).await;
    assert_eq!(fake.calls(), 1, "not retried at once");
    settle(secs(1)).await;
    slot.get().await.unwrap_err();
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn token_for_another_tenant_is_refused_and_remembered() {
    let fake = Fake::new(|| Answer::Token {
        lifetime: 3600,
        refresh_in: None,
        tid: "99999999-0000-0000-0000-000000000000",
    });
    let slot = slot(&fake);
    let err = slot.get().await.unwrap_err();
    assert!(matches!(err, TokenError::TenantMismatch { .. }), "{err:?}");
    assert!(slot.get().await.is_err());
    assert_eq!((fake.calls(), slot.stats().expires_in), (1, None));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_flight_is_a_remembered_failure() {
    let fake = Fake::new(|| Answer::Panic);
    let slot = slot(&fake);
    let err = slot.get().await.unwrap_err();
    assert!(matches!(err, TokenError::Internal { .. }), "{err:?}");
    assert!(!err.to_string().contains("secret"), "{err}");
    let err = slot.get().await.unwrap_err();
    assert!(matches!(err, TokenError::Internal { .. }), "{err:?}");
    assert_eq!(
        fake.calls(),
        1,
        "remembered: the second get() made no second fetch"
    );
    assert_eq!(slot.stats().expires_in, None);
}

#[tokio::test(start_paused = true)]
async fn a_silent_endpoint_holds_callers_one_attempt_timeout_while_the_flight_retries() {
    let fake = Fake::new(|| Answer::Hang);
    fake.timing_out(ATTEMPT_TIMEOUT);
    let slot = slot(&fake);
    let started = Instant::now();
    let err = slot.get().await.unwrap_err();
    assert_eq!(
        Instant::now() - started,
        ATTEMPT_TIMEOUT,
        "one attempt, not four"
    );
    assert!(matches!(err, TokenError::Pending { .. }), "{err:?}");
    assert!(
        err.to_string().contains("no token within 30s")
            && err.to_string().contains("retrying in the background"),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Transient);
    // The flight goes on after the caller gave up: its second attempt starts after the first
    // one's timeout and a backoff of at most RETRY_BASE.
    settle(RETRY_BASE + TICK).await;
    assert_eq!(fake.calls(), 2, "a second attempt after the caller gave up");

    // A later caller joins the running flight (no new one) and waits one attempt's timeout too.
    let joined = Instant::now();
    let err = slot.get().await.unwrap_err();
    assert_eq!(Instant::now() - joined, ATTEMPT_TIMEOUT);
    assert!(
        err.to_string().contains("retrying in the background"),
        "{err}"
    );
    // The flight ends after its last attempt (4 x 30 s + backoffs <= 1.4 s since the start) and
    // its failure is remembered: nobody started another.
    settle(secs(62)).await;
    assert_eq!(fake.calls(), MAX_ATTEMPTS as usize);
    let at = Instant::now();
    let err = slot.get().await.unwrap_err();
    assert!(matches!(err, TokenError::Timeout { .. }), "{err:?}");
    assert_eq!((Instant::now(), fake.calls()), (at, MAX_ATTEMPTS as usize));
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_stops_waiting_is_told_what_the_flight_is_retrying() {
    // A 429 whose Retry-After (20 s) the flight waits out, then a silent endpoint.
    let fake = Fake::new(|| Answer::Hang);
    fake.timing_out(ATTEMPT_TIMEOUT)
        .then(Answer::Fail(TokenError::Entra {
            tenant_id: TENANT.into(),
            status: 429,
            error: "temporarily_unavailable".into(),
            codes: vec![90055],
            class: ErrorClass::Transient,
            consent_url: None,
            retry_after: Some(secs(20)),
        }));
    let slot = slot(&fake);
    let err = slot.get().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TokenError::Pending { .. }), "{err:?}");
    assert_eq!(err.aadsts(), Some(90055), "{text}");
    assert!(
        text.contains("retrying in the background; the last attempt: AADSTS90055"),
        "{text}"
    );
    assert_eq!(
        text.matches("token request for tenant").count(),
        1,
        "{text}"
    );
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn invalidate_drops_only_the_current_token() {
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    let first = slot.get().await.unwrap();
    slot.invalidate(&first);
    let second = slot.get().await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(fake.calls(), 2);
    slot.invalidate(&first); // a late 401 for the old token: no effect
    assert!(Arc::ptr_eq(&slot.get().await.unwrap(), &second));
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiter_does_not_break_the_flight() {
    let fake = Fake::new(hour);
    fake.gate();
    let slot = slot(&fake);
    let waiter = tokio::spawn({
        let slot = slot.clone();
        async move { slot.get().await }
    });
    settle(TICK).await;
    assert_eq!(fake.calls(), 1);
    waiter.abort();
    settle(TICK).await;
    fake.release();
    settle(TICK).await;
    let before = Instant::now();
    slot.get().await.unwrap();
    assert_eq!(
        (fake.calls(), Instant::now()),
        (1, before),
        "the flight finished and cached its token"
    );
}

#[tokio::test(start_paused = true)]
async fn failed_refresh_keeps_the_current_token_and_retries() {
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    let old = slot.get().await.unwrap();
    slot.get().await.unwrap();
    for _ in 0..MAX_ATTEMPTS {
        fake.then(unavailable(None));
    }
    // The gate lets the test end each attempt, so it knows when the refresh flight failed.
    fake.gate();
    settle(secs(1981)).await;
    assert_eq!(fake.calls(), 2, "refresh started, first attempt hanging");
    for _ in 1..MAX_ATTEMPTS {
        fake.release();
        settle(secs(1)).await; // longer than any in-flight backoff (<= 800 ms)
    }
    assert_eq!(fake.calls(), 1 + MAX_ATTEMPTS as usize);
    fake.release();
    settle(TICK).await; // the last attempt failed: the flight is over
    assert_eq!(slot.stats().refresh_failed, u64::from(MAX_ATTEMPTS));
    assert!(
        Arc::ptr_eq(&slot.get().await.unwrap(), &old),
        "still usable"
    );
    settle(TICK).await;
    assert_eq!(
        fake.calls(),
        1 + MAX_ATTEMPTS as usize,
        "a request during the backoff starts nothing"
    );
    settle(REFRESH_RETRY_BASE).await;
    assert_eq!(fake.calls(), 2 + MAX_ATTEMPTS as usize, "the backoff retry");
    fake.release();
    settle(TICK).await;
    assert!(!Arc::ptr_eq(&slot.get().await.unwrap(), &old));
}

#[tokio::test(start_paused = true)]
async fn failed_refresh_for_consent_waits_a_minute() {
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    let old = slot.get().await.unwrap();
    slot.get().await.unwrap();
    fake.then(not_consented());
    fake.gate();
    settle(secs(1981)).await;
    assert_eq!(fake.calls(), 2);
    fake.release();
    settle(TICK).await; // the refresh failed now
    for _ in 0..10 {
        assert!(Arc::ptr_eq(&slot.get().await.unwrap(), &old));
    }
    settle(secs(59)).await;
    assert_eq!(fake.calls(), 2, "no retry within the failure memory");
    settle(secs(1)).await;
    assert_eq!(fake.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn dropped_slot_stops_refreshing() {
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    slot.get().await.unwrap();
    slot.get().await.unwrap();
    drop(slot);
    settle(secs(4000)).await;
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn broker_keeps_one_slot_per_tenant_and_scope() {
    let fake = Fake::new(hour);
    let broker = TokenBroker::with_source(fake.clone());
    let a = broker.slot(TENANT, SCOPE);
    assert!(Arc::ptr_eq(&a, &broker.slot(TENANT, SCOPE)));
    let b = broker.slot(TENANT, "https://graph.microsoft.com/.default");
    assert!(!Arc::ptr_eq(&a, &b));
    assert_eq!(broker.slots().len(), 2);
    drop(b);
    assert_eq!(broker.prune_unused(), 1);
    assert_eq!(
        (broker.slots().len(), a.tenant_id(), a.scope()),
        (1, TENANT, SCOPE)
    );
    let once = broker.fetch_once(TENANT, SCOPE).await.unwrap();
    assert_eq!((once.tid(), fake.calls()), (TENANT, 1));
    assert!(!format!("{broker:?}").contains("Bearer"));
    let token = a.get().await.unwrap();
    let jwt = token
        .authorization()
        .to_str()
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_owned();
    assert!(
        !format!("{a:?}").contains(&jwt),
        "a slot's Debug never shows its token"
    );
    assert!(!format!("{token:?}").contains(&jwt));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_flight_holds_across_threads() {
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let slot = slot.clone();
            tokio::spawn(async move { slot.get().await.map(|t| Arc::as_ptr(&t) as usize) })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for task in tasks {
        seen.insert(task.await.unwrap().unwrap());
    }
    assert_eq!((fake.calls(), seen.len()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn expiry_margin_is_capped_at_sixty_seconds() {
    // An hour token is usable until 3540 s (margin min(60 s, 360 s)), not until 3240 s.
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    let old = slot.get().await.unwrap();
    fake.gate(); // every refresh from now on hangs
    settle(secs(3539)).await;
    let at = Instant::now();
    assert!(Arc::ptr_eq(&slot.get().await.unwrap(), &old));
    assert_eq!(
        Instant::now(),
        at,
        "served at once, 1 s before the deadline"
    );
    settle(secs(2)).await; // 3541 s: past the deadline
    let waiting = tokio::spawn({
        let slot = slot.clone();
        async move { slot.get().await }
    });
    settle(secs(5)).await;
    assert!(
        !waiting.is_finished(),
        "past the deadline nothing is handed out"
    );
    fake.release();
    assert!(!Arc::ptr_eq(&waiting.await.unwrap().unwrap(), &old));
}

#[tokio::test(start_paused = true)]
async fn tokens_are_dropped_on_401_at_most_every_ten_seconds() {
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    let first = slot.get().await.unwrap();
    assert!(slot.invalidate(&first));
    let second = slot.get().await.unwrap();
    assert_eq!(fake.calls(), 2);
    // The fresh token is rejected too (say, a wrong scope): keep it, no token request storm.
    assert!(!slot.invalidate(&second));
    assert!(Arc::ptr_eq(&slot.get().await.unwrap(), &second));
    assert_eq!(fake.calls(), 2);
    settle(secs(10)).await;
    assert!(slot.invalidate(&second));
    slot.get().await.unwrap();
    assert_eq!(fake.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn token_arriving_past_its_usable_deadline_is_not_handed_out() {
    // 10 s lifetime: usable for 9 s after the request; the answer takes 9.5 s.
    let fake = Fake::new(|| lasting(10));
    fake.gate();
    let slot = slot(&fake);
    let waiting = tokio::spawn({
        let slot = slot.clone();
        async move { slot.get().await }
    });
    settle(Duration::from_millis(9500)).await;
    fake.release();
    let outcome = waiting.await.unwrap();
    assert!(outcome.is_err(), "a stale token reached a caller");
}

// --- Reconfiguration (hot reload) -------------------------------------------------------------

fn identity(client_id: &str) -> Option<Identity> {
    Some(Identity {
        client_id: client_id.into(),
        authority: "https://login.microsoftonline.com".into(),
        cloud: CloudPreset::Public,
        token_endpoint: TokenEndpointVersion::V2,
    })
}

#[tokio::test(start_paused = true)]
async fn new_credential_keeps_the_token_and_serves_the_next_fetch() {
    let old = Fake::new(hour);
    let broker = TokenBroker::with_source(old.clone());
    let slot = broker.slot(TENANT, SCOPE);
    let first = slot.get().await.unwrap();

    // A rotated secret: same app, same cloud.
    let new = Fake::new(hour);
    assert!(!broker.swap_source(new.clone(), None), "no token dropped");
    assert!(Arc::ptr_eq(&slot.get().await.unwrap(), &first));
    assert_eq!((old.calls(), new.calls()), (1, 0), "nothing fetched yet");

    // The refresh at about half the lifetime asks the new source.
    settle(secs(2000)).await;
    assert_eq!((old.calls(), new.calls()), (1, 1));
    assert!(!Arc::ptr_eq(&slot.get().await.unwrap(), &first));
    broker.fetch_once(TENANT, SCOPE).await.unwrap();
    assert_eq!((old.calls(), new.calls()), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn new_credential_is_tried_at_once_after_a_remembered_failure() {
    let old = Fake::new(not_consented);
    let broker = TokenBroker::with_source(old.clone());
    let slot = broker.slot(TENANT, SCOPE);
    assert!(slot.get().await.is_err());
    assert!(slot.get().await.is_err());
    assert_eq!(old.calls(), 1, "the failure is remembered");

    let new = Fake::new(hour);
    broker.swap_source(new.clone(), None);
    let started = Instant::now();
    slot.get().await.unwrap();
    assert_eq!((new.calls(), Instant::now()), (1, started));
}

#[tokio::test(start_paused = true)]
async fn another_app_or_cloud_drops_the_tokens() {
    let old = Fake::new(hour);
    let broker = TokenBroker::with_source(old.clone());
    broker.swap_source(old.clone(), identity("1111"));
    let slot = broker.slot(TENANT, SCOPE);
    let first = slot.get().await.unwrap();

    let same = Fake::new(hour);
    assert!(!broker.swap_source(same.clone(), identity("1111")));
    assert!(Arc::ptr_eq(&slot.get().await.unwrap(), &first));

    let other = Fake::new(hour);
    assert!(broker.swap_source(other.clone(), identity("2222")));
    let fresh = slot.get().await.unwrap();
    assert!(!Arc::ptr_eq(&fresh, &first));
    assert_eq!((old.calls(), same.calls(), other.calls()), (1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_flight_started_before_an_identity_change_is_not_installed() {
    let old = Fake::new(hour);
    old.gate();
    let broker = TokenBroker::with_source(old.clone());
    let slot = broker.slot(TENANT, SCOPE);
    let waiting = tokio::spawn({
        let slot = slot.clone();
        async move { slot.get().await }
    });
    settle(TICK).await;
    assert_eq!(old.calls(), 1, "the flight is held at the old source");

    let new = Fake::new(hour);
    assert!(broker.swap_source(new.clone(), identity("2222")));
    old.release();
    // Its caller asked before the reload and gets its answer ...
    let stale = waiting.await.unwrap().unwrap();
    // ... but the slot asks the new source for its own token.
    let fresh = slot.get().await.unwrap();
    assert!(!Arc::ptr_eq(&stale, &fresh));
    assert_eq!(new.calls(), 1);
    assert!(Arc::ptr_eq(&slot.get().await.unwrap(), &fresh));
}

#[tokio::test(start_paused = true)]
async fn a_failed_reconfigure_changes_nothing() {
    use crate::config::{
        AppConfig, CertificateCredential, CloudConfig, Credential, KeyFormat, UpstreamConfig,
    };
    let fake = Fake::new(hour);
    let broker = TokenBroker::with_source(fake.clone());
    let slot = broker.slot(TENANT, SCOPE);
    let first = slot.get().await.unwrap();
    let cloud = CloudConfig {
        cloud: CloudPreset::Public,
        authority: "http://127.0.0.1:9".into(),
        api: http::Uri::from_static("http://127.0.0.1:9"),
        scope: SCOPE.into(),
        token_endpoint: TokenEndpointVersion::V2,
        ca: None,
    };
    let upstream = UpstreamConfig {
        connect_timeout: secs(1),
        response_timeout: secs(1),
        ..UpstreamConfig::default()
    };
    let bad_key = AppConfig {
        client_id: "1111".into(),
        credential: Credential::Certificate(CertificateCredential {
            cert_der: vec![1],
            key_der: Arc::new(secrecy::SecretBox::new(Box::new(vec![1, 2, 3]))),
            key_format: KeyFormat::Pkcs8,
            cert_path: "app.pem".into(),
            key_path: "app-key.pem".into(),
        }),
    };
    let err = Prepared::new(&bad_key, &cloud, &upstream)
        .map(|p| broker.apply(p))
        .unwrap_err();
    assert!(err.to_string().contains("app-key.pem"), "{err}");
    assert!(Arc::ptr_eq(&slot.get().await.unwrap(), &first));
    broker.fetch_once(TENANT, SCOPE).await.unwrap();
    assert_eq!(fake.calls(), 2, "still the old source");

    // A good one replaces the source; the identity is new (the scripted source had none), so
    // the token goes.
    let good = AppConfig {
        client_id: "1111".into(),
        credential: Credential::Secret(SecretString::from("s")),
    };
    broker.apply(Prepared::new(&good, &cloud, &upstream).unwrap());
    assert!(format!("{broker:?}").contains("EntraClient"));
    assert!(slot.stats().expires_in.is_none(), "the token was dropped");
}

/// The slot's status view, with this file's fakes.
#[path = "slot/status_tests.rs"]
mod status_tests;
