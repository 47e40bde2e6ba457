//! Reloads one at a time, and off the runtime's threads.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Reloader;
use crate::app::{App, Listeners};
use crate::proxy::Proxy;

const LIMIT: Duration = Duration::from_secs(20);

/// Two config versions, told apart by their one tenant.
const ONE: (&str, &str) = ("one", "22222222-2222-2222-2222-222222222222");
const TWO: (&str, &str) = ("two", "33333333-3333-3333-3333-333333333333");

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "defender-proxy-reload-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dir = Dir(dir);
        std::fs::write(dir.secret(), "s3cret").unwrap();
        dir
    }

    fn config(&self) -> PathBuf {
        self.0.join("proxy.toml")
    }

    fn secret(&self) -> PathBuf {
        self.0.join("secret")
    }

    /// A FIFO: whoever reads it waits until the test writes it.
    fn fifo(&self, name: &str) -> PathBuf {
        let path = self.0.join(name);
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        path
    }

    /// Replace the config with `tenant`'s version (see [`write_version`]).
    fn write(&self, tenant: (&str, &str), secret: &Path) {
        write_version(&self.0, tenant, secret);
    }

    /// The proxy built from the config file as it is now.
    fn proxy(&self) -> Arc<Proxy> {
        App::build(&crate::config::load_file(&self.config()).unwrap(), None)
            .unwrap()
            .proxy()
            .clone()
    }
}

/// Replace `dir`'s config (atomically, as an editor or Kubernetes would) with `tenant`'s
/// version, whose client secret is read from `secret`.
fn write_version(dir: &Path, tenant: (&str, &str), secret: &Path) {
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [app]\nclient_id = \"11111111-1111-1111-1111-111111111111\"\n\
         client_secret = {{ file = \"{}\" }}\n\
         [cloud]\nauthority = \"http://127.0.0.1:9\"\napi = \"http://127.0.0.1:9\"\n\
         [[tenant]]\nname = \"{}\"\nid = \"{}\"\n",
        secret.display(),
        tenant.0,
        tenant.1
    );
    let next = dir.join("proxy.toml.next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, dir.join("proxy.toml")).unwrap();
}

/// `future`'s output, or a panic naming `what` after `limit`: a bound on a wait.
async fn within<T>(limit: Duration, what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {limit:?}"))
}

/// Polls `check` until it holds, for at most `limit`.
async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    within(limit, what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The tenants of the running snapshot and of the running config.
fn running(proxy: &Proxy) -> (Vec<String>, Vec<String>) {
    let snapshot = proxy.snapshot.load();
    let routes = snapshot.routes.tenants().map(|t| t.name.to_string());
    let config = proxy.config.load();
    let config = config.tenants.iter().map(|t| t.name.clone());
    (routes.collect(), config.collect())
}

/// Opens `fifo` for writing on a thread of its own: the open returns once a reader has opened
/// it, so receiving the file means a reload is reading it.
fn writer_when_read(fifo: &Path) -> tokio::sync::oneshot::Receiver<std::fs::File> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let fifo = fifo.to_path_buf();
    std::thread::spawn(move || {
        let file = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
        let _ = tx.send(file);
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_asked_for_during_another_waits_and_takes_effect_after_it() {
    let dir = Dir::new("turns");
    dir.write(ONE, &dir.secret());
    let proxy = dir.proxy();
    let reloader = Reloader::new(proxy.clone(), None, dir.config());

    // Reload A reads version TWO and then waits on its secret (a FIFO nobody writes yet).
    let fifo = dir.fifo("slow-secret");
    dir.write(TWO, &fifo);
    let reading = writer_when_read(&fifo);
    let a = tokio::spawn({
        let reloader = reloader.clone();
        async move { reloader.reload().await }
    });
    let mut secret = within(LIMIT, "reload A reads its secret", reading)
        .await
        .unwrap();

    // Meanwhile the file goes back to ONE and reload B is asked for: it must wait for A (or,
    // were reloads not serialised, it would run now and A would then swap in its older read).
    dir.write(ONE, &dir.secret());
    let b = tokio::spawn({
        let reloader = reloader.clone();
        async move { reloader.reload().await }
    });
    eventually(LIMIT, "reload B waits for A (or has run)", || {
        reloader.queued() == 1 || b.is_finished()
    })
    .await;

    secret.write_all(b"s3cret").unwrap();
    drop(secret);
    within(LIMIT, "reload A", a).await.unwrap().unwrap();
    within(LIMIT, "reload B", b).await.unwrap().unwrap();
    // The file's last version (ONE), asked for last, is what runs: snapshot and config alike.
    assert_eq!(
        running(&proxy),
        (vec!["one".to_owned()], vec!["one".to_owned()])
    );
}

/// A reload waiting on a slow file (here a FIFO) leaves a one-thread runtime (`--workers 1`)
/// free to answer requests.
#[test]
fn a_reload_stuck_on_a_file_does_not_stall_a_current_thread_runtime() {
    let dir = Dir::new("stall");
    dir.write(ONE, &dir.secret());
    let fifo = dir.fifo("slow-secret");
    let config = dir.config();
    let (answered_tx, answered) = std::sync::mpsc::channel();
    let runtime = std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = App::build(
                    &crate::config::load_file(&config).unwrap(),
                    Some(config.clone()),
                )
                .unwrap();
                let data = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let admin_addr = admin.local_addr().unwrap();
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let serving = tokio::spawn(app.clone().run(
                    Listeners {
                        data,
                        admin,
                        onboarding: None,
                    },
                    async move {
                        let _ = stopped.await;
                    },
                ));
                let text = std::fs::read_to_string(&config)
                    .unwrap()
                    .replace(&dir_secret(&config), &fifo.display().to_string());
                std::fs::write(&config, text).unwrap();
                let reload = tokio::spawn(async move { app.reload().await.unwrap() });
                tokio::task::yield_now().await;
                // A request on this runtime's only thread, while the reload waits on the FIFO.
                let mut conn = tokio::net::TcpStream::connect(admin_addr).await.unwrap();
                conn.write_all(
                    b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
                )
                .await
                .unwrap();
                let mut response = String::new();
                conn.read_to_string(&mut response).await.unwrap();
                answered_tx.send((response, reload.is_finished())).unwrap();
                let result = reload.await.unwrap();
                let _ = stop.send(());
                serving.await.unwrap();
                result
            })
        }
    });
    let answer = answered.recv_timeout(LIMIT);
    // Let the reload read its secret either way, so the runtime's thread can end.
    let mut secret = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    secret.write_all(b"s3cret").unwrap();
    drop(secret);
    let (response, reload_done) = answer.expect("a request is answered while a reload waits");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(!reload_done, "the reload was still waiting on its file");
    runtime.join().unwrap().unwrap();
}

/// The secret file's path as the config written by [`Dir::write`] names it.
fn dir_secret(config: &Path) -> String {
    config.with_file_name("secret").display().to_string()
}

/// A change made to a config.
type Change = dyn Fn(&mut crate::config::Config);

#[test]
fn a_restart_is_named_for_exactly_what_the_running_listeners_keep() {
    use crate::config::ConnectionOverflow;
    let dir = Dir::new("restart-only");
    dir.write(ONE, &dir.secret());
    let start = crate::config::load_file(&dir.config()).unwrap();
    let started = super::RestartOnly::of(&start);
    let changed = |change: &Change| {
        let mut new = start.clone();
        change(&mut new);
        started.changed(&new)
    };
    // Read per request (inbound::Policy) or per snapshot: at once.
    assert!(changed(&|c| c.listen.limits.max_body_bytes = Some(10)).is_empty());
    assert!(changed(&|c| c.listen.limits.body_idle_timeout = Duration::from_secs(1)).is_empty());
    assert!(changed(&|c| c.listen.limits.max_header_bytes = 1024).is_empty());
    assert!(changed(&|c| c.tenants.clear()).is_empty());
    // Read once by the listeners and tasks started with the proxy.
    let cases: [(&Change, &str); 14] = [
        (
            &|c| {
                c.listen.tls = Some(crate::config::ServerTlsConfig {
                    cert: "cert.pem".into(),
                    key: "key.pem".into(),
                    client_ca: None,
                })
            },
            "listen.tls (on/off)",
        ),
        (&|c| c.listen.addr.set_port(1), "listen.addr"),
        (&|c| c.admin.addr.set_port(1), "admin.addr"),
        (
            &|c| c.listen.limits.max_connections = 1,
            "listen.max_connections",
        ),
        (
            &|c| c.listen.limits.on_max_connections = ConnectionOverflow::Refuse,
            "listen.on_max_connections",
        ),
        (
            &|c| c.listen.limits.header_timeout = Duration::from_secs(1),
            "listen.header_timeout",
        ),
        (
            &|c| c.listen.limits.idle_timeout = Duration::from_secs(1),
            "listen.idle_timeout",
        ),
        (
            &|c| c.listen.limits.h2_max_concurrent_streams = 1,
            "listen.h2_max_concurrent_streams",
        ),
        (
            &|c| c.listen.limits.h2_max_header_list_size = 1,
            "listen.h2_max_header_list_size",
        ),
        (
            &|c| c.listen.limits.max_header_bytes *= 4,
            "listen.max_header_bytes (raised)",
        ),
        (
            &|c| c.listen.shutdown_grace = Duration::from_secs(1),
            "listen.shutdown_grace",
        ),
        (&|c| c.reload.watch = true, "reload.watch"),
        (
            &|c| {
                c.onboarding = Some(crate::config::OnboardingConfig {
                    addr: "127.0.0.1:8443".parse().unwrap(),
                    redirect_uri: "https://onboard.example/consent/callback".into(),
                    state_key: secrecy::SecretString::from("k".repeat(32)),
                    tls: None,
                })
            },
            "onboarding (addr, tls)",
        ),
        (
            &|c| {
                c.telemetry = Some(crate::config::TelemetryConfig {
                    endpoint: http::Uri::from_static("http://127.0.0.1:4318/v1/traces"),
                    protocol: crate::config::TraceProtocol::Json,
                    service_name: "defender-proxy".into(),
                    sample_ratio: 1.0,
                })
            },
            "telemetry",
        ),
    ];
    for (change, name) in cases {
        assert_eq!(changed(change), [name]);
    }
}
