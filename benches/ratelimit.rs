//! Limiter cost per decision: the in-memory backend with 1 and with 10,000 tenants, and the
//! Redis backend (a local `redis-server`, started on a free port when it is installed).
//!
//! `cargo bench --bench ratelimit` prints a Markdown table. Not a test: numbers, not verdicts.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use defender_proxy::config::{
    LimitBackend, LimitMode, LimitPolicy, OnBackendError, RateLimitConfig, RedisBackendConfig,
    Windows,
};
use defender_proxy::ratelimit::testkit::RedisServer;
use defender_proxy::ratelimit::RateLimiter;

/// Limits no benchmark can reach, so every decision admits (the common, fast case).
fn policy() -> LimitPolicy {
    LimitPolicy {
        windows: Windows {
            per_minute: NonZeroU32::new(4_000_000_000),
            per_hour: None,
            burst: None,
        },
        mode: LimitMode::Reject,
        max_wait: Duration::from_secs(30),
        max_queue: 200,
    }
}

fn config(backend: LimitBackend) -> RateLimitConfig {
    RateLimitConfig {
        defaults: policy(),
        routes: Vec::new(),
        backend,
    }
}

fn tenant_id(n: usize) -> String {
    format!("11111111-bbbb-4bbb-8bbb-{n:012}")
}

async fn local(tenants: usize, decisions: usize) -> Duration {
    let limiter = RateLimiter::new(&config(LimitBackend::Local)).expect("limiter");
    let limiters: Vec<_> = (0..tenants)
        .map(|n| limiter.tenant(&tenant_id(n), &policy()))
        .collect();
    let mut rng = fastrand::Rng::with_seed(7);
    let start = Instant::now();
    for _ in 0..decisions {
        let tenant = &limiters[rng.usize(..tenants)];
        let class = tenant.class_of("/api/incidents");
        tenant.admit(class).await.expect("admitted");
    }
    start.elapsed() / decisions as u32
}

async fn redis(url: String, decisions: usize) -> (Duration, Duration, Duration) {
    let backend = LimitBackend::Redis(RedisBackendConfig {
        url,
        password: None,
        on_error: OnBackendError::Reject,
        replicas: NonZeroU32::MIN,
    });
    let limiter = RateLimiter::new(&config(backend)).expect("limiter");
    let tenant = limiter.tenant(&tenant_id(0), &policy());
    let class = tenant.class_of("/api/incidents");
    for _ in 0..100 {
        tenant.admit(class).await.expect("warm-up");
    }
    let mut samples = Vec::with_capacity(decisions);
    for _ in 0..decisions {
        let start = Instant::now();
        tenant.admit(class).await.expect("admitted");
        samples.push(start.elapsed());
    }
    assert_eq!(limiter.backend_errors(), 0, "every decision went to Redis");
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / decisions as u32;
    (mean, samples[decisions / 2], samples[decisions * 99 / 100])
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("| limiter decision | mean | p50 | p99 |");
        println!("|---|---|---|---|");
        let one = local(1, 2_000_000).await;
        println!("| in-memory, 1 tenant | {one:?} | | |");
        let many = local(10_000, 2_000_000).await;
        println!("| in-memory, 10,000 tenants (random) | {many:?} | | |");
        match RedisServer::start_or_skip("bench") {
            Some(server) => {
                let (mean, p50, p99) = redis(server.url(), 20_000).await;
                println!("| Redis on loopback, 1 client | {mean:?} | {p50:?} | {p99:?} |");
            }
            None => println!("| Redis | skipped: redis-server not installed | | |"),
        }
    });
}
