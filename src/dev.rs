//! `serve --dev`: the proxy in front of the built-in simulator, with the demo tenants, so the
//! whole path (routing, tokens, forwarding) can be tried with curl and no Entra ID app.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use secrecy::SecretString;
use tokio::net::TcpListener;

use crate::app::{self, Listeners};
use crate::config::{
    defaults, AdminConfig, ApiConfig, AppConfig, CloudConfig, CloudPreset, Config, CorsConfig,
    Credential, KnownApi, LimitBackend, LimitPolicy, ListenConfig, ListenLimits, RateLimitConfig,
    ReloadConfig, RouteLimit, RoutingConfig, TenantConfig, TokenEndpointVersion, UpstreamConfig,
};
use crate::sim::{SimConfig, Simulator};

/// The config `serve --dev` runs: the simulator as both Entra ID and every API. Besides the
/// default (Defender XDR) API it has two `[[api]]`s on the same simulator, as a partner's config
/// would have them on Microsoft's hosts: `mde` (`/mde`, Defender for Endpoint's audience) and
/// `graph` (`/graph`, Graph's), each with its documented limits as a route class.
pub fn dev_config(
    sim: &SimConfig,
    sim_base: &str,
    listen: SocketAddr,
    admin: SocketAddr,
) -> Config {
    let sim_url: http::Uri = sim_base
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("http://127.0.0.1"));
    // The simulator's URL is no Microsoft host, so the limits a real host would get by default
    // are given here.
    let apis = [
        ("mde", KnownApi::DefenderForEndpoint),
        ("graph", KnownApi::GraphSecurity),
    ]
    .map(|(name, known)| {
        let api = ApiConfig {
            name: name.to_owned(),
            prefix: format!("/{name}"),
            url: sim_url.clone(),
            scope: known.public_scope().to_owned(),
            clouds: Default::default(),
        };
        let route = RouteLimit {
            path_prefix: api.prefix.clone(),
            windows: known.windows(),
        };
        (api, route)
    });
    let mut config = Config {
        listen: ListenConfig {
            addr: listen,
            allow_unauthenticated: false,
            tls: None,
            limits: ListenLimits::default(),
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            public_url: None,
        },
        admin: AdminConfig { addr: admin },
        app: AppConfig {
            client_id: sim.client_id.clone(),
            credential: Credential::Secret(SecretString::from(sim.client_secret.clone())),
        },
        apps: Default::default(),
        clouds: Default::default(),
        cloud: CloudConfig {
            cloud: CloudPreset::Public,
            authority: sim_base.to_owned(),
            api: sim_url,
            scope: defaults::SCOPE.to_owned(),
            token_endpoint: TokenEndpointVersion::V2,
            ca: None,
        },
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
        tenants: sim
            .tenants
            .iter()
            .map(|t| TenantConfig {
                name: t.name.clone(),
                id: t.id.clone(),
                rate_limit: LimitPolicy::default(),
                app: None,
                cloud: None,
            })
            .collect(),
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
        watched_files: vec![],
        warnings: vec![],
    };
    config.add_hunting_route();
    config
}

/// Start the simulator and the proxy; print how to try it; run until `shutdown`.
pub async fn run(
    listen: SocketAddr,
    admin: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sim_config = SimConfig::demo();
    let sim_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the simulator")?;
    let sim_addr = sim_listener.local_addr()?;
    let sim_base = format!("http://{sim_addr}");
    let config = dev_config(&sim_config, &sim_base, listen, admin);
    let listeners = Listeners {
        data: TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot bind {listen} (use --listen)"))?,
        admin: TcpListener::bind(admin)
            .await
            .with_context(|| format!("cannot bind {admin} (use --admin)"))?,
    };

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let simulator = Simulator::new(sim_config.clone());
    // As in February 2027: the first tenant's legacy hunting API is gone and its admin consented
    // to Graph's hunting permission (so `auto` answers it through Graph); the last one has not
    // consented yet and stays on its legacy API.
    if let (Some(first), Some(last)) = (config.tenants.first(), config.tenants.last()) {
        simulator.set_legacy_hunting_retired(&first.id, true);
        simulator.set_threat_hunting_granted(&last.id, false);
    }
    let sim_task = tokio::spawn(simulator.serve(sim_listener, async move {
        let _ = stop_rx.await;
    }));

    // Print the addresses actually bound (port 0 is allowed).
    let listen = listeners.data.local_addr()?;
    let admin = listeners.admin.local_addr()?;
    let tenant = &config.tenants[0];
    eprintln!(
        "\ndefender-proxy dev mode: simulated Entra ID and Defender API on {sim_base}\n\
         tenants: {}\n\ntry:\n  \
         curl -s http://{listen}/{name}/api/incidents?\\$top=2\n  \
         curl -s -H 'X-Defender-Tenant: {other}' http://{listen}/api/machines\n  \
         curl -s http://{listen}/{id}/api/alerts\n  \
         curl -s http://{listen}/{name}/mde/api/machines?\\$top=3\n  \
         curl -s http://{listen}/{name}/graph/v1.0/security/incidents?\\$top=2\n  \
         curl -s -X POST -d '{{\"Query\":\"DeviceInfo | take 3\"}}' http://{listen}/{name}/api/advancedhunting/run   # through Graph\n  \
         curl -s -X POST -d '{{\"Query\":\"DeviceInfo | take 3\"}}' http://{listen}/{other}/api/advancedhunting/run  # legacy: no Graph consent yet\n  \
         curl -s http://{admin}/metrics\n",
        config.tenants.iter().map(|t| format!("{} ({})", t.name, t.id)).collect::<Vec<_>>().join(", "),
        name = tenant.name,
        id = tenant.id,
        other = config.tenants.last().map_or("fabrikam", |t| t.name.as_str()),
    );

    app::run(&config, None, listeners, shutdown).await?;
    let _ = stop_tx.send(());
    let _ = sim_task.await;
    Ok(())
}
