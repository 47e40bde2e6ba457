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

/// The harness starts the proxy as `serve --config` does (one start path, `app::App`): the
/// reloader SIGHUP and `[reload] watch` use runs under it too, here asked directly.
#[tokio::test]
async fn the_harness_reloads_through_the_reloader_main_starts() {
    use defender_proxy::sim::SimConfig;
    let dir = std::env::temp_dir().join(format!(
        "defender-proxy-harness-reload-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let sim_config = SimConfig::demo();
    let secret = dir.join("secret");
    std::fs::write(&secret, &sim_config.client_secret).unwrap();
    let config = dir.join("proxy.toml");
    // The config with the simulator's first `tenants` tenants.
    let text = |base: &str, tenants: usize| {
        let mut text = format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
             [app]\nclient_id = \"{}\"\nclient_secret = {{ file = \"{}\" }}\n\
             [cloud]\nauthority = \"{base}\"\napi = \"{base}\"\n",
            sim_config.client_id,
            secret.display(),
        );
        for t in sim_config.tenants.iter().take(tenants) {
            text.push_str(&format!(
                "[[tenant]]\nname = \"{}\"\nid = \"{}\"\n",
                t.name, t.id
            ));
        }
        text
    };
    let mut base = String::new();
    let h = support::Harness::start_file(sim_config.clone(), |sim| {
        base = sim.to_owned();
        std::fs::write(&config, text(sim, 2)).unwrap();
        config.clone()
    })
    .await;
    let last = &sim_config.tenants[1].name;
    assert_eq!(h.get(&format!("/{last}/api/incidents")).await.status(), 200);

    std::fs::write(&config, text(&base, 1)).unwrap();
    within(Duration::from_secs(20), "the reload", h.reload())
        .await
        .expect("started from a file, so it can reload")
        .expect("the new config is applied");
    assert_eq!(h.get(&format!("/{last}/api/incidents")).await.status(), 404);
    let first = &sim_config.tenants[0].name;
    assert_eq!(
        h.get(&format!("/{first}/api/incidents")).await.status(),
        200
    );
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    // Started from a config in memory (no file), there is nothing to reload.
    let h = support::Harness::start().await;
    assert!(h.reload().await.is_none());
    h.stop().await;
}
