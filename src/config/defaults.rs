//! Defaults live here and nowhere else: the constants the loader and the presets use, and the
//! `Default` of every settings type that has one, so a default is changed in one place.

use std::num::NonZeroU32;
use std::time::Duration;

use super::{
    CacheConfig, ConnectionOverflow, LimitMode, LimitPolicy, ListenLimits, MetricsConfig,
    UpstreamConfig, Windows,
};

pub const LISTEN_ADDR: &str = "127.0.0.1:8080";
pub const ADMIN_ADDR: &str = "127.0.0.1:9090";
pub const AUTHORITY: &str = "https://login.microsoftonline.com";
pub const API: &str = "https://api.security.microsoft.com";
pub const SCOPE: &str = "https://api.security.microsoft.com/.default";
pub const TENANT_HEADER: &str = "X-Defender-Tenant";
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);
/// Defender's documented limits for listing incidents, per app and customer tenant.
pub const PER_MINUTE: u32 = 50;
pub const PER_HOUR: u32 = 1500;
/// Defender for Endpoint's documented limits (machines, alerts, machine actions): the
/// defaults of an `[[api]]` on its hosts.
pub const MDE_PER_MINUTE: u32 = 100;
pub const MDE_PER_HOUR: u32 = 1500;
/// The Graph security API's documented limit (no hourly one): the default of an `[[api]]`
/// on a Graph host.
pub const GRAPH_PER_MINUTE: u32 = 150;
/// Graph's advanced hunting: "at least 45 calls per minute per tenant" (its own limit and CPU
/// quota, whichever route a query came by).
pub const GRAPH_HUNTING_PER_MINUTE: u32 = 45;
pub const MDE_SCOPE: &str = "https://api.securitycenter.microsoft.com/.default";
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
pub const MAX_WAIT: Duration = Duration::from_secs(30);
pub const MAX_QUEUE: usize = 200;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Both body idle timeouts (nginx's `client_body_timeout` and `proxy_read_timeout`).
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const MAX_CONNECTIONS: usize = 4096;
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
pub const H2_MAX_HEADER_LIST_SIZE: u32 = 32 * 1024;
pub const CORS_MAX_AGE: Duration = Duration::from_secs(600);
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Today's behaviour, so dashboards that split latency by tenant keep working.
pub const PER_TENANT_HISTOGRAMS: bool = true;
/// `[telemetry] service_name`.
pub const SERVICE_NAME: &str = "defender-proxy";
/// The `[[api]]` advanced hunting goes through when it goes through Graph.
pub const HUNTING_GRAPH_API: &str = "graph";
/// Graph's hunting CPU quota works in 15-minute cycles whose start is not published.
pub const HUNTING_QUOTA_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

impl Default for LimitPolicy {
    /// The built-in policy, before any `[rate_limit]` key: Defender's documented limits, queue mode.
    fn default() -> Self {
        LimitPolicy {
            windows: Windows {
                per_minute: NonZeroU32::new(PER_MINUTE),
                per_hour: NonZeroU32::new(PER_HOUR),
                burst: None,
            },
            mode: LimitMode::Queue,
            max_wait: MAX_WAIT,
            max_queue: MAX_QUEUE,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout: CONNECT_TIMEOUT,
            response_timeout: RESPONSE_TIMEOUT,
            body_idle_timeout: BODY_IDLE_TIMEOUT,
        }
    }
}

impl Default for ListenLimits {
    fn default() -> Self {
        ListenLimits {
            max_header_bytes: MAX_HEADER_BYTES,
            header_timeout: HEADER_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            on_max_connections: ConnectionOverflow::Queue,
            max_body_bytes: None,
            body_idle_timeout: BODY_IDLE_TIMEOUT,
            h2_max_concurrent_streams: H2_MAX_CONCURRENT_STREAMS,
            h2_max_header_list_size: H2_MAX_HEADER_LIST_SIZE,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: None,
            max_entry_bytes: 1024 * 1024,
            max_bytes_per_tenant: 16 * 1024 * 1024,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            per_tenant_histograms: PER_TENANT_HISTOGRAMS,
        }
    }
}
