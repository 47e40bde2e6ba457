//! Operations, on the real binary: SIGHUP reload (tenants added and removed while a stream is in
//! flight, invalid configs kept out, rotated secret files), `[reload] watch`, and SIGTERM drain.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use defender_proxy::sim::{SimConfig, Simulator};
use futures_util::StreamExt;
use support::{eventually, ProxyProcess};

fn config(
    sim: &str,
    client_id: &str,
    secret_file: &Path,
    tenants: &[(&str, &str)],
    extra: &str,
) -> String {
    let mut text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nshutdown_grace = \"20s\"\n[admin]\naddr = \"127.0.0.1:0\"\n{extra}\n\
         [app]\nclient_id = \"{client_id}\"\nclient_secret = {{ file = \"{}\" }}\n\
         [cloud]\nauthority = \"{sim}\"\napi = \"{sim}\"\n[rate_limit]\nper_minute = 0\nper_hour = 0\n",
        secret_file.display()
    );
    for (name, id) in tenants {
        text.push_str(&format!("[[tenant]]\nname = \"{name}\"\nid = \"{id}\"\n"));
    }
    text
}

fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success());
}

/// Poll (a condition, not a timing) until `metric` reaches `value`.
async fn wait_metric(p: &ProxyProcess, metric: &str, value: f64) {
    eventually(
        Duration::from_secs(15),
        &format!("{metric} reaching {value}"),
        || async { (p.metric(metric).await == Some(value)).then_some(()) },
    )
    .await;
}

struct Setup {
    sim: defender_proxy::sim::RunningSim,
    dir: support::TempDir,
    secret: std::path::PathBuf,
    contoso: String,
    fabrikam: String,
    client_id: String,
    client_secret: String,
}

async fn setup(name: &str) -> Setup {
    let sim_config = SimConfig::demo();
    let sim = Simulator::start(sim_config.clone()).await.unwrap();
    let dir = support::TempDir::new(&format!("ops-{name}"));
    let secret = dir.join("client-secret");
    std::fs::write(&secret, &sim_config.client_secret).unwrap();
    Setup {
        contoso: sim_config.tenants[0].id.clone(),
        fabrikam: sim_config.tenants[1].id.clone(),
        client_id: sim_config.client_id.clone(),
        client_secret: sim_config.client_secret.clone(),
        sim,
        dir,
        secret,
    }
}

#[tokio::test]
async fn sighup_swaps_tenants_while_a_stream_is_in_flight_and_keeps_a_good_config() {
    let s = setup("sighup").await;
    let path = s.dir.join("proxy.toml");
    let base = s.sim.base_url().to_owned();
    std::fs::write(
        &path,
        config(
            &base,
            &s.client_id,
            &s.secret,
            &[("contoso", &s.contoso)],
            "",
        ),
    )
    .unwrap();
    let mut p = ProxyProcess::spawn_file(&path, &[]).await;

    // A long streamed response for contoso is in flight.
    let stream = reqwest::get(p.url("/contoso/api/_test/stream"))
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut stream = stream.bytes_stream();
    assert_eq!(
        &stream.next().await.unwrap().unwrap()[..],
        b"{\"part\":1}\n"
    );

    // contoso out, fabrikam in.
    std::fs::write(
        &path,
        config(
            &base,
            &s.client_id,
            &s.secret,
            &[("fabrikam", &s.fabrikam)],
            "",
        ),
    )
    .unwrap();
    signal(&p.child, "-HUP");
    wait_metric(&p, "defender_proxy_reloads_total{result=\"success\"}", 1.0).await;
    assert_eq!(
        reqwest::get(p.url("/fabrikam/api/incidents"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(p.url("/contoso/api/incidents"))
            .await
            .unwrap()
            .status(),
        404
    );

    // The stream that started before the reload completes.
    s.sim.release_streams();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, b"{\"part\":2}\n");

    // An invalid config is refused; the running one stays.
    std::fs::write(&path, "[listen]\nadr = 1\n").unwrap();
    signal(&p.child, "-HUP");
    wait_metric(&p, "defender_proxy_reloads_total{result=\"failure\"}", 1.0).await;
    assert_eq!(
        reqwest::get(p.url("/fabrikam/api/incidents"))
            .await
            .unwrap()
            .status(),
        200
    );
    let log = p.log.lock().unwrap().join("\n");
    assert!(log.contains("config reload failed"), "{log}");

    signal(&p.child, "-TERM");
    assert_eq!(p.child.wait().await.unwrap().code(), Some(0));
}

#[tokio::test]
async fn rotated_secret_file_takes_effect_for_the_next_token() {
    let s = setup("rotate").await;
    std::fs::write(&s.secret, "an-old-revoked-secret").unwrap();
    let path = s.dir.join("proxy.toml");
    std::fs::write(
        &path,
        config(
            s.sim.base_url(),
            &s.client_id,
            &s.secret,
            &[("contoso", &s.contoso)],
            "",
        ),
    )
    .unwrap();
    let mut p = ProxyProcess::spawn_file(&path, &[]).await;
    let r = reqwest::get(p.url("/contoso/api/incidents")).await.unwrap();
    assert_eq!(r.status(), 503, "the old secret is refused by Entra");
    assert!(r.text().await.unwrap().contains("AADSTS7000215"));

    std::fs::write(&s.secret, &s.client_secret).unwrap();
    signal(&p.child, "-HUP");
    wait_metric(&p, "defender_proxy_reloads_total{result=\"success\"}", 1.0).await;
    assert_eq!(
        reqwest::get(p.url("/contoso/api/incidents"))
            .await
            .unwrap()
            .status(),
        200
    );
    let log = p.log.lock().unwrap().join("\n");
    assert!(
        !log.contains(&s.client_secret) && !log.contains("an-old-revoked-secret"),
        "a secret reached the log"
    );
    signal(&p.child, "-TERM");
    assert_eq!(p.child.wait().await.unwrap().code(), Some(0));
}

#[tokio::test]
async fn watch_reloads_when_the_config_changes() {
    let s = setup("watch").await;
    let path = s.dir.join("proxy.toml");
    let base = s.sim.base_url().to_owned();
    let watch = "[reload]\nwatch = true";
    std::fs::write(
        &path,
        config(
            &base,
            &s.client_id,
            &s.secret,
            &[("contoso", &s.contoso)],
            watch,
        ),
    )
    .unwrap();
    let mut p = ProxyProcess::spawn_file(&path, &[]).await;
    assert_eq!(
        reqwest::get(p.url("/fabrikam/api/incidents"))
            .await
            .unwrap()
            .status(),
        404
    );
    let both = [
        ("contoso", s.contoso.as_str()),
        ("fabrikam", s.fabrikam.as_str()),
    ];
    std::fs::write(&path, config(&base, &s.client_id, &s.secret, &both, watch)).unwrap();
    wait_metric(&p, "defender_proxy_reloads_total{result=\"success\"}", 1.0).await;
    assert_eq!(
        reqwest::get(p.url("/fabrikam/api/incidents"))
            .await
            .unwrap()
            .status(),
        200
    );
    signal(&p.child, "-TERM");
    assert_eq!(p.child.wait().await.unwrap().code(), Some(0));
}

#[tokio::test]
async fn sigterm_drains_a_slow_response_with_readyz_503_then_exits_0() {
    let s = setup("drain").await;
    let path = s.dir.join("proxy.toml");
    std::fs::write(
        &path,
        config(
            s.sim.base_url(),
            &s.client_id,
            &s.secret,
            &[("contoso", &s.contoso)],
            "",
        ),
    )
    .unwrap();
    let mut p = ProxyProcess::spawn_file(&path, &[]).await;
    let readyz = format!("http://{}/readyz", p.admin);
    assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 200);

    let stream = reqwest::get(p.url("/contoso/api/_test/stream"))
        .await
        .unwrap();
    let mut stream = stream.bytes_stream();
    assert_eq!(
        &stream.next().await.unwrap().unwrap()[..],
        b"{\"part\":1}\n"
    );

    signal(&p.child, "-TERM");
    // Draining: readiness fails so load balancers stop sending, while the stream goes on.
    eventually(Duration::from_secs(10), "readyz turning 503", || async {
        let status = reqwest::get(&readyz).await.map(|r| r.status().as_u16());
        (status.ok() == Some(503)).then_some(())
    })
    .await;
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "exited before the stream finished"
    );
    s.sim.release_streams();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, b"{\"part\":2}\n", "the in-flight response completed");
    let status = tokio::time::timeout(Duration::from_secs(20), p.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn watch_reloads_when_a_secret_file_named_by_the_config_changes() {
    let s = setup("watch-secret").await;
    std::fs::write(&s.secret, "an-old-revoked-secret").unwrap();
    let path = s.dir.join("proxy.toml");
    let text = config(
        s.sim.base_url(),
        &s.client_id,
        &s.secret,
        &[("contoso", &s.contoso)],
        "[reload]\nwatch = true",
    );
    std::fs::write(&path, text).unwrap();
    let mut p = ProxyProcess::spawn_file(&path, &[]).await;
    assert_eq!(
        reqwest::get(p.url("/contoso/api/incidents"))
            .await
            .unwrap()
            .status(),
        503
    );
    // Only the secret file changes (as a Kubernetes Secret volume would); no SIGHUP.
    std::fs::write(&s.secret, &s.client_secret).unwrap();
    wait_metric(&p, "defender_proxy_reloads_total{result=\"success\"}", 1.0).await;
    assert_eq!(
        reqwest::get(p.url("/contoso/api/incidents"))
            .await
            .unwrap()
            .status(),
        200
    );
    signal(&p.child, "-TERM");
    assert_eq!(p.child.wait().await.unwrap().code(), Some(0));
}

/// The log lines read so far that contain `needle`.
fn log_lines(p: &ProxyProcess, needle: &str) -> Vec<String> {
    p.log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

/// Bounded wait until `n` reloads have logged their result line (the restart warning, if any,
/// comes before it).
async fn wait_reload_lines(p: &ProxyProcess, n: usize) {
    support::eventually(Duration::from_secs(15), "the reload's log line", || {
        let done = log_lines(p, "config reloaded").len() >= n;
        async move { done.then_some(()) }
    })
    .await;
}

async fn post_2000_bytes(p: &ProxyProcess) -> u16 {
    reqwest::Client::new()
        .post(p.url("/contoso/api/advancedhunting/run"))
        .header("content-type", "application/json")
        .body(format!("{{\"Query\":\"{}\"}}", "x".repeat(1988)))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_reload_of_max_body_bytes_applies_at_once_and_max_connections_is_named_for_a_restart() {
    let s = setup("restart-only").await;
    let path = s.dir.join("proxy.toml");
    let base = s.sim.base_url().to_owned();
    let with_listen = |keys: &str| {
        config(
            &base,
            &s.client_id,
            &s.secret,
            &[("contoso", &s.contoso)],
            "",
        )
        .replace(
            "shutdown_grace = \"20s\"\n",
            &format!("shutdown_grace = \"20s\"\n{keys}"),
        )
    };
    std::fs::write(&path, with_listen("max_body_bytes = 1000000\n")).unwrap();
    let mut p = ProxyProcess::spawn_file(&path, &[]).await;
    assert_ne!(post_2000_bytes(&p).await, 413);

    // max_body_bytes (and body_idle_timeout) are read per request: no restart needed.
    std::fs::write(
        &path,
        with_listen("max_body_bytes = 1000\nbody_idle_timeout = \"30s\"\n"),
    )
    .unwrap();
    signal(&p.child, "-HUP");
    wait_reload_lines(&p, 1).await;
    let warnings = log_lines(&p, "take effect only after a restart");
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(
        post_2000_bytes(&p).await,
        413,
        "the new max_body_bytes applies"
    );

    // max_connections sizes the accept loop's semaphore at start: named.
    std::fs::write(
        &path,
        with_listen("max_body_bytes = 1000\nbody_idle_timeout = \"30s\"\nmax_connections = 10\n"),
    )
    .unwrap();
    signal(&p.child, "-HUP");
    wait_reload_lines(&p, 2).await;
    let warnings = log_lines(&p, "take effect only after a restart");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let warning: serde_json::Value = serde_json::from_str(&warnings[0]).unwrap();
    assert_eq!(warning["level"], "WARN");
    assert_eq!(
        warning["settings"], "[\"listen.max_connections\"]",
        "{warning}"
    );

    signal(&p.child, "-TERM");
    assert_eq!(p.child.wait().await.unwrap().code(), Some(0));
}
