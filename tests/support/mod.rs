//! Test harness: the simulator and the real proxy on ephemeral loopback ports, in-process, so
//! tests can drive the proxy over real sockets and assert on what the simulator received.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use defender_proxy::app::{App, Listeners};
use defender_proxy::config::{Config, LimitPolicy, Windows};
use defender_proxy::dev::{dev_config, dev_config_in};
use defender_proxy::proxy::Proxy;
use defender_proxy::reload::ReloadError;
use defender_proxy::sim::{RunningSim, SimConfig, Simulator};
use std::future::Future as _;
use tokio::net::TcpListener;

use tokio::sync::oneshot;

pub const CONTOSO: &str = "contoso";
pub const FABRIKAM: &str = "fabrikam";

pub struct Harness {
    pub sim: RunningSim,
    pub sim_config: SimConfig,
    pub config: Config,
    pub proxy: Arc<Proxy>,
    /// The proxy as `main` starts it ([`App::build`] then [`App::run`]), kept to reload it.
    pub app: App,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The consent callback's listener, when the config has `[onboarding]`.
    pub onboarding: Option<SocketAddr>,
    pub http: reqwest::Client,
    server: ServerTask,
}

impl Harness {
    /// Proxy + simulator with the demo tenants.
    pub async fn start() -> Harness {
        Self::start_with(SimConfig::demo(), |_| {}).await
    }

    /// Proxy + simulator; `tweak` adjusts the proxy's config before it starts.
    pub async fn start_with(sim_config: SimConfig, tweak: impl FnOnce(&mut Config)) -> Harness {
        let sim = Simulator::start(sim_config.clone())
            .await
            .expect("simulator starts");
        let base = sim.base_url().to_string();
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = dev_config(&sim_config, &base, loopback, loopback);
        // Tests of other features must not trip over Defender's limits; rate-limit tests set
        // their own with `set_policy`.
        let unlimited = Windows {
            per_minute: None,
            per_hour: None,
            burst: None,
        };
        set_policy(&mut config, |p| p.windows = unlimited);
        tweak(&mut config);
        Self::serve(sim, sim_config, config, None).await
    }

    /// Proxy + simulator, the proxy's config read from the file `write` makes (given the
    /// simulator's base URL), as `serve --config` reads it: [`Harness::reload`] re-reads it.
    pub async fn start_file(
        sim_config: SimConfig,
        write: impl FnOnce(&str) -> std::path::PathBuf,
    ) -> Harness {
        let sim = Simulator::start(sim_config.clone())
            .await
            .expect("simulator starts");
        let path = write(sim.base_url());
        let config = defender_proxy::config::load_file(&path).expect("the config is valid");
        Self::serve(sim, sim_config, config, Some(path)).await
    }

    /// Proxy + simulator, every cloud of `sim_config` on a listener of its own, the proxy's
    /// config what [`dev_config_in`] makes of it (its apps with a secret as `[apps.NAME]`, its
    /// clouds as `[clouds.NAME]`, tenants on them) with unlimited tenant policies, then `tweak`.
    pub async fn start_clouds(sim_config: SimConfig, tweak: impl FnOnce(&mut Config)) -> Harness {
        let sim = Simulator::start(sim_config.clone())
            .await
            .expect("simulator starts");
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = dev_config_in(&sim_config, &sim.base_urls(), loopback, loopback);
        set_policy(&mut config, |p| {
            p.windows = Windows {
                per_minute: None,
                per_hour: None,
                burst: None,
            }
        });
        tweak(&mut config);
        Self::serve(sim, sim_config, config, None).await
    }

    /// As [`Harness::start_file`], `write` given the running simulator (every cloud's base URL).
    pub async fn start_file_in(
        sim_config: SimConfig,
        write: impl FnOnce(&RunningSim) -> std::path::PathBuf,
    ) -> Harness {
        let sim = Simulator::start(sim_config.clone())
            .await
            .expect("simulator starts");
        let path = write(&sim);
        let config = defender_proxy::config::load_file(&path).expect("the config is valid");
        Self::serve(sim, sim_config, config, Some(path)).await
    }

    /// Start the proxy on port 0 the way `main` does, through [`App`].
    async fn serve(
        sim: RunningSim,
        sim_config: SimConfig,
        config: Config,
        file: Option<std::path::PathBuf>,
    ) -> Harness {
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let data = TcpListener::bind(loopback).await.unwrap();
        let admin = TcpListener::bind(loopback).await.unwrap();
        let addr = data.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let onboarding = match config.onboarding {
            Some(_) => Some(TcpListener::bind(loopback).await.unwrap()),
            None => None,
        };
        let onboarding_addr = onboarding.as_ref().map(|l| l.local_addr().unwrap());
        let app = App::build(&config, file).expect("proxy builds");
        let proxy = app.proxy().clone();
        let listeners = Listeners {
            data,
            admin,
            onboarding,
        };
        let server = ServerTask::spawn(|stop| app.clone().run(listeners, stop));
        Harness {
            sim,
            sim_config,
            config,
            proxy,
            app,
            addr,
            admin: admin_addr,
            onboarding: onboarding_addr,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Reload the config file now, through the reloader SIGHUP uses; `None` without a file.
    pub async fn reload(&self) -> Option<Result<(), ReloadError>> {
        self.app.reload().await
    }

    pub fn tenant_id(&self, name: &str) -> String {
        self.sim_config
            .tenants
            .iter()
            .find(|t| t.name == name)
            .expect("tenant")
            .id
            .clone()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// `GET path?n=i`: requests that differ, so the proxy does not coalesce them.
    pub async fn get_distinct(&self, path: &str, i: usize) -> reqwest::Response {
        self.get(&format!("{path}?n={i}")).await
    }

    /// A metric's value from `/metrics` (the first line starting with `series`).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        metric_at(self.admin, series).await
    }

    /// Stop the proxy and wait for it to drain; a panic of its serve task panics here.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// A server's task (the proxy's `serve`) and its stop signal. Its panic is the test's: `stop`
/// re-raises it, and so does dropping it once the task has ended in a panic (unless the test
/// is already panicking).
pub struct ServerTask {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ServerTask {
    /// Spawn `serve(shutdown)`; `shutdown` resolves on [`ServerTask::stop`] or drop.
    pub fn spawn<F, Fut>(serve: F) -> ServerTask
    where
        F: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(Box::pin(async move {
            let _ = stop_rx.await;
        })));
        ServerTask {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Signal the stop and wait for the task to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            rethrow(task.await);
        }
    }

    /// The task has ended (its result is left for `stop` or drop).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_some_and(|t| t.is_finished())
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        // Dropping the sender stops a task still running (it drains on its own; a panic later
        // than this cannot be seen). A task already ended is asked for its result.
        let Some(mut task) = self.task.take() else {
            return;
        };
        if !task.is_finished() || std::thread::panicking() {
            return;
        }
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        if let std::task::Poll::Ready(result) = std::pin::Pin::new(&mut task).poll(&mut cx) {
            rethrow(result);
        }
    }
}

/// A panic of the task, raised again here; a cancelled task is no failure.
fn rethrow(result: Result<(), tokio::task::JoinError>) {
    if let Err(err) = result {
        if err.is_panic() {
            std::panic::resume_unwind(err.into_panic());
        }
    }
}

/// Change the rate-limit policy of `[rate_limit]` and of every tenant.
pub fn set_policy(config: &mut Config, change: impl Fn(&mut LimitPolicy)) {
    change(&mut config.rate_limit.defaults);
    for tenant in &mut config.tenants {
        change(&mut tenant.rate_limit);
    }
}

/// Send raw bytes on a new connection and read the whole answer (the proxy closes or answers).
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf)).await
        {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                // One response is enough: stop once headers and a complete JSON body are in.
                let text = String::from_utf8_lossy(&out);
                if let Some(idx) = text.find("\r\n\r\n") {
                    if let Some(len) = content_length(&text[..idx]) {
                        if out.len() >= idx + 4 + len {
                            break;
                        }
                    } else if text[idx..].contains("\r\n0\r\n\r\n") {
                        break; // the last chunk of a chunked body
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn content_length(head: &str) -> Option<usize> {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
}

/// The JSON error code of a proxy error body.
pub fn error_code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// The proxy binary running as its own process, addresses read from its JSON logs.
pub struct ProxyProcess {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// Every stderr line so far (a background task keeps reading).
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
    /// The folder [`ProxyProcess::spawn`] wrote the config to, removed with the process.
    dir: Option<TempDir>,
}

impl ProxyProcess {
    /// Start `defender-proxy serve` on `config_text` (listen and admin on port 0), with `env`.
    pub async fn spawn(config_text: &str, env: &[(&str, &str)]) -> ProxyProcess {
        let dir = TempDir::new("proc");
        let config = dir.path("proxy.toml");
        std::fs::write(&config, config_text).unwrap();
        let mut process = Self::spawn_file(&config, env).await;
        process.dir = Some(dir);
        process
    }

    /// Start `defender-proxy serve --config <config>` (a file the test may rewrite and reload).
    pub async fn spawn_file(config: &std::path::Path, env: &[(&str, &str)]) -> ProxyProcess {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_defender-proxy"));
        command
            .args(["--log-format", "json", "serve", "--config"])
            .arg(config);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() || admin.is_none() {
            let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
                .await
                .expect("the proxy starts in time")
                .unwrap()
                .unwrap_or_else(|| panic!("proxy exited: {:#?}", log.lock().unwrap()));
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let parsed = v["addr"].as_str().and_then(|a| a.parse().ok());
                match v["message"].as_str() {
                    Some("listening") => addr = parsed,
                    Some("admin listening") => admin = parsed,
                    _ => {}
                }
            }
            log.lock().unwrap().push(line);
        }
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        ProxyProcess {
            child,
            addr: addr.unwrap(),
            admin: admin.unwrap(),
            log,
            dir: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A metric's value from `/metrics` (the first line starting with `series`).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        metric_at(self.admin, series).await
    }
}

/// The `/metrics` text of the admin listener at `admin`.
pub async fn metrics_text(admin: SocketAddr) -> Option<String> {
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// A metric's value from the `/metrics` of the admin listener at `admin`.
pub async fn metric_at(admin: SocketAddr, series: &str) -> Option<f64> {
    let text = metrics_text(admin).await?;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `future`'s output, or a panic naming `what` if it takes longer than `limit`: a bound on a
/// wait, never a pause.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl std::future::Future<Output = T>,
) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: not within {limit:?}"),
    }
}

/// Poll `check` until it returns `Some`, for at most `limit` (conditions that become true
/// asynchronously, e.g. a counter bumped when a connection's task notices a close).
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    within(limit, what, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// The log lines written on this thread while the guard of [`Logs::capture`] lives, as JSON
/// objects (fields flattened, as `--log-format json` writes them), and which requests are parked
/// in the proxy. The in-process [`Harness`] on a `#[tokio::test]`'s current-thread runtime runs
/// every task on the test's thread, so its logs land here; a multi-threaded runtime's workers
/// would not.
#[derive(Clone, Default)]
pub struct Logs {
    bytes: Arc<Mutex<Vec<u8>>>,
    /// Request spans (`defender_proxy::proxy`'s "request") left and not entered again or closed.
    parked: Arc<Mutex<std::collections::HashSet<u64>>>,
}

impl Logs {
    /// Capture INFO and above (the access lines included) until the guard drops.
    ///
    /// Other tests of the binary run at the same time on other threads. With one dispatcher
    /// registered in the process, tracing takes a shortcut: a callsite's interest is asked of the
    /// default dispatcher of whichever thread registers it or rebuilds the cache, and on another
    /// test's thread (no subscriber) a line is then cached as heard by no one, for this capture
    /// too. An inert second dispatcher, kept for the rest of the process, turns the shortcut off:
    /// every subscriber alive is asked.
    #[must_use = "the capture ends when the guard drops"]
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        use tracing_subscriber::layer::SubscriberExt as _;
        static INERT: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        INERT.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        use tracing_subscriber::Layer as _;
        let logs = Logs::default();
        let writer = logs.clone();
        let info = tracing_subscriber::filter::LevelFilter::INFO;
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || writer.clone())
                    .with_ansi(false)
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_filter(info),
            )
            .with(Parked(logs.parked.clone()).with_filter(info));
        let guard = tracing::subscriber::set_default(subscriber);
        // A callsite another test's thread was registering just then may have cached "no one
        // listens" before this subscriber existed: ask every callsite again.
        tracing::callsite::rebuild_interest_cache();
        (logs, guard)
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.bytes.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The lines whose message is `message`.
    pub fn messages(&self, message: &str) -> Vec<serde_json::Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["message"] == message)
            .collect()
    }

    /// The access lines (target `defender_proxy::access`).
    pub fn access(&self) -> Vec<serde_json::Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["target"] == "defender_proxy::access")
            .collect()
    }

    /// Requests whose handler has run and now waits (its span was left and not entered again):
    /// on the current-thread runtime, a request counted here has run up to its first await.
    /// The handler awaits nothing before it joins a flight, so a request coalescing could join
    /// has joined (or leads) once it is counted.
    pub fn parked_requests(&self) -> usize {
        self.parked.lock().unwrap().len()
    }
}

/// Keeps [`Logs::parked_requests`].
struct Parked(Arc<Mutex<std::collections::HashSet<u64>>>);

impl Parked {
    fn is_request<S>(
        id: &tracing::span::Id,
        ctx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        ctx.metadata(id)
            .is_some_and(|m| m.name() == "request" && m.target() == "defender_proxy::proxy")
    }
}

impl<S> tracing_subscriber::Layer<S> for Parked
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_enter(&self, id: &tracing::span::Id, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.lock().unwrap().remove(&id.into_u64());
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if Self::is_request(id, &ctx) {
            self.0.lock().unwrap().insert(id.into_u64());
        }
    }

    fn on_close(&self, id: tracing::span::Id, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.lock().unwrap().remove(&id.into_u64());
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A fresh folder under the system's temp dir, removed (with what is in it) when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "defender-proxy-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, file: &str) -> std::path::PathBuf {
        self.0.join(file)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
