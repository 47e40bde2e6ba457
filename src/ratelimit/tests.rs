//! Behaviour of the local limiter on paused tokio time: reject and queue modes, queue bounds,
//! cancellation, route classes, pauses, isolation between tenants, and the window property.
#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderValue;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::*;
use crate::config::{LimitMode, RouteLimit};

pub(super) fn windows(m: u32, h: u32, b: u32) -> Windows {
    Windows {
        per_minute: NonZeroU32::new(m),
        per_hour: NonZeroU32::new(h),
        burst: NonZeroU32::new(b),
    }
}

pub(super) fn policy(w: Windows, mode: LimitMode, max_wait: u64, max_queue: usize) -> LimitPolicy {
    LimitPolicy {
        windows: w,
        mode,
        max_wait: Duration::from_secs(max_wait),
        max_queue,
    }
}

fn limiter(routes: &[(&str, Windows)]) -> RateLimiter {
    RateLimiter::new(&RateLimitConfig {
        defaults: policy(windows(50, 1500, 0), LimitMode::Queue, 30, 200),
        routes: routes
            .iter()
            .map(|(p, w)| RouteLimit {
                path_prefix: (*p).into(),
                windows: *w,
            })
            .collect(),
        backend: LimitBackend::Local,
    })
    .unwrap()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Spawns a request and returns once it is admitted or queued (so spawn order = queue order).
async fn spawn_admit(
    t: &Arc<TenantLimiter>,
    class: RouteClass,
    start: Instant,
) -> JoinHandle<Result<Duration, RateLimited>> {
    let before = t.queue_length();
    let t2 = Arc::clone(t);
    let handle = tokio::spawn(async move { t2.admit(class).await.map(|_| start.elapsed()) });
    for _ in 0..100 {
        if handle.is_finished() || t.queue_length() > before {
            break;
        }
        tokio::task::yield_now().await;
    }
    handle
}

#[tokio::test(start_paused = true)]
async fn reject_mode_passes_exactly_the_burst_then_says_when() {
    let t = limiter(&[]).tenant("t", &policy(windows(10, 0, 3), LimitMode::Reject, 30, 200));
    for _ in 0..3 {
        assert_eq!(t.admit(RouteClass(0)).await.unwrap().waited, Duration::ZERO);
    }
    let err = t.admit(RouteClass(0)).await.unwrap_err();
    // T = 60 s / (10 - 3) = 8.571 s.
    let RateLimited::OverLimit { retry_after, limit } = err.clone() else {
        panic!("{err:?}")
    };
    assert_eq!(ms(retry_after), 8571);
    assert_eq!(limit.max, 10);
    assert_eq!(err.retry_after(), Duration::from_secs(9));
    tokio::time::advance(retry_after).await;
    t.admit(RouteClass(0)).await.unwrap();
    assert!(t.admit(RouteClass(0)).await.is_err());
    assert_eq!(t.stats().snapshot(), (4, 0, 2));
}

#[tokio::test(start_paused = true)]
async fn queue_mode_spaces_requests_at_the_rate_in_order_and_loses_none() {
    // T = 60 s / (10 - 2) = 7.5 s.
    let t = limiter(&[]).tenant("t", &policy(windows(10, 0, 2), LimitMode::Queue, 60, 200));
    let start = Instant::now();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for i in 0..7 {
        let h = spawn_admit(&t, RouteClass(0), start).await;
        let order = Arc::clone(&order);
        handles.push(tokio::spawn(async move {
            let at = h.await.unwrap().unwrap();
            order.lock().unwrap().push(i);
            at
        }));
    }
    let mut at = Vec::new();
    for h in handles {
        at.push(ms(h.await.unwrap()));
    }
    // Timer granularity is 1 ms.
    let expected = [0, 0, 7500, 15000, 22500, 30000, 37500];
    for (got, want) in at.iter().zip(expected) {
        assert!(*got >= want && *got <= want + 2, "{at:?}");
    }
    assert_eq!(*order.lock().unwrap(), (0..7).collect::<Vec<_>>());
    assert_eq!(t.stats().snapshot(), (7, 5, 0));
    assert_eq!(t.queue_length(), 0);
}

#[tokio::test(start_paused = true)]
async fn queue_is_bounded_by_max_queue() {
    let t = limiter(&[]).tenant("t", &policy(windows(2, 0, 0), LimitMode::Queue, 600, 2));
    let start = Instant::now();
    t.admit(RouteClass(0)).await.unwrap();
    let _a = spawn_admit(&t, RouteClass(0), start).await;
    let _b = spawn_admit(&t, RouteClass(0), start).await;
    assert_eq!(t.queue_length(), 2);
    let err = t.admit(RouteClass(0)).await.unwrap_err();
    assert!(
        matches!(err, RateLimited::QueueFull { max_queue: 2, .. }),
        "{err:?}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "refused at once");
    // T = 60 s: the estimate is three slots away, capped at max_wait.
    assert_eq!(err.retry_after(), Duration::from_secs(180));
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_make_max_wait_gives_up_as_soon_as_it_knows() {
    // T = 7.5 s, max_wait 10 s: the third request waits 7.5 s, the fourth would wait 15 s.
    let t = limiter(&[]).tenant("t", &policy(windows(10, 0, 2), LimitMode::Queue, 10, 200));
    let start = Instant::now();
    t.admit(RouteClass(0)).await.unwrap();
    t.admit(RouteClass(0)).await.unwrap();
    let third = spawn_admit(&t, RouteClass(0), start).await;
    let fourth = spawn_admit(&t, RouteClass(0), start).await;
    assert_eq!(ms(third.await.unwrap().unwrap()), 7500);
    let err = fourth.await.unwrap().unwrap_err();
    // It learned at 7.5 s (when it became the head) that its slot is at 15 s.
    assert_eq!(ms(start.elapsed()), 7500);
    assert!(matches!(err, RateLimited::WaitTooLong { .. }), "{err:?}");
    assert_eq!(err.retry_after(), Duration::from_secs(8));
    // The give-up took no slot: the next request gets the 15 s slot.
    tokio::time::advance(Duration::from_millis(7499)).await;
    assert!(t.admit(RouteClass(0)).await.unwrap().waited <= Duration::from_millis(1));
}

#[tokio::test(start_paused = true)]
async fn max_wait_bounds_the_whole_wait() {
    // A pause longer than max_wait: the queued request gives up at once, with the pause left.
    let t = limiter(&[]).tenant("t", &policy(windows(10, 0, 2), LimitMode::Queue, 5, 200));
    t.upstream_throttled(RouteClass(0), Some(&HeaderValue::from_static("60")));
    let start = Instant::now();
    let err = t.admit(RouteClass(0)).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(err.retry_after(), Duration::from_secs(60));
    assert_eq!(err.reason(), "paused");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_frees_its_place_and_loses_no_slot() {
    let t = limiter(&[]).tenant("t", &policy(windows(10, 0, 2), LimitMode::Queue, 60, 200));
    let start = Instant::now();
    t.admit(RouteClass(0)).await.unwrap();
    t.admit(RouteClass(0)).await.unwrap();
    let head = spawn_admit(&t, RouteClass(0), start).await; // slot at 7.5 s
    let second = spawn_admit(&t, RouteClass(0), start).await; // would be 15 s
    let third = spawn_admit(&t, RouteClass(0), start).await; // would be 22.5 s
    assert_eq!(t.queue_length(), 3);
    tokio::time::advance(Duration::from_secs(1)).await;
    head.abort();
    second.abort();
    assert!(head.await.unwrap_err().is_cancelled());
    assert!(second.await.unwrap_err().is_cancelled());
    assert_eq!(t.queue_length(), 1);
    // The third takes the head's slot, on time.
    assert_eq!(ms(third.await.unwrap().unwrap()), 7500);
    assert_eq!(t.queue_length(), 0);
}

#[tokio::test(start_paused = true)]
async fn route_class_matches_whole_segments_case_insensitively() {
    let l = limiter(&[
        ("/api/advancedhunting", windows(2, 0, 0)),
        ("/api/", windows(0, 100, 0)),
        ("/api/advancedhunting/run/", windows(5, 0, 0)),
    ]);
    let t = l.tenant("t", &policy(windows(10, 0, 0), LimitMode::Reject, 30, 200));
    for (path, class) in [
        ("/api/advancedhunting", 1),
        ("/api/advancedhunting/", 1),
        ("/api/advancedhunting?x=1", 1),
        ("/api/AdvancedHunting/Run", 3),
        ("/api/advancedhunting/run?x", 3),
        ("/api/advancedhuntingX", 2),
        ("/api/incidents", 2),
        ("/api", 2),
        ("/apix", 0),
        ("/", 0),
        ("", 0),
    ] {
        assert_eq!(t.class_of(path), RouteClass(class), "{path}");
    }
    // The class's own limit (2/min, burst 1) applies, and only to it.
    t.admit(RouteClass(1)).await.unwrap();
    assert!(matches!(
        t.admit(RouteClass(1)).await,
        Err(RateLimited::OverLimit {
            limit: WindowLimit { max: 2, .. },
            ..
        })
    ));
    for _ in 0..5 {
        t.admit(RouteClass(2)).await.unwrap();
    }
    t.admit(RouteClass(0)).await.unwrap();
    // An unknown class index (stale after a reload) gets the tenant's own limits.
    assert!(matches!(
        t.admit(RouteClass(99)).await,
        Err(RateLimited::OverLimit {
            limit: WindowLimit { max: 10, .. },
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn one_tenants_limit_or_pause_never_delays_another() {
    let l = limiter(&[]);
    let p = policy(windows(2, 0, 0), LimitMode::Queue, 60, 200);
    let (a, b) = (l.tenant("a", &p), l.tenant("b", &p));
    let start = Instant::now();
    a.admit(RouteClass(0)).await.unwrap();
    let queued = spawn_admit(&a, RouteClass(0), start).await;
    a.upstream_throttled(RouteClass(0), Some(&HeaderValue::from_static("30")));
    assert_eq!(a.queue_length(), 1);
    assert_eq!(b.admit(RouteClass(0)).await.unwrap().waited, Duration::ZERO);
    assert_eq!(start.elapsed(), Duration::ZERO);
    // a's queued request: the GCRA slot (60 s) is later than the pause (30 s).
    assert_eq!(ms(queued.await.unwrap().unwrap()), 60_000);
}

#[tokio::test(start_paused = true)]
async fn upstream_429_pauses_the_class_for_retry_after() {
    let t = limiter(&[("/api/advancedhunting", windows(45, 0, 0))])
        .tenant("t", &policy(windows(0, 0, 0), LimitMode::Queue, 30, 200));
    let start = Instant::now();
    t.upstream_throttled(RouteClass(0), Some(&HeaderValue::from_static("2")));
    assert_eq!(t.paused_remaining(), Duration::from_secs(2));
    // The other class is not paused.
    t.admit(RouteClass(1)).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    // Nothing admitted in class 0 for 2 s: queued requests wait it out, in order.
    let first = spawn_admit(&t, RouteClass(0), start).await;
    let second = spawn_admit(&t, RouteClass(0), start).await;
    assert_eq!(ms(first.await.unwrap().unwrap()), 2000);
    assert_eq!(ms(second.await.unwrap().unwrap()), 2000);
    assert_eq!(t.paused_remaining(), Duration::ZERO);

    // An HTTP date; absent: the default. Reject mode answers with the pause left.
    let r = limiter(&[]).tenant("r", &policy(windows(0, 0, 0), LimitMode::Reject, 30, 200));
    let at = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(20));
    r.upstream_throttled(RouteClass(0), Some(&HeaderValue::from_str(&at).unwrap()));
    let err = r.admit(RouteClass(0)).await.unwrap_err();
    assert!(matches!(err, RateLimited::Paused { .. }), "{err:?}");
    assert!((19..=20).contains(&err.retry_after().as_secs()), "{err:?}");
    let d = limiter(&[]).tenant("d", &policy(windows(0, 0, 0), LimitMode::Reject, 30, 200));
    d.upstream_throttled(RouteClass(0), None);
    assert_eq!(
        d.admit(RouteClass(0)).await.unwrap_err().retry_after(),
        Duration::from_secs(10)
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    d.admit(RouteClass(0)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn no_windows_means_unlimited() {
    let t = limiter(&[]).tenant("t", &policy(windows(0, 0, 0), LimitMode::Reject, 30, 200));
    for _ in 0..10_000 {
        t.admit(RouteClass(0)).await.unwrap();
    }
}

/// Greedy clients in queue mode for 2 h 10 min of (paused) time: the admissions never exceed the
/// per-minute limit in any 60 s nor the per-hour limit in any hour, and keep up the rate.
#[tokio::test(start_paused = true)]
async fn greedy_clients_never_exceed_either_window() {
    let t = limiter(&[]).tenant(
        "t",
        &policy(windows(50, 1500, 0), LimitMode::Queue, 3600, 10_000),
    );
    let start = Instant::now();
    let end = Duration::from_secs(2 * 3600 + 600);
    let admitted = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (t, admitted) = (Arc::clone(&t), Arc::clone(&admitted));
            tokio::spawn(async move {
                while start.elapsed() < end {
                    t.admit(RouteClass(0)).await.unwrap();
                    admitted.lock().unwrap().push(start.elapsed());
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let admitted = admitted.lock().unwrap().clone();
    for (window, max) in [(60, 50), (3600, 1500)] {
        let w = Duration::from_secs(window);
        for (i, from) in admitted.iter().enumerate() {
            let n = admitted[i..]
                .iter()
                .take_while(|t| **t <= *from + w)
                .count();
            assert!(n <= max, "{n} admitted in {window} s from {from:?}");
        }
    }
    // The hour window binds: close to 1500 per hour, not far below.
    assert!(admitted.len() >= 3000, "{}", admitted.len());
}

#[tokio::test(start_paused = true)]
async fn same_policy_same_limiter_changed_policy_fresh_one() {
    let l = limiter(&[]);
    let p = policy(windows(10, 0, 0), LimitMode::Queue, 30, 200);
    let a = l.tenant("a", &p);
    assert!(Arc::ptr_eq(&a, &l.tenant("a", &p)));
    let changed = policy(windows(11, 0, 0), LimitMode::Queue, 30, 200);
    assert!(!Arc::ptr_eq(&a, &l.tenant("a", &changed)));
    l.retain_tenants(|id| id != "a");
    assert!(!Arc::ptr_eq(&a, &l.tenant("a", &p)));
}

#[test]
fn a_tenant_stays_small() {
    // 10,000 tenants x (limiter + 2 classes) must stay in the low megabytes.
    let class = std::mem::size_of::<tenant::ClassState>();
    let tenant = std::mem::size_of::<TenantLimiter>();
    eprintln!("ClassState {class} B, TenantLimiter {tenant} B");
    assert!(tenant + 2 * class < 2048, "{tenant} + 2 x {class}");
}
