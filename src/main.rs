//! The `defender-proxy` command line: a thin layer over the library. Exit codes: 0 ok,
//! 1 runtime failure, 2 bad config or usage.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use clap::{Parser, Subcommand, ValueEnum};

/// glibc malloc's consolidation and free-list walks were ~12 % of the CPU of a proxied request;
/// mimalloc's thread-local free lists cost a fraction of that (see benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use defender_proxy::app::{self, App};
use defender_proxy::telemetry::Telemetry;
use defender_proxy::{config, dev, logging, onboarding, sim};

#[derive(Debug, Parser)]
#[command(
    name = "defender-proxy",
    version,
    about = "Reverse proxy for the Microsoft 365 Defender APIs of many customer tenants"
)]
struct Cli {
    /// Log format on stderr (default: text on a terminal, json otherwise).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        #[arg(long, env = "DEFENDER_PROXY_CONFIG", required_unless_present = "dev")]
        config: Option<PathBuf>,
        /// Run with a built-in simulated Entra ID and Defender API (tenants contoso, fabrikam).
        #[arg(long, conflicts_with = "config")]
        dev: bool,
        /// With --dev: the proxy's address.
        #[arg(long, requires = "dev", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// With --dev: the admin address.
        #[arg(long, requires = "dev", default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
        /// Worker threads; 0: one per CPU the process may use (its affinity and cgroup quota).
        /// With one, the proxy runs on a single-threaded runtime (no work-stealing overhead).
        #[arg(long, env = "DEFENDER_PROXY_WORKERS", default_value_t = 0)]
        workers: usize,
    },
    /// Run only the simulator (Entra ID token endpoint + Defender API subset).
    Simulate {
        #[arg(long, default_value = "127.0.0.1:8090")]
        addr: SocketAddr,
        /// Generated tenants (`tenant-00001`...) besides contoso and fabrikam, for benchmarks.
        #[arg(long, default_value_t = 0)]
        extra_tenants: usize,
        /// Don't enforce Defender's per-tenant limits (for load tests).
        #[arg(long)]
        no_limits: bool,
    },
    /// Parse and validate the config; print every problem.
    Validate {
        #[arg(long, env = "DEFENDER_PROXY_CONFIG")]
        config: PathBuf,
    },
    /// Make a new random client key; print it and the `key_sha256` to put in the config.
    HashKey,
    /// Certificate helpers.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// For every tenant: get a token, check its `tid` and `roles`; print one line per tenant
    /// (the AADSTS error and the admin-consent link for tenants that fail), and with a Graph
    /// `[[api]]` whether Graph advanced hunting is ready. Exit 1 if any fails.
    Check {
        #[arg(long, env = "DEFENDER_PROXY_CONFIG")]
        config: PathBuf,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print each tenant's admin-consent link, or with --new the link that onboards a new one.
    ConsentUrl {
        #[arg(long, env = "DEFENDER_PROXY_CONFIG")]
        config: PathBuf,
        #[arg(long, conflicts_with = "new")]
        tenant: Option<String>,
        /// The name the consenting tenant is added as (needs [onboarding]).
        #[arg(long, value_name = "NAME")]
        new: Option<String>,
        /// With --new: the app to consent to (default: [app]).
        #[arg(long, requires = "new")]
        app: Option<String>,
        /// With --new: the cloud the tenant is in (default: [cloud]).
        #[arg(long, requires = "new")]
        cloud: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Write a dev CA, a localhost server certificate and a client certificate (for trying TLS
    /// and mTLS; not for production).
    Dev {
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // JSON log lines unless asked for text; by default text on a terminal only.
    let json = match cli.log_format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stderr().is_terminal(),
    };
    // `serve --config` makes its subscriber once the config says whether traces are on.
    let config_first = matches!(&cli.command, Command::Serve { config, .. } if config.is_some());
    if !config_first {
        logging::init(json, None);
    }
    install_panic_hook();
    match cli.command {
        Command::HashKey => hash_key(),
        Command::Certs {
            command: CertsCommand::Dev { out },
        } => dev_certs(&out),
        Command::Validate { config } => validate(&config),
        Command::Check { config, json } => check(&config, json),
        Command::ConsentUrl {
            config,
            tenant,
            new,
            app,
            cloud,
        } => {
            let [t, n, a, c] = [&tenant, &new, &app, &cloud].map(Option::as_deref);
            consent_url(&config, onboarding::Wanted::of(t, n, a, c))
        }
        Command::Serve {
            config: Some(path),
            workers,
            ..
        } => serve(path, workers, json),
        Command::Serve {
            config: None,
            listen,
            admin,
            workers,
            ..
        } => runtime_result(run_async(workers, async move {
            dev::run(listen, admin, shutdown_signal()).await
        })),
        Command::Simulate {
            addr,
            extra_tenants,
            no_limits,
        } => simulate(addr, extra_tenants, no_limits),
    }
}

/// `hash-key`: a new client key and its hash.
fn hash_key() -> ExitCode {
    let (key, hash) = defender_proxy::inbound::auth::hash_key();
    println!("key:        {key}");
    println!("key_sha256: {hash}");
    eprintln!("Give the key to the client (Authorization: Bearer <key> or X-Api-Key); put only key_sha256 in the config.");
    ExitCode::SUCCESS
}

/// `certs dev`: the dev CA, server and client certificates, written to `out`.
fn dev_certs(out: &std::path::Path) -> ExitCode {
    match defender_proxy::inbound::certs::write_dev_certs(out) {
        Ok(certs) => {
            println!("wrote to {}:", out.display());
            for (what, path) in [
                (
                    "dev CA (client_ca, and the CA clients trust)",
                    &certs.ca_cert,
                ),
                (
                    "server certificate for localhost ([listen.tls] cert)",
                    &certs.server_cert,
                ),
                ("server key ([listen.tls] key)", &certs.server_key),
                (
                    "client certificate (cert_subject = \"dev-client\")",
                    &certs.client_cert,
                ),
                ("client key", &certs.client_key),
            ] {
                println!("  {:<55} {}", what, path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("defender-proxy: {err}");
            ExitCode::from(1)
        }
    }
}

/// `validate`: the config's warnings and tenant count, or every problem (exit 2).
fn validate(path: &std::path::Path) -> ExitCode {
    match config::load_file(path) {
        Ok(cfg) => {
            for warning in &cfg.warnings {
                eprintln!("warning: {warning}");
            }
            println!("{}: ok ({} tenants)", path.display(), cfg.tenants.len());
            ExitCode::SUCCESS
        }
        Err(errors) => config_failure(path, &errors),
    }
}

/// `consent-url`: the links `wanted`; exit 2 without one (no such tenant, a name refused).
fn consent_url(path: &std::path::Path, wanted: onboarding::Wanted<'_>) -> ExitCode {
    let cfg = match config::load_file(path) {
        Ok(cfg) => cfg,
        Err(errors) => return config_failure(path, &errors),
    };
    match onboarding::consent_links(&cfg, wanted, std::time::SystemTime::now()) {
        Ok(lines) => println!("{}", lines.join("\n")),
        Err(err) => {
            eprintln!("{}: {err}", path.display());
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// `serve --config`: the proxy on the configured addresses, reloading from `path`.
fn serve(path: PathBuf, workers: usize, json: bool) -> ExitCode {
    let cfg = match config::load_file(&path) {
        Ok(cfg) => cfg,
        Err(errors) => {
            logging::init(json, None);
            return config_failure(&path, &errors);
        }
    };
    // `[telemetry]`: the trace pipeline, and its layer in the subscriber.
    let telemetry = Telemetry::start(&cfg);
    logging::init(json, telemetry.as_ref().ok().and_then(Option::as_ref));
    runtime_result(run_async(workers, async move {
        let listeners = app::bind(&cfg).await?;
        App::build_with(&cfg, Some(path), telemetry?)?
            .run(listeners, shutdown_signal())
            .await;
        Ok(())
    }))
}

/// `simulate`: only the simulator, until SIGINT or SIGTERM.
fn simulate(addr: SocketAddr, extra_tenants: usize, no_limits: bool) -> ExitCode {
    runtime_result(run_async(0, async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind {addr}"))?;
        let mut sim_config = sim::SimConfig::demo_with_tenants(extra_tenants);
        sim_config.enforce_limits = !no_limits;
        let simulator = sim::Simulator::new(sim_config);
        eprintln!("simulator on http://{addr} (token endpoint /{{tenant}}/oauth2/v2.0/token, API /api/...)");
        simulator.serve(listener, shutdown_signal()).await?;
        Ok(())
    }))
}

/// `check`: exit 0 when every tenant passed (warnings included), 1 when any failed, 2 for a bad
/// config (an unusable key or CA file included, as `validate` would say).
fn check(path: &std::path::Path, json: bool) -> ExitCode {
    use defender_proxy::check;
    let cfg = match config::load_file(path) {
        Ok(cfg) => cfg,
        Err(errors) => return config_failure(path, &errors),
    };
    for warning in &cfg.warnings {
        eprintln!("warning: {warning}");
    }
    let runtime = match runtime(0) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("defender-proxy: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let checks = match runtime.block_on(check::run(&cfg)) {
        Ok(checks) => checks,
        Err(err) => {
            eprintln!("{}: {err}", path.display());
            return ExitCode::from(2);
        }
    };
    if json {
        println!("{}", check::render_json(&checks));
    } else {
        print!("{}", check::render_text(&checks));
    }
    if check::all_passed(&checks) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn config_failure(path: &std::path::Path, errors: &config::ConfigErrors) -> ExitCode {
    eprintln!("{}: {} problem(s):", path.display(), errors.problems.len());
    eprintln!("{errors}");
    ExitCode::from(2)
}

/// Run `fut` on [`runtime`]`(workers)`.
fn run_async(
    workers: usize,
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    runtime(workers)
        .context("cannot start the runtime")?
        .block_on(fut)
}

/// Multi-threaded with `workers` threads, or (with one worker, measured ~12 % less CPU per
/// request than a one-worker multi-threaded runtime) a current-thread runtime. 0 takes the CPUs
/// this process may use.
fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder.enable_all().build()
}

fn runtime_result(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "exiting");
            eprintln!("defender-proxy: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// SIGINT or SIGTERM, handled from the moment this is called (in the runtime), not from the
/// first poll: a SIGTERM while the proxy still starts must drain it, not kill it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = [
        tokio::signal::unix::SignalKind::interrupt(),
        tokio::signal::unix::SignalKind::terminate(),
    ]
    .map(|kind| tokio::signal::unix::signal(kind).ok());
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                let Some(mut s) = s else {
                    return std::future::pending::<()>().await;
                };
                s.recv().await;
            };
            let [interrupt, terminate] = signals;
            tokio::select! { _ = wait(interrupt) => {}, _ = wait(terminate) => {} }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Log panics through tracing, with their location and thread but WITHOUT their message. std's
/// default hook prints the message, and std's messages quote data: a string slice off a
/// character boundary quotes the string sliced (once, the first 256 characters of an access
/// token). Secrets must never reach a log, and the location is enough to find the bug. A panic
/// inside a token request is also caught and recorded as a failure (`token::slot`); this hook is
/// what keeps any panic, there or elsewhere, from printing secret text.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(log_panic));
}

fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let thread = std::thread::current();
    tracing::error!(
        panic = %panic_report(info.location(), thread.name()),
        "panic"
    );
}

/// The hook's text: where and in which thread, never the payload (the hook does not read it).
fn panic_report(location: Option<&std::panic::Location<'_>>, thread: Option<&str>) -> String {
    let at = location.map_or_else(
        || "an unknown location".to_owned(),
        |l| format!("{}:{}:{}", l.file(), l.line(), l.column()),
    );
    let thread = thread.unwrap_or("<unnamed>");
    format!("panicked at {at} in thread '{thread}' (message withheld: it may quote secret data)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_report_names_the_place_and_thread_and_nothing_else() {
        let location = std::panic::Location::caller();
        let report = panic_report(Some(location), Some("tokio-runtime-worker"));
        assert_eq!(
            report,
            format!(
                "panicked at {}:{}:{} in thread 'tokio-runtime-worker' (message withheld: it may quote secret data)",
                file!(),
                location.line(),
                location.column()
            )
        );
        assert_eq!(
            panic_report(None, None),
            "panicked at an unknown location in thread '<unnamed>' (message withheld: it may quote secret data)"
        );
    }

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_hook_logs_the_location_but_not_the_message() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        // The only test of this binary that panics, so swapping the process's hook is safe.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(log_panic));
        let line = line!() + 2;
        let result = tracing::subscriber::with_default(subscriber, || {
            std::panic::catch_unwind(|| panic!("the token is eyJ0eXAi.secret"))
        });
        std::panic::set_hook(previous);
        assert!(result.is_err());
        let bytes = captured
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let log = String::from_utf8_lossy(&bytes);
        assert!(log.contains(&format!("{}:{line}:", file!())), "{log}");
        assert!(log.contains("message withheld"), "{log}");
        assert!(!log.contains("the token is"), "{log}");
        assert!(!log.contains("eyJ0eXAi"), "{log}");
    }
}
