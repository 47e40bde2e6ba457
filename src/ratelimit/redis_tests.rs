//! The Redis backend against a real `redis-server` started by the tests on a free port (skipped
//! loudly when it is not installed, unless `DEFENDER_PROXY_REQUIRE_REDIS` is set). Real time: the
//! script uses Redis's clock. Limits are chosen so that no slot refills during a test.
#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;
use std::time::Duration;

use http::HeaderValue;

use super::testkit::RedisServer;
use super::tests::{policy, windows};
use super::*;
use crate::config::{LimitMode, OnBackendError, RedisBackendConfig};

/// A "replica": its own `RateLimiter` on the shared Redis, 2 replicas configured.
fn replica(url: &str, on_error: OnBackendError) -> RateLimiter {
    RateLimiter::new(&RateLimitConfig {
        defaults: policy(windows(50, 1500, 0), LimitMode::Queue, 30, 200),
        routes: vec![],
        backend: LimitBackend::Redis(RedisBackendConfig {
            url: url.into(),
            password: None,
            on_error,
            replicas: NonZeroU32::new(2).unwrap(),
        }),
    })
    .unwrap()
}

/// 10/min, burst 5, reject mode: 5 pass at once, the next slot only after 12 s.
fn tight() -> LimitPolicy {
    policy(windows(10, 0, 5), LimitMode::Reject, 30, 200)
}

/// Waits (bounded, polling) until `cond` holds.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond().await {
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_replicas_together_admit_no_more_than_the_limit() {
    let Some(redis) =
        RedisServer::start_or_skip("two_replicas_together_admit_no_more_than_the_limit")
    else {
        return;
    };
    let (one, two) = (
        replica(&redis.url(), OnBackendError::Reject),
        replica(&redis.url(), OnBackendError::Reject),
    );
    let (a, b) = (one.tenant("tid", &tight()), two.tenant("tid", &tight()));
    let attempts = (0..20).map(|i| {
        let t = if i % 2 == 0 { &a } else { &b };
        t.admit(RouteClass(0))
    });
    let results = futures_util::future::join_all(attempts).await;
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(admitted, 5, "{results:?}");
    let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(
        matches!(
            refused,
            RateLimited::OverLimit {
                limit: WindowLimit { max: 10, .. },
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(
        (11..=12).contains(&refused.retry_after().as_secs()),
        "{refused:?}"
    );
    // Another tenant on the same Redis is not affected.
    assert!(one
        .tenant("other", &tight())
        .admit(RouteClass(0))
        .await
        .is_ok());
    assert_eq!(one.backend_errors() + two.backend_errors(), 0);
}

#[tokio::test]
async fn a_pause_from_one_replica_holds_on_the_other() {
    let Some(redis) = RedisServer::start_or_skip("a_pause_from_one_replica_holds_on_the_other")
    else {
        return;
    };
    let unlimited = policy(windows(0, 0, 0), LimitMode::Reject, 30, 200);
    let one = replica(&redis.url(), OnBackendError::Reject);
    let two = replica(&redis.url(), OnBackendError::Reject);
    let (a, b) = (one.tenant("tid", &unlimited), two.tenant("tid", &unlimited));
    b.admit(RouteClass(0)).await.unwrap();
    a.upstream_throttled(RouteClass(0), Some(&HeaderValue::from_static("5")));
    // The pause reaches Redis in the background.
    eventually("b sees a's pause", async || {
        b.admit(RouteClass(0)).await.is_err()
    })
    .await;
    let err = b.admit(RouteClass(0)).await.unwrap_err();
    assert!(matches!(err, RateLimited::Paused { .. }), "{err:?}");
    assert!((4..=5).contains(&err.retry_after().as_secs()), "{err:?}");
    // Learnt locally: b answers without Redis now (and another replica's tenant is unaffected).
    assert!(b.paused_remaining() > Duration::from_secs(3));
    assert!(two
        .tenant("other", &unlimited)
        .admit(RouteClass(0))
        .await
        .is_ok());
}

#[tokio::test]
async fn redis_down_falls_back_to_a_share_and_recovers_by_itself() {
    let Some(mut redis) =
        RedisServer::start_or_skip("redis_down_falls_back_to_a_share_and_recovers")
    else {
        return;
    };
    let l = replica(&redis.url(), OnBackendError::Local);
    let t = l.tenant("tid", &tight());
    t.admit(RouteClass(0)).await.unwrap();
    assert_eq!((l.backend_errors(), l.fallback_decisions()), (0, 0));

    redis.kill();
    // Fallback: 10/2 = 5 per minute, burst 5/2 = 2, in this replica alone.
    let results: Vec<_> =
        futures_util::future::join_all((0..6).map(|_| t.admit(RouteClass(0)))).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        2,
        "{results:?}"
    );
    assert!(l.backend_errors() >= 1);
    assert_eq!(l.fallback_decisions(), 6);
    // While down, Redis is not asked on every request (no error per request).
    let errors = l.backend_errors();
    for _ in 0..20 {
        let _ = t.admit(RouteClass(0)).await;
    }
    assert!(
        l.backend_errors() <= errors + 1,
        "{} errors",
        l.backend_errors()
    );

    redis.restart();
    // Back on Redis by itself: decisions stop going to the fallback (the new Redis is empty, so
    // its full burst is there again).
    eventually("decisions go to Redis again", async || {
        let before = l.fallback_decisions();
        let admitted = t.admit(RouteClass(0)).await.is_ok();
        admitted && l.fallback_decisions() == before
    })
    .await;
    let before = l.fallback_decisions();
    let results: Vec<_> =
        futures_util::future::join_all((0..6).map(|_| t.admit(RouteClass(0)))).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        4,
        "{results:?}"
    );
    assert_eq!(l.fallback_decisions(), before);
}

#[tokio::test]
async fn redis_down_with_reject_answers_backend_unavailable() {
    let Some(mut redis) =
        RedisServer::start_or_skip("redis_down_with_reject_answers_backend_unavailable")
    else {
        return;
    };
    let l = replica(&redis.url(), OnBackendError::Reject);
    let t = l.tenant("tid", &tight());
    t.admit(RouteClass(0)).await.unwrap();
    redis.kill();
    let err = t.admit(RouteClass(0)).await.unwrap_err();
    assert!(
        matches!(err, RateLimited::BackendUnavailable { .. }),
        "{err:?}"
    );
    assert_eq!(err.retry_after(), Duration::from_secs(1));
    assert_eq!(l.fallback_decisions(), 0);
}

#[tokio::test]
async fn password_is_sent_and_never_shown() {
    let test = "password_is_sent_and_never_shown";
    let Some(redis) = RedisServer::start_with_args_or_skip(test, &["--requirepass", "s3cret-pw"])
    else {
        return;
    };
    let with = |password: &str| {
        RateLimiter::new(&RateLimitConfig {
            defaults: tight(),
            routes: vec![],
            backend: LimitBackend::Redis(RedisBackendConfig {
                url: redis.url(),
                password: Some(password.to_owned().into()),
                on_error: OnBackendError::Reject,
                replicas: NonZeroU32::MIN,
            }),
        })
        .unwrap()
    };
    let (good, bad) = (with("s3cret-pw"), with("wrong"));
    let t = good.tenant("tid", &tight());
    t.admit(RouteClass(0)).await.unwrap();
    assert_eq!(good.backend_errors(), 0);
    let err = bad
        .tenant("tid", &tight())
        .admit(RouteClass(0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RateLimited::BackendUnavailable { .. }),
        "{err:?}"
    );
    assert_eq!(bad.backend_errors(), 1);
    assert!(!format!("{good:?} {t:?}").contains("s3cret-pw"));
}
