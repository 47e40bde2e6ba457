//! The binary: `validate` exit codes and messages, `serve` logs (one access line per request,
//! never a secret or token), and `serve --dev` as the README's quick start runs it.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use defender_proxy::sim::{SimConfig, Simulator};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_defender-proxy");

fn config_text(sim_base: &str, client_id: &str, tenants: &[(String, String)]) -> String {
    let mut text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [app]\nclient_id = \"{client_id}\"\nclient_secret = {{ env = \"TEST_APP_SECRET\" }}\n\
         [cloud]\nauthority = \"{sim_base}\"\napi = \"{sim_base}\"\n"
    );
    for (name, id) in tenants {
        text.push_str(&format!("[[tenant]]\nname = \"{name}\"\nid = \"{id}\"\n"));
    }
    text
}

#[tokio::test]
async fn validate_accepts_a_good_config_and_reports_every_problem_of_a_bad_one() {
    let dir = support::TempDir::new("validate");
    let good = dir.join("good.toml");
    let tenants = vec![(
        "contoso".to_string(),
        "22222222-2222-2222-2222-222222222222".to_string(),
    )];
    std::fs::write(
        &good,
        config_text(
            "https://login.microsoftonline.com",
            "11111111-1111-1111-1111-111111111111",
            &tenants,
        )
        .replace(
            "api = \"https://login.microsoftonline.com\"",
            "api = \"https://api.security.microsoft.com\"",
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&good)
        .env("TEST_APP_SECRET", "s3cret")
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Missing env var and plain http to a public host: both reported, exit 2.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        config_text(
            "http://login.example.com",
            "11111111-1111-1111-1111-111111111111",
            &tenants,
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&bad)
        .env_remove("TEST_APP_SECRET")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("app.client_secret") && err.contains("TEST_APP_SECRET"),
        "{err}"
    );
    assert!(err.contains("cloud.authority"), "{err}");
    assert!(err.contains("cloud.api"), "{err}");

    // An unknown key names the key and its line.
    let unknown = dir.join("unknown.toml");
    std::fs::write(
        &unknown,
        format!(
            "{}\n[routing]\ntenant_hedaer = \"x\"\n",
            std::fs::read_to_string(&good).unwrap()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&unknown)
        .env("TEST_APP_SECRET", "s")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tenant_hedaer"), "{err}");
}

/// Read stderr lines until one contains `needle`; returns all lines read.
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    needle: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the proxy logs in time")
            .expect("stderr readable")
            .unwrap_or_else(|| panic!("stderr closed before '{needle}': {seen:#?}"));
        let done = line.contains(needle);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
}

#[tokio::test]
async fn logs_have_one_access_line_per_request_and_no_secret_or_token() {
    let sim_config = SimConfig::demo();
    let sim = Simulator::start(sim_config.clone()).await.unwrap();
    let base = sim.base_url().to_string();
    let tenants: Vec<(String, String)> = sim_config
        .tenants
        .iter()
        .map(|t| (t.name.clone(), t.id.clone()))
        .collect();
    let dir = support::TempDir::new("logs");
    let config = dir.join("proxy.toml");
    std::fs::write(&config, config_text(&base, &sim_config.client_id, &tenants)).unwrap();

    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .env("TEST_APP_SECRET", &sim_config.client_secret)
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let startup = read_until(&mut lines, "\"listening\"").await;
    let listening: serde_json::Value = serde_json::from_str(startup.last().unwrap()).unwrap();
    let addr = listening["addr"].as_str().unwrap().to_owned();

    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for (i, path) in [
        "/contoso/api/incidents?$top=1",
        "/fabrikam/api/machines",
        "/acme/api/x",
    ]
    .iter()
    .enumerate()
    {
        let rid = format!("log-test-{i}");
        let r = http
            .get(format!("http://{addr}{path}"))
            .header("x-request-id", &rid)
            .header("authorization", "Bearer client-key-xyz")
            .send()
            .await
            .unwrap();
        r.bytes().await.unwrap();
        ids.push(rid);
    }
    terminate(&child);
    let mut rest = String::new();
    let mut stderr = lines.into_inner();
    stderr.read_to_string(&mut rest).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean exit");

    let all: Vec<String> = startup
        .into_iter()
        .chain(rest.lines().map(str::to_owned))
        .collect();
    let access: Vec<serde_json::Value> = all
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "defender_proxy::access")
        .collect();
    assert_eq!(access.len(), 3, "{all:#?}");
    for (line, rid) in access.iter().zip(&ids) {
        assert_eq!(&line["request_id"], rid);
        for field in ["tenant", "method", "path", "status", "bytes", "duration_ms"] {
            assert!(!line[field].is_null(), "{field} missing in {line}");
        }
    }
    assert_eq!(access[0]["tenant"], "contoso");
    assert_eq!(access[0]["status"], 200);
    assert_eq!(access[0]["complete"], true, "{}", access[0]);
    assert!(access[0]["bytes"].as_u64().unwrap() > 100, "{}", access[0]);
    assert_eq!(
        access[0]["path"], "/contoso/api/incidents",
        "no query in the log"
    );
    assert_eq!(access[1]["complete"], true);
    assert_eq!(access[2]["status"], 404);
    assert_eq!(access[2]["tenant"], "-");

    // Nothing secret: not the app secret, not the client's key, not any token the API received.
    let joined = all.join("\n");
    let mut secrets = vec![
        sim_config.client_secret.clone(),
        "client-key-xyz".to_string(),
    ];
    for seen in sim.api_requests() {
        let auth = seen.headers["authorization"].to_str().unwrap();
        let jwt = auth.trim_start_matches("Bearer ").to_owned();
        secrets.push(jwt.split('.').nth(2).unwrap().to_owned()); // the signature alone
        secrets.push(jwt);
    }
    assert!(secrets.len() >= 4);
    for secret in &secrets {
        assert!(
            !joined.contains(secret.as_str()),
            "a secret or token reached the logs"
        );
    }
}

#[tokio::test]
async fn serve_dev_works_as_the_quick_start_says() {
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "text",
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let printed = read_until(&mut lines, "/api/incidents").await;
    let curl = printed.last().unwrap();
    let url = curl
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .replace("\\$", "$");
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["value"].as_array().is_some_and(|v| !v.is_empty()));
    terminate(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// The URL on the printed curl line that ends in `comment`.
fn curl_url(printed: &[String], comment: &str) -> String {
    let line = printed
        .iter()
        .find(|l| l.contains(comment))
        .unwrap_or_else(|| panic!("no line with {comment}: {printed:#?}"));
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .replace("\\$", "$")
}

#[tokio::test]
async fn serve_dev_shows_a_tenant_on_its_own_app_and_one_in_a_gov_cloud() {
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "text",
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let printed = read_until(&mut lines, "/metrics").await;
    let dev = SimConfig::dev();
    let (northwind, agency) = (&dev.tenants[2], &dev.tenants[3]);
    let tenants = printed.iter().find(|l| l.starts_with("tenants: ")).unwrap();
    assert!(
        tenants.contains(&format!("northwind ({}, app northwind-own)", northwind.id))
            && tenants.contains(&format!("agency ({}, cloud gov)", agency.id)),
        "{tenants}"
    );
    // The simulator's two listeners, as printed.
    let head = printed.iter().find(|l| l.contains("dev mode")).unwrap();
    let base_after = |marker: &str| {
        head.split(marker)
            .nth(1)
            .unwrap()
            .split([';', ' '])
            .next()
            .unwrap()
            .to_owned()
    };
    let (sim_base, gov_base) = (base_after("Defender API on "), base_after("`gov` on "));
    assert_ne!(sim_base, gov_base);

    for comment in [
        "# its own app: [apps.northwind-own]",
        "# gov cloud: [clouds.gov]",
    ] {
        let url = curl_url(&printed, comment);
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["value"].as_array().is_some_and(|v| !v.is_empty()),
            "{body}"
        );
    }
    // What the simulator saw: northwind's token of its own app, agency's request at the gov host.
    let seen: serde_json::Value = reqwest::get(format!("{sim_base}/_sim/requests"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api = seen["api_requests"].as_array().unwrap();
    let of = |tid: &str| {
        api.iter()
            .find(|r| r["tid"] == tid)
            .unwrap_or_else(|| panic!("{seen:#}"))
    };
    assert_eq!(of(&northwind.id)["app_id"], dev.apps[0].client_id.as_str());
    assert_eq!(of(&northwind.id)["cloud"], "public");
    let gov = of(&agency.id);
    assert_eq!(
        (&gov["cloud"], &gov["app_id"]),
        (&"gov".into(), &dev.client_id.as_str().into())
    );
    assert_eq!(gov["host"], gov_base.trim_start_matches("http://"));
    assert_eq!(gov["aud"], "https://api-gov.securitycenter.microsoft.us");
    terminate(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn consent_url_prints_each_tenants_link() {
    let dir = support::TempDir::new("consent");
    let config = dir.join("proxy.toml");
    let tenants = vec![
        (
            "contoso".to_string(),
            "22222222-2222-2222-2222-222222222222".to_string(),
        ),
        (
            "fabrikam".to_string(),
            "33333333-3333-3333-3333-333333333333".to_string(),
        ),
    ];
    std::fs::write(
        &config,
        config_text(
            "https://login.microsoftonline.com",
            "11111111-1111-1111-1111-111111111111",
            &tenants,
        )
        .replace(
            "api = \"https://login.microsoftonline.com\"",
            "api = \"https://api.security.microsoft.com\"",
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["consent-url", "--config"])
        .arg(&config)
        .env("TEST_APP_SECRET", "s")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("contoso\thttps://login.microsoftonline.com/22222222-2222-2222-2222-222222222222/adminconsent?client_id=11111111-1111-1111-1111-111111111111"), "{text}");
    assert!(text.contains("fabrikam\thttps://login.microsoftonline.com/33333333-3333-3333-3333-333333333333/adminconsent?client_id="), "{text}");
    let out = Command::new(BIN)
        .args(["consent-url", "--tenant", "acme", "--config"])
        .arg(&config)
        .env("TEST_APP_SECRET", "s")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Threads of a running process, from /proc (Linux).
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

#[tokio::test]
async fn workers_choose_the_runtime_one_thread_or_a_pool() {
    let sim = Simulator::start(SimConfig::demo()).await.unwrap();
    let tenants: Vec<(String, String)> = sim
        .config()
        .tenants
        .iter()
        .map(|t| (t.name.clone(), t.id.clone()))
        .collect();
    let text = config_text(sim.base_url(), &sim.config().client_id, &tenants);
    let secret = sim.config().client_secret.clone();
    for (workers, expected) in [("1", 1), ("3", 4)] {
        let env = [
            ("TEST_APP_SECRET", secret.as_str()),
            ("DEFENDER_PROXY_WORKERS", workers),
        ];
        let proxy = support::ProxyProcess::spawn(&text, &env).await;
        let r = reqwest::get(proxy.url("/contoso/api/incidents"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // One worker: everything on the main thread; else the main thread plus the workers.
        let pid = proxy.child.id().unwrap();
        assert_eq!(threads(pid), expected, "--workers {workers}");
    }
}

#[tokio::test]
async fn serve_config_warns_at_start_about_an_unauthenticated_listener_off_loopback() {
    let sim = Simulator::start(SimConfig::demo()).await.unwrap();
    let tenants: Vec<(String, String)> = sim
        .config()
        .tenants
        .iter()
        .map(|t| (t.name.clone(), t.id.clone()))
        .collect();
    let text = config_text(sim.base_url(), &sim.config().client_id, &tenants).replace(
        "[listen]\naddr = \"127.0.0.1:0\"\n",
        "[listen]\naddr = \"0.0.0.0:0\"\nallow_unauthenticated = true\n",
    );
    let secret = sim.config().client_secret.clone();
    // Started as `main` starts it: `serve --config FILE`.
    let mut proxy =
        support::ProxyProcess::spawn(&text, &[("TEST_APP_SECRET", secret.as_str())]).await;
    let warning = support::eventually(
        Duration::from_secs(10),
        "the unauthenticated-listener warning",
        || {
            let found = proxy
                .log
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| {
                    v["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("without inbound authentication"))
                });
            async move { found }
        },
    )
    .await;
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(
        warning["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("0.0.0.0:")),
        "{warning}"
    );
    terminate(&proxy.child);
    let status = support::within(Duration::from_secs(30), "exit", proxy.child.wait())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
