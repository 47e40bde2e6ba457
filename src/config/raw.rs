//! The config file as written: serde structs that mirror the TOML, plus a key index.
//!
//! Nothing here judges values; `load.rs` does that. Two things must agree key for key:
//! - the `Raw*` structs here (`deny_unknown_fields`), which give values their types;
//! - [`SCHEMA`] and [`index`] in `schema`, a walk of the document that finds *every* unknown key
//!   with its position (serde stops at the first) and records where each known key sits, so
//!   problems found later during validation can still name a line.
//!
//! Values are plain types rather than `toml::Spanned`: a `Spanned` over a table header or a key
//! without a span fails to deserialize, whereas the key index degrades to "no line".

mod node;
mod schema;

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

pub(crate) use schema::{index, index_tenants_file, KeyIndex};
/// For the test that keeps the structs and the schema in step.
#[cfg(test)]
pub(crate) use schema::{Shape, SCHEMA};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) listen: RawListen,
    #[serde(default)]
    pub(crate) admin: RawAdmin,
    #[serde(default)]
    pub(crate) app: RawApp,
    /// `[apps.NAME]`, by name (as written: names are judged in validation).
    #[serde(default)]
    pub(crate) apps: BTreeMap<String, RawApp>,
    #[serde(default)]
    pub(crate) cloud: RawCloud,
    /// `[clouds.NAME]`, by name.
    #[serde(default)]
    pub(crate) clouds: BTreeMap<String, RawCloud>,
    #[serde(default)]
    pub(crate) upstream: RawUpstream,
    #[serde(default)]
    pub(crate) routing: RawRouting,
    #[serde(default)]
    pub(crate) rate_limit: RawRateLimit,
    #[serde(default, rename = "tenant")]
    pub(crate) tenants: Vec<RawTenant>,
    #[serde(default, rename = "client")]
    pub(crate) clients: Vec<RawClient>,
    #[serde(default, rename = "api")]
    pub(crate) apis: Vec<RawApi>,
    pub(crate) cors: Option<RawCors>,
    pub(crate) audit: Option<RawAudit>,
    pub(crate) reload: Option<RawReload>,
    pub(crate) cache: Option<RawCache>,
    pub(crate) metrics: Option<RawMetrics>,
    pub(crate) advanced_hunting: Option<RawHunting>,
    /// `[tenants]` (not `[[tenant]]`): where tenants outside this file live.
    #[serde(rename = "tenants")]
    pub(crate) tenants_section: Option<RawTenantsSection>,
    pub(crate) onboarding: Option<RawOnboarding>,
    pub(crate) telemetry: Option<RawTelemetry>,
}

/// `[telemetry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    pub(crate) otlp_endpoint: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) service_name: Option<String>,
    pub(crate) sample_ratio: Option<f64>,
}

/// `[advanced_hunting]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHunting {
    pub(crate) via: Option<String>,
    pub(crate) graph_api: Option<String>,
    pub(crate) quota_retry_after: Option<String>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub(crate) per_tenant_histograms: Option<bool>,
}

/// `[cache]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    pub(crate) ttl: Option<String>,
    pub(crate) max_entry_bytes: Option<i64>,
    pub(crate) max_bytes_per_tenant: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    pub(crate) addr: Option<String>,
    pub(crate) allow_unauthenticated: Option<bool>,
    pub(crate) max_header_bytes: Option<i64>,
    pub(crate) header_timeout: Option<String>,
    pub(crate) idle_timeout: Option<String>,
    pub(crate) max_connections: Option<i64>,
    pub(crate) on_max_connections: Option<String>,
    pub(crate) max_body_bytes: Option<i64>,
    pub(crate) body_idle_timeout: Option<String>,
    pub(crate) h2_max_concurrent_streams: Option<i64>,
    pub(crate) h2_max_header_list_size: Option<i64>,
    pub(crate) shutdown_grace: Option<String>,
    pub(crate) public_url: Option<String>,
    pub(crate) tls: Option<RawServerTls>,
}

/// `[reload]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReload {
    pub(crate) watch: Option<bool>,
}

/// `[listen.tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServerTls {
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) client_ca: Option<String>,
}

/// `[[client]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClient {
    pub(crate) name: Option<String>,
    pub(crate) key_sha256: Option<String>,
    pub(crate) cert_subject: Option<String>,
    pub(crate) tenants: Option<Vec<String>>,
    pub(crate) methods: Option<Vec<String>>,
}

/// `[[api]]`: one more API besides `[cloud]`'s, picked by a path prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApi {
    pub(crate) name: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) scope: Option<String>,
    pub(crate) per_minute: Option<i64>,
    pub(crate) per_hour: Option<i64>,
    pub(crate) burst: Option<i64>,
    /// `[api.clouds.NAME]`: this API in cloud profile `NAME`.
    #[serde(default)]
    pub(crate) clouds: BTreeMap<String, RawApiEndpoint>,
}

/// `[api.clouds.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApiEndpoint {
    pub(crate) url: Option<String>,
    pub(crate) scope: Option<String>,
}

/// `[cors]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCors {
    pub(crate) allowed_origins: Option<Vec<String>>,
    pub(crate) max_age: Option<String>,
}

/// `[audit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub(crate) file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) addr: Option<String>,
    pub(crate) key_sha256: Option<String>,
    pub(crate) allow_unauthenticated: Option<bool>,
}

/// `[tenants]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenantsSection {
    pub(crate) file: Option<String>,
}

/// The tenants file: `[[tenant]]` entries only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenantsFile {
    #[serde(default, rename = "tenant")]
    pub(crate) tenants: Vec<RawTenant>,
}

/// `[onboarding]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOnboarding {
    pub(crate) addr: Option<String>,
    pub(crate) redirect_uri: Option<String>,
    pub(crate) state_key: Option<RawSecret>,
    pub(crate) tls: Option<RawServerTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApp {
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<RawSecret>,
    pub(crate) certificate: Option<RawCertificate>,
    /// Path of a workload identity token file (not a secret itself: the file's content is).
    pub(crate) federated_token_file: Option<String>,
}

/// Where a secret comes from. Never the secret itself: an inline value is recognised and dropped
/// unread, so it cannot end up in a message or a `Debug` print.
#[derive(Debug)]
pub(crate) enum RawSecret {
    Inline,
    Source {
        env: Option<String>,
        file: Option<String>,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCloud {
    /// A preset name (`public`, `gcc`, `gcc-high`, `dod`): the defaults of the keys below.
    pub(crate) cloud: Option<String>,
    pub(crate) authority: Option<String>,
    pub(crate) api: Option<String>,
    pub(crate) scope: Option<String>,
    pub(crate) token_endpoint: Option<String>,
    pub(crate) ca: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) connect_timeout: Option<String>,
    pub(crate) response_timeout: Option<String>,
    pub(crate) body_idle_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouting {
    pub(crate) tenant_header: Option<String>,
    pub(crate) default_tenant: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    pub(crate) name: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) rate_limit: Option<RawLimitPolicy>,
    /// A name of `[apps]`; `None`: `[app]`.
    pub(crate) app: Option<String>,
    /// A name of `[clouds]`; `None`: `[cloud]`.
    pub(crate) cloud: Option<String>,
}

/// The keys of a limit policy, as `[rate_limit]` and a tenant's `rate_limit = { ... }` write them.
/// Numbers are `i64` (TOML's integer) so a negative or oversized value gets our own message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimitPolicy {
    pub(crate) per_minute: Option<i64>,
    pub(crate) per_hour: Option<i64>,
    pub(crate) burst: Option<i64>,
    pub(crate) mode: Option<String>,
    pub(crate) max_wait: Option<String>,
    pub(crate) max_queue: Option<i64>,
}

/// `[rate_limit]`: the policy keys of [`RawLimitPolicy`] (repeated: `flatten` and
/// `deny_unknown_fields` do not mix) plus the keys that exist only here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    pub(crate) per_minute: Option<i64>,
    pub(crate) per_hour: Option<i64>,
    pub(crate) burst: Option<i64>,
    pub(crate) mode: Option<String>,
    pub(crate) max_wait: Option<String>,
    pub(crate) max_queue: Option<i64>,
    pub(crate) backend: Option<String>,
    pub(crate) backend_password: Option<RawSecret>,
    pub(crate) on_backend_error: Option<String>,
    pub(crate) replicas: Option<i64>,
    #[serde(default, rename = "route")]
    pub(crate) routes: Vec<RawRouteLimit>,
}

impl RawRateLimit {
    /// The policy keys, moved out.
    pub(crate) fn take_policy(&mut self) -> RawLimitPolicy {
        RawLimitPolicy {
            per_minute: self.per_minute.take(),
            per_hour: self.per_hour.take(),
            burst: self.burst.take(),
            mode: self.mode.take(),
            max_wait: self.max_wait.take(),
            max_queue: self.max_queue.take(),
        }
    }
}

/// `[[rate_limit.route]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteLimit {
    pub(crate) path_prefix: Option<String>,
    pub(crate) per_minute: Option<i64>,
    pub(crate) per_hour: Option<i64>,
    pub(crate) burst: Option<i64>,
}

const SECRET_KEYS: &[&str] = &["env", "file"];

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl SecretVisitor {
    /// Any scalar is an inline secret. It is dropped without being echoed: serde's default
    /// "invalid type: integer `1234`" would print the secret in the error.
    fn inline<E>(self) -> Result<RawSecret, E> {
        Ok(RawSecret::Inline)
    }
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = RawSecret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{ env = \"NAME\" } or { file = \"PATH\" }")
    }

    fn visit_str<E>(self, _: &str) -> Result<RawSecret, E> {
        self.inline()
    }
    fn visit_i64<E>(self, _: i64) -> Result<RawSecret, E> {
        self.inline()
    }
    fn visit_u64<E>(self, _: u64) -> Result<RawSecret, E> {
        self.inline()
    }
    fn visit_f64<E>(self, _: f64) -> Result<RawSecret, E> {
        self.inline()
    }
    fn visit_bool<E>(self, _: bool) -> Result<RawSecret, E> {
        self.inline()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawSecret, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.inline()
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
        let (mut env, mut file) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "env" => &mut env,
                "file" => &mut file,
                _ => return Err(de::Error::unknown_field(&key, SECRET_KEYS)),
            };
            *slot = Some(map.next_value::<String>()?);
        }
        Ok(RawSecret::Source { env, file })
    }
}
