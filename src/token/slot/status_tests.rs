//! `TokenSlot::status` in each state, on the paused clock with the slot tests' scripted source.

use super::*;
use crate::token::slot::status::SlotStatus;
use crate::token::SlotState;

fn state(slot: &TokenSlot) -> SlotState {
    slot.status().state
}

#[tokio::test(start_paused = true)]
async fn a_slot_never_asked_is_none() {
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    let status = slot.status();
    assert_eq!(status.state, SlotState::None);
    assert!(!status.usable);
    assert!(status.expires_at.is_none() && status.roles.is_empty() && status.error.is_none());
    assert_eq!(fake.calls(), 0, "the status asks nothing");
}

#[tokio::test(start_paused = true)]
async fn a_first_fetch_is_refreshing_then_valid() {
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    fake.gate();
    let asked = Instant::now();
    let waiting = tokio::spawn({
        let slot = slot.clone();
        async move { slot.get().await.map(|_| ()) }
    });
    settle(TICK).await;
    let status = slot.status();
    assert_eq!(status.state, SlotState::Refreshing);
    assert!(!status.usable && status.expires_at.is_none() && status.error.is_none());

    fake.release();
    waiting.await.unwrap().unwrap();
    let status: SlotStatus = slot.status();
    assert_eq!(status.state, SlotState::Valid);
    assert!(status.usable);
    // The lifetime counts from when the token was asked for.
    assert_eq!(status.expires_at, Some(asked + secs(3600)));
    assert_eq!(status.roles, ["Incident.Read.All"]);
    assert!(status.error.is_none());
    assert_eq!(fake.calls(), 1, "the status asks nothing");
}

#[tokio::test(start_paused = true)]
async fn a_failed_request_is_failing_with_its_code_and_consent_link() {
    let fake = Fake::new(not_consented);
    let slot = slot(&fake);
    slot.get().await.unwrap_err();
    let status = slot.status();
    assert_eq!(status.state, SlotState::Failing);
    assert!(!status.usable && status.expires_at.is_none());
    let error = status.error.unwrap();
    assert_eq!(error.aadsts(), Some(700016));
    assert!(error
        .consent_url()
        .unwrap()
        .contains("/adminconsent?client_id=1111"));
    // Still failing after the failure memory ran out: nothing has succeeded since.
    settle(FAILURE_MEMORY * 2).await;
    assert_eq!(state(&slot), SlotState::Failing);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_is_failing_while_the_old_token_serves() {
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    slot.get().await.unwrap();
    slot.get().await.unwrap(); // used since the fetch, so the timer refreshes
    fake.then(not_consented());
    settle(secs(1981)).await; // past the latest jittered refresh point
    assert_eq!(fake.calls(), 2);
    let status = slot.status();
    assert_eq!(status.state, SlotState::Failing);
    assert!(status.usable, "the old token still serves");
    assert!(status.expires_at.is_some());
    assert_eq!(status.error.unwrap().aadsts(), Some(700016));
}

#[tokio::test(start_paused = true)]
async fn a_retrying_flight_is_refreshing_with_its_last_failure() {
    let fake = Fake::new(hour);
    fake.then(unavailable(None));
    let slot = slot(&fake);
    fake.gate();
    let waiting = tokio::spawn({
        let slot = slot.clone();
        async move { slot.get().await.map(|_| ()) }
    });
    settle(TICK).await;
    fake.release(); // the first attempt fails (503, transient); the second waits at the gate
    settle(secs(1)).await; // longer than the first backoff (<= 200 ms)
    assert_eq!(fake.calls(), 2);
    let status = slot.status();
    assert_eq!(status.state, SlotState::Refreshing);
    assert!(matches!(
        status.error,
        Some(TokenError::Status { status: 503, .. })
    ));
    fake.release();
    waiting.await.unwrap().unwrap();
    assert_eq!(state(&slot), SlotState::Valid);
    assert!(
        slot.status().error.is_none(),
        "a success clears the failure"
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_idle_token_or_a_reset_slot_is_none() {
    let fake = Fake::new(hour);
    let slot = slot(&fake);
    slot.get().await.unwrap(); // not used again: the timer does not refresh it
    settle(secs(3600)).await;
    assert_eq!(fake.calls(), 1);
    assert_eq!(state(&slot), SlotState::None);

    slot.get().await.unwrap();
    assert_eq!(state(&slot), SlotState::Valid);
    slot.reset();
    assert_eq!(state(&slot), SlotState::None);
}
