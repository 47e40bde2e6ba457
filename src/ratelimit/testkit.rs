//! Test support (not part of the proxy): a throw-away `redis-server` on a free loopback port, for
//! the Redis backend's tests here and in `tests/`.
//!
//! When `redis-server` is not installed, [`RedisServer::start_or_skip`] prints a loud SKIPPED line
//! and returns `None`, unless `DEFENDER_PROXY_REQUIRE_REDIS` is set (as in CI), where it panics.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set (to anything) to make a missing `redis-server` fail the tests instead of skipping them.
pub const REQUIRE_ENV: &str = "DEFENDER_PROXY_REQUIRE_REDIS";

/// How long a started server may take to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A running `redis-server` child process, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    /// Extra arguments, kept for restarts.
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port, or returns `None` (after saying so on stderr) when
    /// `redis-server` is not on `PATH`. `test` names the caller in the SKIPPED message.
    ///
    /// # Panics
    /// When `redis-server` is missing and [`REQUIRE_ENV`] is set, or when it does not start.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        Self::start_with_args_or_skip(test, &[])
    }

    /// [`RedisServer::start_or_skip`] with extra `redis-server` arguments, e.g.
    /// `["--requirepass", "..."]`.
    pub fn start_with_args_or_skip(test: &str, args: &[&str]) -> Option<Self> {
        let Some(binary) = find_redis_server() else {
            if std::env::var_os(REQUIRE_ENV).is_some() {
                panic!("{test}: redis-server not found on PATH, and {REQUIRE_ENV} is set: install it (apt-get install redis-server)");
            }
            eprintln!("\n!!!!!! SKIPPED: redis-server not found ({test}); set {REQUIRE_ENV} to make this fail !!!!!!\n");
            return None;
        };
        let port = free_port();
        let mut server = Self {
            binary,
            port,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        server.restart();
        Some(server)
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the server on the same port, with an empty data set, and waits until it
    /// answers `PING`.
    ///
    /// # Panics
    /// When it does not answer within 10 s.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => self.child = Some(child),
            Err(e) => panic!("cannot run {}: {e}", self.binary.display()),
        }
        let started = Instant::now();
        while !ping(self.port) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            assert!(
                started.elapsed() < READY_WITHIN,
                "redis-server on port {} did not answer PING within {READY_WITHIN:?}",
                self.port
            );
            // Polling interval of the readiness check (not a synchronisation by time).
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-server` on `PATH`, if any.
pub fn find_redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    // The OS picks a free port; it is released right away for redis-server to bind (a tiny race
    // with other processes, acceptable for tests).
    match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("no free port on 127.0.0.1: {e}"),
    }
}

/// One `PING` over a fresh connection: any reply (`+PONG`, or `-NOAUTH` with a password) means
/// the server is up.
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0; 1];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && matches!(&reply, b"+" | b"-")
}
