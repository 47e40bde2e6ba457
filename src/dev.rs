//! `serve --dev`: the proxy in front of the built-in simulator, with the demo tenants, so the
//! whole path (routing, tokens, forwarding) can be tried with curl and no Entra ID app.
//!
//! The simulator runs [`SimConfig::dev`]: besides `contoso` and `fabrikam` on the main app, a
//! customer on its own app (`[apps.northwind-own]`) and one in a simulated US government cloud
//! (`[clouds.gov]`, the simulator's second listener as its authority and API base).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use secrecy::SecretString;
use tokio::net::TcpListener;

use crate::app::{self, Listeners};
use crate::config::{
    defaults, AdminConfig, ApiConfig, ApiEndpoint, AppConfig, CloudConfig, CloudPreset, Config,
    CorsConfig, Credential, KnownApi, LimitBackend, LimitPolicy, ListenConfig, ListenLimits,
    RateLimitConfig, ReloadConfig, RouteLimit, RoutingConfig, TenantConfig, TenantSource,
    TokenEndpointVersion, UpstreamConfig,
};
use crate::sim::{Audience, SimConfig, SimCredential, Simulator, ThrottleHeaders, PUBLIC_CLOUD};

/// Each cloud's listener base URL, by cloud ([`PUBLIC_CLOUD`] and the simulator's clouds).
pub type SimBases = [(String, String)];

/// The config `serve --dev` runs for a simulator with only its main listener at `sim_base`
/// (see [`dev_config_in`]; tenants homed in another cloud are left out).
pub fn dev_config(
    sim: &SimConfig,
    sim_base: &str,
    listen: SocketAddr,
    admin: SocketAddr,
) -> Config {
    let bases = [(PUBLIC_CLOUD.to_owned(), sim_base.to_owned())];
    dev_config_in(sim, &bases, listen, admin)
}

/// The config `serve --dev` runs: the simulator as both Entra ID and every API, in each cloud
/// whose listener `bases` names. Besides the default (Defender XDR) API it has two `[[api]]`s on
/// the same simulator, as a partner's config would have them on Microsoft's hosts: `mde`
/// (`/mde`, Defender for Endpoint's audience) and `graph` (`/graph`, Graph's), each with its
/// documented limits as a route class.
///
/// Each [`crate::sim::SimApp`] with a secret is an `[apps.NAME]`, and a tenant that consented
/// only to one of those gets its tokens as it (a certificate app is left to the caller, who holds
/// its key); each simulated cloud with a listener is a `[clouds.NAME]` (its listener as authority
/// and API base, its audiences as scopes) with `[api.clouds.NAME]` entries for `mde` and `graph`,
/// and the tenants homed there are on it.
pub fn dev_config_in(
    sim: &SimConfig,
    bases: &SimBases,
    listen: SocketAddr,
    admin: SocketAddr,
) -> Config {
    let sim_base = base_of(bases, PUBLIC_CLOUD).unwrap_or("http://127.0.0.1");
    let clouds = dev_clouds(sim, bases);
    let apps = dev_apps(sim);
    let apis = dev_apis(sim, bases, &clouds);
    let tenants = dev_tenants(sim, &apps, &clouds);
    let mut config = Config {
        listen: ListenConfig {
            addr: listen,
            allow_unauthenticated: false,
            tls: None,
            limits: ListenLimits::default(),
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            public_url: None,
        },
        admin: AdminConfig::on(admin),
        app: AppConfig {
            client_id: sim.client_id.clone(),
            credential: Credential::Secret(SecretString::from(sim.client_secret.clone())),
        },
        apps,
        clouds,
        cloud: sim_cloud(sim_base, defaults::SCOPE, CloudPreset::Public),
        apis: apis.iter().map(|(api, _)| api.clone()).collect(),
        upstream: UpstreamConfig::default(),
        routing: RoutingConfig {
            tenant_header: http::HeaderName::from_static("x-defender-tenant"),
            default_tenant: None,
        },
        rate_limit: RateLimitConfig {
            defaults: LimitPolicy::default(),
            routes: apis.into_iter().map(|(_, route)| route).collect(),
            backend: LimitBackend::Local,
        },
        tenants,
        tenants_file: None,
        onboarding: None,
        clients: vec![],
        cors: CorsConfig {
            allowed_origins: vec![],
            max_age: defaults::CORS_MAX_AGE,
        },
        audit: None,
        reload: ReloadConfig::default(),
        cache: crate::config::CacheConfig::default(),
        metrics: crate::config::MetricsConfig::default(),
        // Legacy hunting through Graph for every tenant whose Graph token carries the role.
        hunting: crate::config::HuntingConfig {
            via: crate::config::HuntingVia::Auto,
            ..crate::config::HuntingConfig::default()
        },
        // `serve --dev` sends no traces.
        telemetry: None,
        watched_files: vec![],
        warnings: vec![],
    };
    config.add_hunting_route();
    config
}

fn base_of<'a>(bases: &'a SimBases, cloud: &str) -> Option<&'a str> {
    bases
        .iter()
        .find(|(name, _)| name == cloud)
        .map(|(_, base)| base.as_str())
}

fn uri(base: &str) -> http::Uri {
    base.parse()
        .unwrap_or_else(|_| http::Uri::from_static("http://127.0.0.1"))
}

/// A cloud whose authority and API are the simulator's listener at `base`.
fn sim_cloud(base: &str, scope: &str, preset: CloudPreset) -> CloudConfig {
    CloudConfig {
        cloud: preset,
        authority: base.to_owned(),
        api: uri(base),
        scope: scope.to_owned(),
        token_endpoint: TokenEndpointVersion::V2,
        ca: None,
    }
}

/// The `/.default` scope of `cloud`'s audience for `family`, falling back to its Defender XDR one.
fn scope_in(sim: &SimConfig, cloud: &str, family: Audience) -> String {
    let audience = sim
        .audience_of(cloud, family)
        .or_else(|| sim.audience_of(cloud, Audience::Xdr))
        .unwrap_or_default();
    format!("{}/.default", audience.trim_end_matches('/'))
}

/// `[clouds.NAME]` for every simulated cloud with a listener. Its hosts are the US government
/// ones, so its preset is `gcc-high` (which only names it: every URL is the listener).
fn dev_clouds(sim: &SimConfig, bases: &SimBases) -> BTreeMap<String, CloudConfig> {
    sim.clouds
        .iter()
        .filter_map(|c| {
            let base = base_of(bases, &c.name)?;
            let scope = scope_in(sim, &c.name, Audience::Xdr);
            Some((
                c.name.clone(),
                sim_cloud(base, &scope, CloudPreset::GccHigh),
            ))
        })
        .collect()
}

/// `[apps.NAME]` for every simulated app with a secret.
fn dev_apps(sim: &SimConfig) -> BTreeMap<String, AppConfig> {
    sim.apps
        .iter()
        .filter_map(|a| match &a.credential {
            SimCredential::Secret(secret) => Some((
                a.name.clone(),
                AppConfig {
                    client_id: a.client_id.clone(),
                    credential: Credential::Secret(SecretString::from(secret.clone())),
                },
            )),
            SimCredential::Certificate { .. } => None,
        })
        .collect()
}

/// The `mde` and `graph` `[[api]]`s on the simulator, each in every cloud of `clouds` too, and
/// their limits as route classes. The simulator's URL is no Microsoft host, so the limits a real
/// host would get by default are given here.
fn dev_apis(
    sim: &SimConfig,
    bases: &SimBases,
    clouds: &BTreeMap<String, CloudConfig>,
) -> [(ApiConfig, RouteLimit); 2] {
    let main = uri(base_of(bases, PUBLIC_CLOUD).unwrap_or("http://127.0.0.1"));
    [
        ("mde", KnownApi::DefenderForEndpoint, Audience::Mde),
        ("graph", KnownApi::GraphSecurity, Audience::Graph),
    ]
    .map(|(name, known, family)| {
        let in_clouds = clouds
            .iter()
            .map(|(cloud, config)| {
                let endpoint = ApiEndpoint {
                    url: config.api.clone(),
                    scope: scope_in(sim, cloud, family),
                };
                (cloud.clone(), endpoint)
            })
            .collect();
        let api = ApiConfig {
            name: name.to_owned(),
            prefix: format!("/{name}"),
            url: main.clone(),
            scope: known.public_scope().to_owned(),
            clouds: in_clouds,
        };
        let route = RouteLimit {
            path_prefix: api.prefix.clone(),
            windows: known.windows(),
        };
        (api, route)
    })
}

/// Every simulated tenant whose cloud has a listener, on its own app when it consented only to
/// one of `apps`, in its cloud when that is one of `clouds`.
fn dev_tenants(
    sim: &SimConfig,
    apps: &BTreeMap<String, AppConfig>,
    clouds: &BTreeMap<String, CloudConfig>,
) -> Vec<TenantConfig> {
    sim.tenants
        .iter()
        .filter_map(|t| {
            let cloud = match sim.cloud_of_tenant(&t.id) {
                PUBLIC_CLOUD => None,
                cloud if clouds.contains_key(cloud) => Some(cloud.to_owned()),
                _ => return None,
            };
            let app = sim
                .own_app_of_tenant(&t.id)
                .filter(|a| apps.contains_key(&a.name))
                .map(|a| a.name.clone());
            Some(TenantConfig {
                name: t.name.clone(),
                id: t.id.clone(),
                rate_limit: LimitPolicy::default(),
                app,
                cloud,
                source: TenantSource::Config,
            })
        })
        .collect()
}

/// Start the simulator (each of its clouds on a listener of its own) and the proxy; print how
/// to try it; run until `shutdown`.
pub async fn run(
    listen: SocketAddr,
    admin: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sim_config = SimConfig::dev();
    let mut sim_listeners = Vec::new();
    let mut bases = Vec::new();
    let clouds = std::iter::once(PUBLIC_CLOUD).chain(sim_config.clouds.iter().map(|c| &*c.name));
    for cloud in clouds {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the simulator")?;
        bases.push((
            cloud.to_owned(),
            format!("http://{}", listener.local_addr()?),
        ));
        sim_listeners.push((cloud.to_owned(), listener));
    }
    let config = dev_config_in(&sim_config, &bases, listen, admin);
    let listeners = Listeners {
        data: TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot bind {listen} (use --listen)"))?,
        admin: TcpListener::bind(admin)
            .await
            .with_context(|| format!("cannot bind {admin} (use --admin)"))?,
        onboarding: None,
    };

    let simulator = Simulator::new(sim_config.clone());
    // As in February 2027: contoso's legacy hunting API is gone and its admin consented to
    // Graph's hunting permission (so `auto` answers it through Graph); fabrikam has not
    // consented yet and stays on its legacy API.
    // And fabrikam's app is near its Graph limit: Graph's answers say so (the dashboard's
    // "Upstream warnings" row has something to show).
    if let [contoso, fabrikam, ..] = sim_config.tenants.as_slice() {
        simulator.set_legacy_hunting_retired(&contoso.id, true);
        simulator.set_threat_hunting_granted(&fabrikam.id, false);
        simulator.set_throttle_headers(
            &fabrikam.id,
            Some(near_graph_limit(&sim_config, &fabrikam.id)),
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut sim_tasks = tokio::task::JoinSet::new();
    for (cloud, listener) in sim_listeners {
        let mut stopped = stop_rx.clone();
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        let simulator = simulator.clone();
        sim_tasks.spawn(async move {
            simulator
                .serve_cloud(&cloud, listener, None, shutdown)
                .await
        });
    }

    // Print the addresses actually bound (port 0 is allowed).
    let listen = listeners.data.local_addr()?;
    let admin = listeners.admin.local_addr()?;
    eprintln!("{}", try_it(&config, &bases, listen, admin));

    app::run(&config, None, listeners, shutdown).await?;
    drop(stop_tx);
    while sim_tasks.join_next().await.is_some() {}
    Ok(())
}

/// Graph's throttle headers for an app at 85 % of its per-tenant limit.
fn near_graph_limit(sim: &SimConfig, tenant_id: &str) -> ThrottleHeaders {
    ThrottleHeaders {
        percent: "0.85".into(),
        scope: format!("Tenant_Application/ReadWrite/{}/{tenant_id}", sim.client_id),
        information: String::new(),
    }
}

/// What `serve --dev` prints: where the simulator is, the tenants (with their own app or cloud),
/// and curl lines to try, the tenant on its own app and the one in the gov cloud included.
fn try_it(config: &Config, bases: &SimBases, listen: SocketAddr, admin: SocketAddr) -> String {
    let sim_base = base_of(bases, PUBLIC_CLOUD).unwrap_or_default();
    let mut out =
        format!("\ndefender-proxy dev mode: simulated Entra ID and Defender API on {sim_base}");
    for (cloud, base) in bases.iter().filter(|(c, _)| c != PUBLIC_CLOUD) {
        out.push_str(&format!(
            "; simulated US government cloud `{cloud}` on {base}"
        ));
    }
    let tenants: Vec<String> = config
        .tenants
        .iter()
        .map(|t| {
            let mut profile = String::new();
            if let Some(app) = &t.app {
                profile.push_str(&format!(", app {app}"));
            }
            if let Some(cloud) = &t.cloud {
                profile.push_str(&format!(", cloud {cloud}"));
            }
            format!("{} ({}{profile})", t.name, t.id)
        })
        .collect();
    out.push_str(&format!("\ntenants: {}\n\ntry:\n", tenants.join(", ")));
    let name = config
        .tenants
        .first()
        .map_or("contoso", |t| t.name.as_str());
    let id = config.tenants.first().map_or("", |t| t.id.as_str());
    let other = config
        .tenants
        .get(1)
        .map_or("fabrikam", |t| t.name.as_str());
    let hunt = "-X POST -d '{\"Query\":\"DeviceInfo | take 3\"}'";
    let mut lines = vec![
        format!("curl -s http://{listen}/{name}/api/incidents?\\$top=2"),
        format!("curl -s -H 'X-Defender-Tenant: {other}' http://{listen}/api/machines"),
        format!("curl -s http://{listen}/{id}/api/alerts"),
        format!("curl -s http://{listen}/{name}/mde/api/machines?\\$top=3"),
        format!("curl -s http://{listen}/{name}/graph/v1.0/security/incidents?\\$top=2"),
        format!("curl -s {hunt} http://{listen}/{name}/api/advancedhunting/run   # through Graph"),
        format!("curl -s {hunt} http://{listen}/{other}/api/advancedhunting/run  # legacy: no Graph consent yet"),
    ];
    if let Some(t) = config.tenants.iter().find(|t| t.app.is_some()) {
        let app = t.app.as_deref().unwrap_or_default();
        lines.push(format!(
            "curl -s http://{listen}/{}/api/incidents?\\$top=2   # its own app: [apps.{app}]",
            t.name
        ));
    }
    if let Some(t) = config.tenants.iter().find(|t| t.cloud.is_some()) {
        let cloud = t.cloud.as_deref().unwrap_or_default();
        lines.push(format!(
            "curl -s http://{listen}/{}/mde/api/machines?\\$top=3   # gov cloud: [clouds.{cloud}]",
            t.name
        ));
    }
    lines.push(format!("curl -s http://{admin}/metrics"));
    for line in lines {
        out.push_str(&format!("  {line}\n"));
    }
    out
}
