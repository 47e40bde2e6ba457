//! The health rules on hand-made statuses.

use std::time::{Duration, SystemTime};

use super::*;
use crate::status::tokens::{Failure, TokenErrorStatus};
use crate::status::{RateLimitStatus, RequestStatus, TenantStatus, Time, TokenStatus};

fn token(state: SlotState, usable: bool, failed: bool) -> TokenStatus {
    TokenStatus {
        api: "default".into(),
        scope: "s".into(),
        state,
        usable,
        expires_at: None,
        roles: vec![],
        failure: failed.then(|| Failure {
            error: TokenErrorStatus {
                code: None,
                meaning: "cannot reach the token endpoint".into(),
            },
            consent_url: None,
        }),
    }
}

fn status(tokens: Vec<TokenStatus>) -> TenantStatus {
    TenantStatus {
        name: "t".into(),
        id: "i".into(),
        source: "file",
        app: "default".into(),
        cloud: "default".into(),
        health: Health::Ok,
        tokens,
        rate_limit: RateLimitStatus {
            backend: "local",
            windows: vec![],
            queued: 0,
            paused_until: None,
        },
        requests: RequestStatus {
            total: 0,
            errors: 0,
            last_at: None,
            last_error_at: None,
            last_5m: Default::default(),
        },
    }
}

use SlotState::{Failing, None as Unused, Refreshing, Valid};

#[test]
fn failing_only_when_no_token_in_use_can_be_had() {
    let h = |tokens| health(&status(tokens));
    assert_eq!(h(vec![]), Health::Ok);
    assert_eq!(h(vec![token(Unused, false, false)]), Health::Ok);
    assert_eq!(h(vec![token(Failing, false, true)]), Health::Failing);
    let only_used_fails = vec![token(Failing, false, true), token(Unused, false, false)];
    assert_eq!(h(only_used_fails), Health::Failing);
    let both = vec![token(Failing, false, true), token(Failing, false, true)];
    assert_eq!(h(both), Health::Failing);
    // Still served by its older token, or another token works: degraded.
    assert_eq!(h(vec![token(Failing, true, true)]), Health::Degraded);
    let one_works = vec![token(Failing, false, true), token(Valid, true, false)];
    assert_eq!(h(one_works), Health::Degraded);
}

#[test]
fn refreshing_is_degraded_only_after_a_failure() {
    let h = |tokens| health(&status(tokens));
    assert_eq!(h(vec![token(Refreshing, false, false)]), Health::Ok);
    assert_eq!(h(vec![token(Refreshing, true, false)]), Health::Ok);
    assert_eq!(h(vec![token(Refreshing, false, true)]), Health::Degraded);
    assert_eq!(h(vec![token(Valid, true, false)]), Health::Ok);
}

#[test]
fn pauses_queues_and_recent_errors_degrade() {
    let ok = || status(vec![token(Valid, true, false)]);
    assert_eq!(health(&ok()), Health::Ok);

    let mut s = ok();
    s.rate_limit.paused_until = Some(Time(SystemTime::now() + Duration::from_secs(9)));
    assert_eq!(health(&s), Health::Degraded);

    let mut s = ok();
    s.rate_limit.queued = 1;
    assert_eq!(health(&s), Health::Degraded);

    let mut s = ok();
    s.requests.last_error_at = Some(Time(SystemTime::now() - RECENT_ERRORS / 2));
    assert_eq!(health(&s), Health::Degraded);
    s.requests.last_error_at = Some(Time(SystemTime::now() - RECENT_ERRORS * 2));
    assert_eq!(health(&s), Health::Ok, "an old error");
}

#[test]
fn serialized_lower_case_and_ordered_worst_last() {
    let names = [Health::Ok, Health::Degraded, Health::Failing].map(|h| {
        serde_json::to_value(h)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
    });
    assert_eq!(
        names,
        ["ok", "degraded", "failing"].map(|s| Some(s.to_owned()))
    );
    assert!(Health::Ok < Health::Degraded && Health::Degraded < Health::Failing);
}
