//! The built-in simulator: a simulated Entra ID token endpoint and a subset of the Microsoft 365
//! Defender API on one loopback listener per cloud, plus `/_sim/` control endpoints.
//!
//! It serves three users: the proxy's integration tests (which hold a [`Simulator`] handle, set
//! failure modes and assert on what it recorded), `defender-proxy simulate` and `serve --dev`
//! (demo tenants from [`SimConfig::demo`]). It behaves like the real services where the proxy
//! depends on it: Entra's error shapes and AADSTS codes, certificate assertions, the Defender XDR,
//! Defender for Endpoint and Graph security APIs each with its token audience and error shape,
//! absolute `@odata.nextLink`s, per-tenant rate limits and (on request) gzip-encoded JSON. It
//! knows more apps than the main one (a customer's own, with a secret or a certificate), which
//! apps each tenant consented to, and more clouds than the public one (a US government cloud on
//! a listener of its own, with its own authority, issuer and audiences): see `profiles`.
//!
//! # Layout
//! - `entra`: the token endpoint (v1 and v2, secret and certificate assertion); `assertion`:
//!   the certificate-assertion checks.
//! - `api`: the Defender API subset (XDR and Defender for Endpoint paths), its bearer-token
//!   check and limits; `graph`: the Graph security API subset; `family`: which API a path
//!   belongs to and which token audiences it takes; `paging`: `$top`/`$skip` and absolute
//!   `@odata.nextLink`s; `gzip`: the `gzip_json` mode; `testapi` and `bigjson`: test helpers
//!   under `/api/_test/`; `data`: deterministic per-tenant incidents, alerts, machines;
//!   `hunting`: advanced-hunting rows, streamed in the legacy and the Graph shape.
//!
//! # Advanced hunting
//! - `POST /api/advancedhunting/run`, `POST /api/advancedqueries/run` (legacy): `{"Query"}` ->
//!   `{"Stats", "Schema", "Results"}`; retired on request ([`Simulator::set_legacy_hunting_retired`]:
//!   410 `Gone`, a guess, the real answer being undocumented).
//! - `POST /v1.0/security/runHuntingQuery` (Graph audience, role `ThreatHunting.Read.All`, else
//!   403; [`Simulator::set_threat_hunting_granted`] gives or withholds it per tenant):
//!   `{"Query", "Timespan"}` -> `{"@odata.context", "schema", "results"}`, 400 `BadRequest`
//!   without `Query`; forced 429s ([`Simulator::fail_hunting_429`]) and CPU-quota 400s
//!   ([`Simulator::fail_hunting_quota`]).
//! - Both return the same deterministic rows; `take N` in the query asks for N rows, generated
//!   as they are sent (legacy capped at 10,000; Graph up to 10 million, so `take 300000` makes
//!   a cheap 52 MB answer). [`Simulator::hold_hunting_streams`] stops answers mid-way until
//!   [`Simulator::release_streams`]; request records keep small bodies (the query sent).
//! - `profiles`: apps, consents and clouds; `site`: which listener (cloud) a request came to.
//! - `control`: the `/_sim/` HTTP endpoints; `state`: modes and recorder; `records`: recorder
//!   entries; `limits`: Defender's limits; `jwt`: token minting and assertion checks;
//!   `support`: response helpers; `warnings`: the API's throttle headers, `Retry-After` on
//!   answers and partial (206) answers, on request.

mod api;
mod assertion;
mod bigjson;
mod control;
mod data;
mod entra;
mod entra_error;
mod family;
mod graph;
mod gzip;
mod handle;
mod hunting;
mod jwt;
mod limits;
mod paging;
mod profiles;
mod records;
mod site;
mod state;
mod support;
mod testapi;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
mod warnings;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub(crate) use family::Audience;
pub use handle::RunningSim;
pub use profiles::{
    SimApp, SimCloud, SimCredential, DEV_GOV_CLOUD, DEV_OWN_APP, GOV_AUDIENCES, PUBLIC_CLOUD,
};
pub use records::{ApiRequestRecord, CredentialKind, TokenEndpoint, TokenRequestRecord};
pub use warnings::{ThrottleHeaders, PARTIAL_WARNING};

/// One customer tenant the simulated Entra ID knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTenant {
    /// Short name (`contoso`), used in the demo data.
    pub name: String,
    /// Tenant id (a GUID); the `{tenant}` of the token endpoint and the tokens' `tid`.
    pub id: String,
    /// Application roles granted to the app in this tenant; empty -> tokens without `roles`,
    /// which the API answers with 403.
    pub roles: Vec<String>,
}

/// What the simulator accepts and how it behaves at start.
#[derive(Clone)]
pub struct SimConfig {
    /// The application (client) id it accepts.
    pub client_id: String,
    /// The client secret it accepts.
    pub client_secret: String,
    pub tenants: Vec<SimTenant>,
    /// `expires_in` of issued tokens.
    pub token_lifetime: Duration,
    /// When set, sent as `refresh_in` by the v2 endpoint.
    pub refresh_in: Option<Duration>,
    /// Enforce Defender's per-tenant limits with 429s.
    pub enforce_limits: bool,
    /// The audience (resource) of the Defender API; tokens for it are accepted by `/api/`.
    pub api_audience: String,
    /// More resources tokens may be requested for, e.g. the MDE or Graph audiences when a test
    /// points several `[[api]]` entries at this one simulator. Which paths a token may call
    /// follows from its audience's host (see `family`): an MDE audience reaches the Defender for
    /// Endpoint paths, a Graph one the Graph paths, any other one the Defender paths.
    pub extra_audiences: Vec<String>,
    /// Records kept per kind; older ones are dropped (counts keep counting), so long benchmarks
    /// don't grow memory without bound.
    pub max_records: usize,
    /// Gzip-encode successful JSON answers (collections, entities, hunting results,
    /// `/api/_test/bigjson`) for requests whose `Accept-Encoding` allows it, as Microsoft's front
    /// ends do. Off by default; changed at run time by [`Simulator::set_gzip_json`] or
    /// `POST /_sim/config`.
    pub gzip_json: bool,
    /// Apps besides the main one (see `profiles`).
    pub apps: Vec<SimApp>,
    /// Tenant id -> the client ids of the apps it has consented to; a tenant not listed has
    /// consented to the main app only.
    pub consents: BTreeMap<String, Vec<String>>,
    /// Clouds besides [`PUBLIC_CLOUD`], each served on a listener of its own.
    pub clouds: Vec<SimCloud>,
    /// Tenant id -> the one cloud it is known in; a tenant not listed is known in every cloud.
    pub tenant_clouds: BTreeMap<String, String>,
}

/// The application permission Graph's `runHuntingQuery` requires.
pub const THREAT_HUNTING_ROLE: &str = "ThreatHunting.Read.All";

/// Roles the demo tenants grant: enough for every simulated endpoint of the three APIs (Defender
/// XDR, Defender for Endpoint, Graph security).
pub const DEMO_ROLES: [&str; 8] = [
    "Incident.Read.All",
    "AdvancedHunting.Read.All",
    "Machine.Read.All",
    "Alert.Read.All",
    "AdvancedQuery.Read.All",
    "SecurityIncident.Read.All",
    "SecurityAlert.Read.All",
    "ThreatHunting.Read.All",
];

impl SimConfig {
    /// The demo setup of `serve --dev` and `simulate`: tenants `contoso` and `fabrikam`.
    pub fn demo() -> Self {
        let tenant = |name: &str, id: &str| SimTenant {
            name: name.into(),
            id: id.into(),
            roles: DEMO_ROLES.iter().map(|r| r.to_string()).collect(),
        };
        SimConfig {
            client_id: "00000000-0000-0000-0000-00000000d3f0".into(),
            client_secret: "dev-secret-not-for-production".into(),
            tenants: vec![
                tenant("contoso", "11111111-aaaa-4aaa-8aaa-000000000001"),
                tenant("fabrikam", "11111111-aaaa-4aaa-8aaa-000000000002"),
            ],
            token_lifetime: Duration::from_secs(3599),
            refresh_in: None,
            enforce_limits: true,
            api_audience: "https://api.security.microsoft.com".into(),
            extra_audiences: vec![
                "https://api.securitycenter.microsoft.com".into(),
                "https://graph.microsoft.com".into(),
            ],
            max_records: 50_000,
            gzip_json: false,
            apps: vec![],
            consents: BTreeMap::new(),
            clouds: vec![],
            tenant_clouds: BTreeMap::new(),
        }
    }
}

impl SimConfig {
    /// The demo setup plus `extra` generated tenants `tenant-00001`, `tenant-00002`, ... with
    /// ids `11111111-bbbb-4bbb-8bbb-{n:012}`, for benchmarks with many tenants.
    pub fn demo_with_tenants(extra: usize) -> Self {
        let mut config = Self::demo();
        config.tenants.extend((1..=extra).map(|n| SimTenant {
            name: format!("tenant-{n:05}"),
            id: format!("11111111-bbbb-4bbb-8bbb-{n:012}"),
            roles: DEMO_ROLES.iter().map(|r| r.to_string()).collect(),
        }));
        config
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self::demo()
    }
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("tenants", &self.tenants)
            .field("token_lifetime", &self.token_lifetime)
            .field("refresh_in", &self.refresh_in)
            .field("enforce_limits", &self.enforce_limits)
            .field("api_audience", &self.api_audience)
            .field("extra_audiences", &self.extra_audiences)
            .field("max_records", &self.max_records)
            .field("gzip_json", &self.gzip_json)
            .field("apps", &self.apps)
            .field("consents", &self.consents)
            .field("clouds", &self.clouds)
            .field("tenant_clouds", &self.tenant_clouds)
            .finish()
    }
}

/// Handle on a simulator: cheap to clone, all clones share state.
#[derive(Clone, Debug)]
pub struct Simulator {
    pub(crate) shared: Arc<state::Shared>,
}

/// `http://ip:port` for a listener; a wildcard address becomes loopback so links are usable.
fn base_url_for(addr: SocketAddr, tls: bool) -> String {
    if tls {
        // Certificates name hosts, not addresses: the TLS simulator is `localhost`.
        return format!("https://localhost:{}", addr.port());
    }
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

impl Simulator {
    /// A simulator with `config`; nothing listens until [`Simulator::serve`].
    pub fn new(config: SimConfig) -> Self {
        Simulator {
            shared: Arc::new(state::Shared::new(config)),
        }
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// `http://ip:port` of the main listener ([`PUBLIC_CLOUD`]), once [`Simulator::serve`] has
    /// started.
    pub fn base_url(&self) -> Option<String> {
        self.shared.base_url(PUBLIC_CLOUD)
    }

    /// The base URL of `cloud`'s listener, once it is served.
    pub fn cloud_base_url(&self, cloud: &str) -> Option<String> {
        self.shared.base_url(cloud)
    }

    /// Serves HTTP/1.1 and h2c on `listener` as the main cloud ([`PUBLIC_CLOUD`]) until
    /// `shutdown` resolves, then closes every connection (open streams included) and returns.
    /// Absolute links (`@odata.nextLink`, the assertion audience, the tokens' issuer) use
    /// `http://{listener address}`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with(PUBLIC_CLOUD, listener, None, shutdown)
            .await
    }

    /// As [`Simulator::serve`], over TLS (HTTP/2 or HTTP/1.1 by ALPN), as the real hosts are;
    /// links then use `https://localhost:PORT`.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with(PUBLIC_CLOUD, listener, Some(tls), shutdown)
            .await
    }

    /// As [`Simulator::serve`], as `cloud` (one of [`SimConfig::clouds`], or [`PUBLIC_CLOUD`]):
    /// the listener is that cloud's authority and API base, sharing everything else with the
    /// simulator's other listeners (see `profiles`). One listener per cloud. An unknown cloud is
    /// an `InvalidInput` error.
    pub async fn serve_cloud(
        self,
        cloud: &str,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with(cloud, listener, tls, shutdown).await
    }

    async fn serve_with(
        self,
        cloud: &str,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if !self.shared.config.has_cloud(cloud) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the simulator has no cloud `{cloud}`"),
            ));
        }
        let local = listener.local_addr()?;
        let base = base_url_for(local, tls.is_some());
        self.shared.set_base_url(cloud, &base);
        tracing::info!(base_url = %base, cloud, "simulator listening");
        let site = Arc::new(site::Site {
            cloud: cloud.into(),
            base: base.into(),
            local,
        });
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let mut conns = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let conn = self.clone().connection(stream, peer, site.clone(), acceptor.clone());
                        conns.spawn(conn);
                    }
                    Err(e) => tracing::warn!(error = %e, "simulator accept failed"),
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        conns.abort_all();
        while conns.join_next().await.is_some() {}
        Ok(())
    }

    /// Serves one accepted connection (after its TLS handshake, if any) until it closes.
    async fn connection(
        self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        site: Arc<site::Site>,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
    ) {
        let svc = service_fn(move |req| {
            let sim = self.clone();
            let site = site.clone();
            async move { Ok::<_, Infallible>(sim.dispatch(req, &site).await) }
        });
        let builder = auto::Builder::new(TokioExecutor::new());
        let served = match acceptor {
            None => builder.serve_connection(TokioIo::new(stream), svc).await,
            Some(acceptor) => match acceptor.accept(stream).await {
                Ok(tls) => builder.serve_connection(TokioIo::new(tls), svc).await,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "simulator TLS handshake failed");
                    return;
                }
            },
        };
        if let Err(e) = served {
            tracing::debug!(%peer, error = %e, "simulator connection ended");
        }
    }

    /// Binds `127.0.0.1:0` and serves in a background task; see [`RunningSim`].
    pub async fn start(config: SimConfig) -> std::io::Result<RunningSim> {
        RunningSim::start(Simulator::new(config)).await
    }

    /// As [`Simulator::start`], over TLS with `tls` (a certificate for `localhost`).
    pub async fn start_tls(
        config: SimConfig,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<RunningSim> {
        RunningSim::start_with(Simulator::new(config), Some(tls)).await
    }

    /// Routes a request to the token endpoint, the control endpoints or the API.
    async fn dispatch(
        &self,
        req: http::Request<hyper::body::Incoming>,
        site: &site::Site,
    ) -> http::Response<support::Body> {
        let path = req.uri().path().to_owned();
        if path == "/_sim" || path.starts_with("/_sim/") {
            return control::handle(self, req).await;
        }
        if let Some((tenant, version)) = entra::match_token_path(&path) {
            return entra::handle(&self.shared, req, tenant, version, site).await;
        }
        api::handle(&self.shared, req, site).await
    }
}
