//! Typed, validated settings.
//!
//! `load.rs` turns the TOML file into these types and reports every problem it finds; the rest of
//! the proxy only ever sees a [`Config`] that already passed validation, so nothing downstream
//! re-checks syntax, secrets or URLs.
//!
//! The settings types sit by section: `listen.rs` (`[listen]`, `[admin]`), `app.rs`, `cloud.rs`,
//! `api.rs` (`[[api]]`), `ratelimit.rs`, `inbound.rs` (`[[client]]`, `[cors]`, `[audit]`); the
//! small sections and [`Config`] itself are here; every default is in [`defaults`].

mod api;
mod app;
mod cloud;
pub mod defaults;
mod hunting;
mod inbound;
mod listen;
mod load;
mod ratelimit;
mod raw;
mod telemetry;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderName;

pub use api::{strip_api_prefix, ApiConfig, ApiEndpoint, KnownApi};
pub use app::{AppConfig, CertificateCredential, Credential, FederatedCredential, KeyFormat};
pub use cloud::{CloudConfig, CloudPreset, TokenEndpointVersion};
pub use hunting::{HuntingConfig, HuntingVia, GRAPH_HUNTING_PATH};
pub use inbound::{AuditTarget, ClientConfig, ClientCredential, CorsConfig, TenantAllow};
pub use listen::{
    AdminConfig, ConnectionOverflow, ListenConfig, ListenLimits, OnboardingConfig, ServerTlsConfig,
};
pub(crate) use load::{is_guid, parse_with, tenant_name_problem};
pub use load::{load_file, parse_str, ConfigErrors, Problem};
pub use ratelimit::{
    LimitBackend, LimitMode, LimitPolicy, OnBackendError, RateLimitConfig, RedisBackendConfig,
    RouteLimit, Windows,
};
pub use telemetry::{TelemetryConfig, TraceProtocol};

/// The name `[app]` and `[cloud]` go by in labels, logs and `check`; no `[apps.NAME]` or
/// `[clouds.NAME]` may take it.
pub const DEFAULT_PROFILE: &str = "default";

/// Everything the proxy needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: ListenConfig,
    pub admin: AdminConfig,
    /// `[app]`: the app of every tenant that names none.
    pub app: AppConfig,
    /// `[apps.NAME]`: more apps (a customer's own, a second partner app), which a `[[tenant]]`
    /// names with `app = "NAME"`. Client ids are unique across `[app]` and these.
    pub apps: BTreeMap<String, AppConfig>,
    /// `[cloud]`: the cloud of every tenant that names none.
    pub cloud: CloudConfig,
    /// `[clouds.NAME]`: more cloud profiles (US government clouds), which a `[[tenant]]` names
    /// with `cloud = "NAME"`.
    pub clouds: BTreeMap<String, CloudConfig>,
    /// `[[api]]`: APIs besides `[cloud]`'s, each picked by its path prefix, in file order. Each
    /// one's limits are a route class in `rate_limit.routes` (see [`RateLimitConfig::routes`]).
    pub apis: Vec<ApiConfig>,
    pub upstream: UpstreamConfig,
    pub routing: RoutingConfig,
    pub rate_limit: RateLimitConfig,
    /// The `[[tenant]]`s of the config file, then those of `[tenants] file`.
    pub tenants: Vec<TenantConfig>,
    /// `[tenants] file`: where tenants outside the config file live (written by the admin API
    /// and by consent onboarding).
    pub tenants_file: Option<PathBuf>,
    /// `[onboarding]`: the consent callback's listener; `None`: no onboarding listener.
    pub onboarding: Option<OnboardingConfig>,
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
    /// `[advanced_hunting]`: legacy hunting routes forwarded as they are, or through Graph.
    pub hunting: HuntingConfig,
    /// `[telemetry]`: traces; `None` (no `otlp_endpoint`): none. Restart-only.
    pub telemetry: Option<TelemetryConfig>,
    /// Files the config names whose change `[reload] watch` reacts to.
    pub watched_files: Vec<PathBuf>,
    /// Non-fatal findings (e.g. a secret file readable by others), logged at start and printed
    /// by `validate`.
    pub warnings: Vec<String>,
}

impl Config {
    /// The app `tenant` gets its tokens as: its name (`default` for `[app]`) and settings.
    /// Validation saw to it that the name is known; an unknown one (never in a validated
    /// config) falls back to `[app]`.
    pub fn app_of<'a>(&'a self, tenant: &'a TenantConfig) -> (&'a str, &'a AppConfig) {
        tenant
            .app
            .as_deref()
            .and_then(|name| self.apps.get_key_value(name))
            .map_or((DEFAULT_PROFILE, &self.app), |(n, a)| (n.as_str(), a))
    }

    /// The app called `name`: `[app]` for `default`, else `[apps.NAME]`.
    pub fn app_named(&self, name: &str) -> Option<&AppConfig> {
        match name {
            DEFAULT_PROFILE => Some(&self.app),
            other => self.apps.get(other),
        }
    }

    /// The cloud profile called `name`: `[cloud]` for `default`, else `[clouds.NAME]`.
    pub fn cloud_named(&self, name: &str) -> Option<&CloudConfig> {
        match name {
            DEFAULT_PROFILE => Some(&self.cloud),
            other => self.clouds.get(other),
        }
    }

    /// The extra trust roots of `[cloud]` and of every `[clouds.NAME]` (`ca`), in that order.
    pub fn ca_files(&self) -> Vec<&std::path::Path> {
        std::iter::once(&self.cloud)
            .chain(self.clouds.values())
            .filter_map(|c| c.ca.as_deref())
            .collect()
    }

    /// The cloud `tenant` lives in: its profile's name (`default` for `[cloud]`) and settings
    /// (as [`Config::app_of`]).
    pub fn cloud_of<'a>(&'a self, tenant: &'a TenantConfig) -> (&'a str, &'a CloudConfig) {
        tenant
            .cloud
            .as_deref()
            .and_then(|name| self.clouds.get_key_value(name))
            .map_or((DEFAULT_PROFILE, &self.cloud), |(n, c)| (n.as_str(), c))
    }
}

/// `[cache]`: see [`crate::share`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long an answer is kept; `None`: no cache.
    pub ttl: Option<Duration>,
    pub max_entry_bytes: u64,
    pub max_bytes_per_tenant: u64,
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

/// `[reload]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReloadConfig {
    /// Reload when the config file or a file it names (secrets, keys, certificates) changes,
    /// not only on SIGHUP.
    pub watch: bool,
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
    /// `app = "NAME"`: one of `[apps]`; `None`: `[app]`.
    pub app: Option<String>,
    /// `cloud = "NAME"`: one of `[clouds]`; `None`: `[cloud]`.
    pub cloud: Option<String>,
    /// Which file it is written in.
    pub source: TenantSource,
}

/// Where a tenant is written: the admin API may change only those of the tenants file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TenantSource {
    /// A `[[tenant]]` of the config file (read-only for the admin API).
    #[default]
    Config,
    /// A `[[tenant]]` of `[tenants] file`.
    File,
}

impl TenantSource {
    /// As the admin API's STATUS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantSource::Config => "config",
            TenantSource::File => "file",
        }
    }
}
