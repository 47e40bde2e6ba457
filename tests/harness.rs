//! The test harness itself: a panic in a server's task fails the test that started it.
#![allow(clippy::unwrap_used)]

mod support;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt as _;
use support::{eventually, within, ServerTask};

fn panics_with(payload: Box<dyn std::any::Any + Send>, message: &str) {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or(payload.downcast_ref::<String>().map(String::as_str));
    assert_eq!(text, Some(message));
}

#[tokio::test]
async fn stop_reraises_the_panic_of_the_serve_task() {
    let server = ServerTask::spawn(|stop| async move {
        stop.await;
        panic!("the serve task broke");
    });
    let result = within(
        Duration::from_secs(10),
        "stop",
        AssertUnwindSafe(server.stop()).catch_unwind(),
    )
    .await;
    panics_with(result.unwrap_err(), "the serve task broke");
}

#[tokio::test]
async fn dropping_a_server_whose_task_panicked_panics() {
    let server = ServerTask::spawn(|_stop| async { panic!("the serve task broke early") });
    eventually(Duration::from_secs(10), "the task ended", || async {
        server.is_finished().then_some(())
    })
    .await;
    let result = std::panic::catch_unwind(AssertUnwindSafe(move || drop(server)));
    panics_with(result.unwrap_err(), "the serve task broke early");
}

#[tokio::test]
async fn a_server_that_ends_well_stops_quietly() {
    let server = ServerTask::spawn(|stop| stop);
    within(Duration::from_secs(10), "stop", server.stop()).await;
    let server = ServerTask::spawn(|stop| stop);
    drop(server);
}
