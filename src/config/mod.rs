//! Typed, validated settings.
//!
//! `load.rs` turns the TOML file into these types and reports every problem it finds; the rest of
//! the proxy only ever sees a [`Config`] that already passed validation, so nothing downstream
//! re-checks syntax, secrets or URLs.

mod api;
mod load;
mod raw;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderName;
use secrecy::{SecretBox, SecretString};

pub use api::{strip_api_prefix, ApiConfig, KnownApi};
pub use load::{load_file, parse_str, ConfigErrors, Problem};

/// Everything the proxy needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: ListenConfig,
    pub admin: AdminConfig,
    pub app: AppConfig,
    pub cloud: CloudConfig,
    /// `[[api]]`: APIs besides `[cloud]`'s, each picked by its path prefix, in file order. Each
    /// one's limits are a route class in `rate_limit.routes` (see [`RateLimitConfig::routes`]).
    pub apis: Vec<ApiConfig>,
    pub upstream: UpstreamConfig,
    pub routing: RoutingConfig,
    pub rate_limit: RateLimitConfig,
    pub tenants: Vec<TenantConfig>,
    /// `[[client]]`; empty: no inbound authentication (loopback only, unless opted out).
    pub clients: Vec<ClientConfig>,
    pub cors: CorsConfig,
    /// `[audit] file = PATH | "-"`; `None`: no audit log (the access log still runs).
    pub audit: Option<AuditTarget>,
    pub reload: ReloadConfig,
    /// `[cache]`: the short response cache (off without `ttl`).
    pub cache: CacheConfig,
    /// `[metrics]`: how `/metrics` splits its series.
    pub metrics: MetricsConfig,
    /// Files the config names whose change `[reload] watch` reacts to.
    pub watched_files: Vec<PathBuf>,
    /// Non-fatal findings (e.g. a secret file readable by others), logged at start and printed
    /// by `validate`.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub addr: SocketAddr,
    /// Operator's explicit opt-in to a non-loopback listener without inbound authentication.
    pub allow_unauthenticated: bool,
    /// `[listen.tls]`: HTTPS for clients, and mTLS with `client_ca`.
    pub tls: Option<ServerTlsConfig>,
    /// Request hardening limits (all `[listen]` keys).
    pub limits: ListenLimits,
    /// `shutdown_grace`: how long in-flight requests and streams may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// `public_url`: the proxy's base URL as clients reach it (`https://defender.soc.example`),
    /// for paging links when it sits behind another proxy; without it links use the scheme of
    /// the listener and the request's `Host`. No trailing slash.
    pub public_url: Option<String>,
}

/// `[cache]`: see [`crate::cache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long an answer is kept; `None`: no cache.
    pub ttl: Option<Duration>,
    pub max_entry_bytes: u64,
    pub max_bytes_per_tenant: u64,
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

/// `[metrics]`. Taken over by a reload: a scrape shows the series of the config it started on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `per_tenant_histograms`: the latency histograms (request and upstream duration,
    /// rate-limit wait) per tenant (`true`) or per API (`false`). Per tenant they are about
    /// 70 % of the text, ~3.5 KB of each tenant's ~5 KB; the counters stay per
    /// tenant either way.
    pub per_tenant_histograms: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            per_tenant_histograms: defaults::PER_TENANT_HISTOGRAMS,
        }
    }
}

/// `[reload]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReloadConfig {
    /// Reload when the config file or a file it names (secrets, keys, certificates) changes,
    /// not only on SIGHUP.
    pub watch: bool,
}

/// `[listen.tls]`. Paths only: the files are read when the TLS config is built (at start and on
/// every reload), so rotated certificates are picked up without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA that client certificates must chain to; when set, clients without one are refused at
    /// the handshake.
    pub client_ca: Option<PathBuf>,
}

/// What a client connection may cost the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenLimits {
    /// `max_header_bytes`: request line plus headers; larger is 431 (HTTP/1.1).
    pub max_header_bytes: usize,
    /// `header_timeout`: time to send the request headers; slower connections are closed.
    pub header_timeout: Duration,
    /// `idle_timeout`: a keep-alive connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// `max_connections`: open client connections at most.
    pub max_connections: usize,
    /// `on_max_connections`: what happens to connections beyond `max_connections`.
    pub on_max_connections: ConnectionOverflow,
    /// `max_body_bytes`: request bodies larger than this are 413; `None` (configured as 0): no limit.
    pub max_body_bytes: Option<u64>,
    /// `body_idle_timeout`: longest silence between two pieces of a request body; then 408.
    pub body_idle_timeout: Duration,
    /// `h2_max_concurrent_streams`.
    pub h2_max_concurrent_streams: u32,
    /// `h2_max_header_list_size`.
    pub h2_max_header_list_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionOverflow {
    /// Accept and close at once.
    Refuse,
    /// Leave them in the kernel's accept queue until a connection closes.
    Queue,
}

/// A `[[client]]`: who may use the proxy, for which tenants and methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub name: String,
    pub credential: ClientCredential,
    pub tenants: TenantAllow,
    /// `None`: every method.
    pub methods: Option<Vec<http::Method>>,
}

/// `Debug` shows a key hash by its first 8 hex digits only.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientCredential {
    /// SHA-256 of the client's key (`key_sha256`, hex in the file). Only the hash is ever held.
    KeySha256([u8; 32]),
    /// An mTLS identity: certificate CN or DNS SAN (`cert_subject`).
    CertSubject(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantAllow {
    /// `["*"]`.
    All,
    /// Tenant names (ids given in the file are resolved to names).
    Only(Vec<String>),
}

/// `[cors]`: browser dashboards. Nothing is allowed by default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CorsConfig {
    /// Exact origins (`https://dashboards.soc.example`); `*` is refused with credentials around.
    pub allowed_origins: Vec<String>,
    /// `max_age` of preflight answers.
    pub max_age: Duration,
}

/// `[audit]`: one JSON line per request, for "who read which customer's data, when".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub addr: SocketAddr,
}

/// The partner's multi-tenant Entra ID application.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub client_id: String,
    pub credential: Credential,
}

/// How the app proves its identity to Entra ID. Secret material is already resolved (from env or
/// file) and held in `secrecy` types so it never reaches a `Debug` print.
#[derive(Debug, Clone)]
pub enum Credential {
    Secret(SecretString),
    Certificate(CertificateCredential),
    /// Workload identity federation: an external token (e.g. a Kubernetes projected service
    /// account token) presented as the client assertion.
    Federated(FederatedCredential),
}

/// `federated_token_file`, or `AZURE_FEDERATED_TOKEN_FILE` when `[app]` names no credential.
///
/// Only the path is held: the file rotates (the kubelet rewrites it well before the token in it
/// expires), so the token module reads it afresh for every token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedCredential {
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct CertificateCredential {
    /// DER of the app's certificate (first certificate of the PEM file); its SHA-256 is `x5t#S256`.
    pub cert_der: Vec<u8>,
    /// DER of the private key: PKCS#8, or PKCS#1 (`RSA PRIVATE KEY`) as [`KeyFormat`] says.
    pub key_der: std::sync::Arc<SecretBox<Vec<u8>>>,
    pub key_format: KeyFormat,
    /// Where the files came from, for messages.
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    Pkcs8,
    Pkcs1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointVersion {
    /// `{authority}/{tenant}/oauth2/v2.0/token` with `scope`.
    V2,
    /// `{authority}/{tenant}/oauth2/token` with `resource` (the scope less `/.default`).
    V1,
}

/// `[cloud] cloud = ...`: the national cloud whose hosts are the defaults of `authority`, `api`
/// and `scope` (each still overridable; regional API hosts such as `eu.` are set with `api`).
///
/// | preset | login (`authority`) | Defender XDR API (`api`) | default `scope` |
/// |---|---|---|---|
/// | `public` | `login.microsoftonline.com` | `api.security.microsoft.com` | `https://api.security.microsoft.com/.default` |
/// | `gcc` | `login.microsoftonline.com` | `api-gcc.security.microsoft.us` | `https://api-gcc.security.microsoft.us/.default` |
/// | `gcc-high` | `login.microsoftonline.us` | `api-gov.security.microsoft.us` | `https://api-gov.security.microsoft.us/.default` |
/// | `dod` | `login.microsoftonline.us` | `api-gov.security.microsoft.us` | `https://api-gov.security.microsoft.us/.default` |
///
/// For reference, the same sources give the other APIs' hosts per cloud: Defender for Endpoint
/// `api.securitycenter.microsoft.com` / `api-gcc.securitycenter.microsoft.us` /
/// `api-gov.securitycenter.microsoft.us`, Graph `graph.microsoft.com` (public, GCC) /
/// `graph.microsoft.us` (GCC High) / `dod-graph.microsoft.us` (DoD).
///
/// Sources: Microsoft Defender XDR docs "Microsoft Defender XDR for US Government customers"
/// (defender-xdr/usgov), Defender for Endpoint docs "Microsoft Defender for Endpoint for US
/// Government customers" (defender-endpoint/gov), Microsoft Graph docs "National cloud
/// deployments" (graph deployments); collected in the design notes' defender-reference.md.
///
/// The gov-cloud scopes are *not* clearly documented: `{api}/.default` of the preset's API host is
/// the documented pattern of the public cloud carried over, which is why `scope` stays
/// configurable. The scope follows the preset's host, not an overridden `api`: a regional host
/// (`us.`, `eu.`, ...) serves the same resource, so its audience is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloudPreset {
    /// The commercial (worldwide) cloud: the default.
    #[default]
    Public,
    /// US Government Community Cloud (Entra ID in the public cloud, Defender in the US gov one).
    Gcc,
    /// US Government Community Cloud High.
    GccHigh,
    /// US Department of Defense.
    Dod,
}

impl CloudPreset {
    /// Every preset, in the order the config docs list them.
    pub const ALL: [CloudPreset; 4] = [
        CloudPreset::Public,
        CloudPreset::Gcc,
        CloudPreset::GccHigh,
        CloudPreset::Dod,
    ];

    /// The name written in the config file.
    pub fn name(self) -> &'static str {
        match self {
            CloudPreset::Public => "public",
            CloudPreset::Gcc => "gcc",
            CloudPreset::GccHigh => "gcc-high",
            CloudPreset::Dod => "dod",
        }
    }

    /// The preset named `name` (as written in the config file).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Entra ID's base URL in this cloud.
    pub fn authority(self) -> &'static str {
        match self {
            CloudPreset::Public | CloudPreset::Gcc => defaults::AUTHORITY,
            CloudPreset::GccHigh | CloudPreset::Dod => "https://login.microsoftonline.us",
        }
    }

    /// The Defender XDR API's base URL in this cloud.
    pub fn api(self) -> &'static str {
        match self {
            CloudPreset::Public => defaults::API,
            CloudPreset::Gcc => "https://api-gcc.security.microsoft.us",
            CloudPreset::GccHigh | CloudPreset::Dod => "https://api-gov.security.microsoft.us",
        }
    }

    /// The default OAuth scope of the Defender XDR API in this cloud (see the type's docs on why
    /// the gov ones are a best guess).
    pub fn scope(self) -> &'static str {
        match self {
            CloudPreset::Public => defaults::SCOPE,
            CloudPreset::Gcc => "https://api-gcc.security.microsoft.us/.default",
            CloudPreset::GccHigh | CloudPreset::Dod => {
                "https://api-gov.security.microsoft.us/.default"
            }
        }
    }
}

impl std::fmt::Display for CloudPreset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// `cloud = ...`: the preset whose hosts are the defaults below (`public` when not set).
    pub cloud: CloudPreset,
    /// Base URL of Entra ID, without a trailing slash, e.g. `https://login.microsoftonline.com`.
    pub authority: String,
    /// The default API's base URL (scheme + authority, no path), e.g. `https://api.security.microsoft.com`.
    pub api: http::Uri,
    /// OAuth scope of the default API, e.g. `https://api.security.microsoft.com/.default`.
    pub scope: String,
    pub token_endpoint: TokenEndpointVersion,
    /// Extra PEM trust roots (corporate TLS inspection), added to the webpki roots.
    pub ca: Option<PathBuf>,
}

/// Limits on the way to the API and to Entra ID.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    /// Time allowed from sending the request until the response headers arrive. Advanced hunting
    /// queries may legitimately run for minutes, hence the generous default.
    pub response_timeout: Duration,
    /// Longest silence between two pieces of a response body; then the client's response is
    /// ended as incomplete. Without it a stalled API holds the client's connection forever.
    pub body_idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub tenant_header: HeaderName,
    pub default_tenant: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TenantConfig {
    /// `[a-z0-9-]`, not starting with `_`; the path prefix.
    pub name: String,
    /// The customer's tenant id, lower-case; must equal the token's `tid`.
    pub id: String,
    /// This tenant's policy for the default route class: `[rate_limit]` with the tenant's own
    /// `rate_limit = { ... }` keys laid over it (already merged).
    pub rate_limit: LimitPolicy,
}

/// `[rate_limit]`: per-tenant limits, how to wait for them, and where their state lives.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// The global policy (built-in defaults with `[rate_limit]` keys laid over them).
    pub defaults: LimitPolicy,
    /// Route classes with their own limits, matched by path prefix, longest prefix first: every
    /// `[[rate_limit.route]]`, then one per `[[api]]` (its prefix, its limits) unless a
    /// `[[rate_limit.route]]` has exactly that prefix already (the route wins).
    ///
    /// The path matched is the request path after the tenant prefix (the whole path in header
    /// mode), query excluded. A path of an `[[api]]` still carries that API's prefix there: its
    /// routes are written `/mde/api/advancedqueries`, and `/api/...` routes cover `[cloud]`'s API
    /// only.
    pub routes: Vec<RouteLimit>,
    pub backend: LimitBackend,
}

/// Limits of one route class plus how over-limit requests are treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitPolicy {
    pub windows: Windows,
    pub mode: LimitMode,
    /// Longest a queued request may wait for its slot before it gets a 429.
    pub max_wait: Duration,
    /// Most requests that may wait per tenant and route class; more get a 429 at once.
    pub max_queue: usize,
}

/// The two windows. `None` (configured as `0`) means no limit on that window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub per_minute: Option<NonZeroU32>,
    pub per_hour: Option<NonZeroU32>,
    /// Requests that may pass at once after a quiet spell (`burst`); `None`: derived from the
    /// per-minute limit (see `ratelimit::gcra`).
    pub burst: Option<NonZeroU32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMode {
    /// Over the limit: wait for a slot, first come first served (legacy tools don't retry).
    Queue,
    /// Over the limit: 429 at once.
    Reject,
}

/// A route class: a `[[rate_limit.route]]`, or the implicit one of an `[[api]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLimit {
    /// Matched on whole path segments, ASCII case-insensitively, e.g. `/api/advancedhunting` or
    /// an `[[api]]`'s `/mde`.
    pub path_prefix: String,
    /// Only the windows the route sets; a window it leaves out is not limited for this class.
    pub windows: Windows,
}

/// Where limiter state lives.
#[derive(Debug, Clone)]
pub enum LimitBackend {
    /// In this process (the default; nothing to install).
    Local,
    /// Shared by every replica through Redis.
    Redis(RedisBackendConfig),
}

/// `PartialEq` compares the password as a secret: in constant time, never copied out of its
/// `SecretString` (a reload compares the running backend with the new one).
#[derive(Debug, Clone)]
pub struct RedisBackendConfig {
    /// `redis://host:port[/db]` (no password inline: that is `password`).
    pub url: String,
    /// From `backend_password = { env = ... } | { file = ... }`.
    pub password: Option<SecretString>,
    pub on_error: OnBackendError,
    /// How many replicas share the limits; the local fallback allows `1/replicas` of each limit.
    pub replicas: NonZeroU32,
}

impl PartialEq for RedisBackendConfig {
    fn eq(&self, other: &Self) -> bool {
        let same_password = match (&self.password, &other.password) {
            (None, None) => true,
            (Some(a), Some(b)) => secrets_equal(a, b),
            _ => false,
        };
        self.url == other.url
            && self.on_error == other.on_error
            && self.replicas == other.replicas
            && same_password
    }
}

impl Eq for RedisBackendConfig {}

/// Whether two secrets hold the same text, in time that depends on their lengths only, without
/// copying either out of its `SecretString`.
pub(crate) fn secrets_equal(a: &SecretString, b: &SecretString) -> bool {
    use secrecy::ExposeSecret as _;
    let (a, b) = (a.expose_secret().as_bytes(), b.expose_secret().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBackendError {
    /// Fall back to local limits divided by `replicas` (logged and counted).
    Local,
    /// Answer 429 while the backend is unreachable.
    Reject,
}

/// Defaults live here and nowhere else.
pub mod defaults {
    use std::time::Duration;

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
}

impl Default for LimitPolicy {
    /// The built-in policy, before any `[rate_limit]` key: Defender's documented limits, queue mode.
    fn default() -> Self {
        LimitPolicy {
            windows: Windows {
                per_minute: NonZeroU32::new(defaults::PER_MINUTE),
                per_hour: NonZeroU32::new(defaults::PER_HOUR),
                burst: None,
            },
            mode: LimitMode::Queue,
            max_wait: defaults::MAX_WAIT,
            max_queue: defaults::MAX_QUEUE,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout: defaults::CONNECT_TIMEOUT,
            response_timeout: defaults::RESPONSE_TIMEOUT,
            body_idle_timeout: defaults::BODY_IDLE_TIMEOUT,
        }
    }
}

impl Default for ListenLimits {
    fn default() -> Self {
        ListenLimits {
            max_header_bytes: defaults::MAX_HEADER_BYTES,
            header_timeout: defaults::HEADER_TIMEOUT,
            idle_timeout: defaults::IDLE_TIMEOUT,
            max_connections: defaults::MAX_CONNECTIONS,
            on_max_connections: ConnectionOverflow::Queue,
            max_body_bytes: None,
            body_idle_timeout: defaults::BODY_IDLE_TIMEOUT,
            h2_max_concurrent_streams: defaults::H2_MAX_CONCURRENT_STREAMS,
            h2_max_header_list_size: defaults::H2_MAX_HEADER_LIST_SIZE,
        }
    }
}

impl std::fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCredential::KeySha256(hash) => {
                f.write_str("KeySha256(")?;
                for byte in &hash[..4] {
                    write!(f, "{byte:02x}")?;
                }
                f.write_str("…)")
            }
            ClientCredential::CertSubject(subject) => {
                f.debug_tuple("CertSubject").field(subject).finish()
            }
        }
    }
}

impl TenantAllow {
    /// Whether the tenant named `name` (a name, as routing resolves it) may be used.
    pub fn allows(&self, name: &str) -> bool {
        match self {
            TenantAllow::All => true,
            TenantAllow::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

impl ClientConfig {
    /// Whether this client may send `method`.
    pub fn allows_method(&self, method: &http::Method) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.contains(method))
    }
}

impl CloudConfig {
    /// The token endpoint URL for a tenant, as the assertion's `aud` must name it.
    pub fn token_url(&self, tenant_id: &str) -> String {
        match self.token_endpoint {
            TokenEndpointVersion::V2 => {
                format!("{}/{}/oauth2/v2.0/token", self.authority, tenant_id)
            }
            TokenEndpointVersion::V1 => format!("{}/{}/oauth2/token", self.authority, tenant_id),
        }
    }

    /// The admin-consent link a customer's admin opens to consent to the app.
    pub fn consent_url(&self, tenant_id: &str, client_id: &str) -> String {
        format!(
            "{}/{}/adminconsent?client_id={}",
            self.authority, tenant_id, client_id
        )
    }
}
