//! The test-facing side of a [`Simulator`]: failure modes per tenant, the recorder, the stream
//! gate, and [`RunningSim`], a simulator serving on an ephemeral loopback port.
//!
//! Tests wait on the recorder ([`Simulator::wait_token_requests`]) and on the stream gate
//! ([`Simulator::release_streams`]) rather than sleeping.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::records::{ApiRequestRecord, TokenEndpoint, TokenRequestRecord};
use super::state::add_certificate;
use super::{Simulator, PUBLIC_CLOUD, THREAT_HUNTING_ROLE};

impl Simulator {
    /// `false`: no app is consented in the tenant; its token requests get 400
    /// `unauthorized_client` AADSTS700016. `true` restores the consents of
    /// [`super::SimConfig::consents`] and [`Simulator::set_app_consent`]. All tenants start
    /// consented.
    pub fn set_consent(&self, tenant_id: &str, consented: bool) {
        self.shared
            .with_modes(tenant_id, |m| m.consented = consented);
    }

    /// Gives (`true`) or withdraws (`false`) the tenant's consent to the app `client_id` (the
    /// main one or a [`super::SimApp`]), whatever [`super::SimConfig::consents`] says: without
    /// it, that app's token requests for the tenant get AADSTS700016.
    pub fn set_app_consent(&self, tenant_id: &str, client_id: &str, consented: bool) {
        self.shared.with_modes(tenant_id, |m| {
            m.app_consent
                .insert(client_id.to_ascii_lowercase(), consented);
        });
    }

    /// The tenant's next `count` token requests fail with 503 `temporarily_unavailable`
    /// (AADSTS50000) and no `Retry-After`.
    pub fn fail_token_requests(&self, tenant_id: &str, count: u32) {
        self.fail_token_requests_with(tenant_id, count, StatusCode::SERVICE_UNAVAILABLE, None);
    }

    /// The tenant's next `count` token requests fail with `status` (429 -> AADSTS90055, any
    /// other -> AADSTS50000) and, when given, `Retry-After: retry_after`.
    pub fn fail_token_requests_with(
        &self,
        tenant_id: &str,
        count: u32,
        status: StatusCode,
        retry_after: Option<u32>,
    ) {
        self.shared.with_modes(tenant_id, |m| {
            m.fail_remaining = count;
            m.fail_status = status;
            m.fail_retry_after = retry_after;
        });
    }

    /// Every token request of the tenant waits `delay` before it is answered.
    pub fn set_token_delay(&self, tenant_id: &str, delay: Duration) {
        self.shared.with_modes(tenant_id, |m| m.delay = delay);
    }

    /// Tokens for the tenant carry `tid` instead of its id (`None` restores it).
    pub fn set_tid_override(&self, tenant_id: &str, tid: Option<String>) {
        self.shared.with_modes(tenant_id, |m| m.tid_override = tid);
    }

    /// Access tokens issued for the tenant end in `suffix` (`None` restores them): a garbled
    /// token, e.g. one ending in a non-ASCII character.
    pub fn set_token_suffix(&self, tenant_id: &str, suffix: Option<String>) {
        self.shared
            .with_modes(tenant_id, |m| m.token_suffix = suffix);
    }

    /// Every API request carrying a token of the tenant (by `tid`) waits `delay` before it is
    /// answered (for upstream-timeout tests; pair with paused tokio time to keep tests fast).
    pub fn set_api_delay(&self, tenant_id: &str, delay: Duration) {
        self.shared.with_modes(tenant_id, |m| m.api_delay = delay);
    }

    /// Lifetime and `refresh_in` of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration, refresh_in: Option<Duration>) {
        let mut state = self.shared.lock();
        state.lifetime = lifetime;
        state.refresh_in = refresh_in;
    }

    /// Every token issued for the tenant so far is refused by the API (401) from now on.
    pub fn revoke_tokens(&self, tenant_id: &str) {
        let mut state = self.shared.lock();
        let utis: Vec<String> = state
            .issued
            .iter()
            .filter(|(_, t)| t.eq_ignore_ascii_case(tenant_id))
            .map(|(uti, _)| uti.clone())
            .collect();
        state.revoked.extend(utis);
    }

    /// The next `count` API requests whose token's `tid` is `tenant_id` get 429, with
    /// `Retry-After: retry_after` when given (sent verbatim, so tests can send odd values).
    pub fn force_api_429(&self, tenant_id: &str, count: u32, retry_after: Option<&str>) {
        self.shared.with_modes(tenant_id, |m| {
            m.force_429_remaining = count;
            m.force_429_retry_after = retry_after.map(str::to_owned);
        });
    }

    /// The tenant's next `count` Graph hunting queries (`POST /v1.0/security/runHuntingQuery`)
    /// answer 429 `{"error": {"code": "TooManyRequests", "message": "Please retry again
    /// later."}}` with `Retry-After: retry_after_secs`. Checked after the token and its role,
    /// before the body.
    pub fn fail_hunting_429(&self, tenant_id: &str, count: u32, retry_after_secs: u32) {
        self.shared.with_modes(tenant_id, |m| {
            m.hunting_429_remaining = count;
            m.hunting_429_retry_after = retry_after_secs;
        });
    }

    /// The tenant's next `count` Graph hunting queries that have a `Query` answer the CPU-quota
    /// refusal integrators report: 400 `{"error": {"code": "BadRequest", "message": "Query
    /// execution has exceeded the allowed limits..."}}`.
    pub fn fail_hunting_quota(&self, tenant_id: &str, count: u32) {
        self.shared
            .with_modes(tenant_id, |m| m.hunting_quota_remaining = count);
    }

    /// `true`: the tenant's legacy hunting endpoints (`POST /api/advancedhunting/run`,
    /// `POST /api/advancedqueries/run`) answer as retired, 410 `Gone` in the Defender error
    /// shape. What the real ones answer after 2027-02-01 is not documented; this is a guess.
    pub fn set_legacy_hunting_retired(&self, tenant_id: &str, retired: bool) {
        self.shared
            .with_modes(tenant_id, |m| m.legacy_hunting_retired = retired);
    }

    /// Grants (`true`) or withholds (`false`) the application role `role` in the tenant's
    /// tokens issued from now on, whatever its configured `roles` say (tokens already issued
    /// keep theirs, as Entra's do until they expire).
    pub fn set_role(&self, tenant_id: &str, role: &str, granted: bool) {
        self.shared.with_modes(tenant_id, |m| {
            m.role_overrides.insert(role.to_owned(), granted);
        });
    }

    /// [`Simulator::set_role`] for `ThreatHunting.Read.All`, the Graph hunting permission (the
    /// demo tenants are granted it): what the proxy's `auto` hunting mode switches on.
    pub fn set_threat_hunting_granted(&self, tenant_id: &str, granted: bool) {
        self.set_role(tenant_id, THREAT_HUNTING_ROLE, granted);
    }

    /// From now on the app `client_id` (the main one or a [`super::SimApp`]) authenticates with
    /// `secret` instead of its configured one, which is refused (a secret rotated in Entra ID:
    /// the new one added, the old one removed). `reset_all` keeps it.
    pub fn set_app_secret(&self, client_id: &str, secret: &str) {
        self.shared
            .lock()
            .secrets
            .insert(client_id.to_ascii_lowercase(), secret.to_owned());
    }

    /// Accepts the main app's client assertions whose header names this certificate
    /// (`x5t#S256`, or the legacy SHA-1 `x5t`), verified with `rsa_public_key_pkcs1_der` (a
    /// PKCS#1 `RSAPublicKey`).
    pub fn register_certificate(&self, cert_der: &[u8], rsa_public_key_pkcs1_der: &[u8]) {
        let main = self.shared.config.client_id.clone();
        self.register_app_certificate(&main, cert_der, rsa_public_key_pkcs1_der);
    }

    /// As [`Simulator::register_certificate`], for the app `client_id` (a certificate is one
    /// app's: another app's assertions signed with it are refused).
    pub fn register_app_certificate(
        &self,
        client_id: &str,
        cert_der: &[u8],
        rsa_public_key_pkcs1_der: &[u8],
    ) {
        let mut state = self.shared.lock();
        add_certificate(
            &mut state.certs,
            client_id,
            cert_der,
            rsa_public_key_pkcs1_der,
        );
    }

    /// Adds a federated identity credential to the app (workload identity federation): from
    /// now on a client assertion whose `iss` and `sub` are these, whose `aud` is
    /// `api://AzureADTokenExchange` and whose `exp` is in the future is accepted for any tenant,
    /// as Entra accepts one on a multi-tenant app. Its signature is not checked: the simulator
    /// trusts the issuer, as Entra does once it has fetched the issuer's OIDC signing keys.
    pub fn register_federation(&self, issuer: &str, subject: &str) {
        self.shared
            .lock()
            .federations
            .insert((issuer.to_owned(), subject.to_owned()));
    }

    /// Turns the `gzip_json` mode on or off (see [`super::SimConfig::gzip_json`]); applies to
    /// answers started from now on.
    pub fn set_gzip_json(&self, on: bool) {
        self.shared.set_gzip_json(on);
    }

    /// Whether the `gzip_json` mode is on.
    pub fn gzip_json(&self) -> bool {
        self.shared.gzip_json()
    }

    /// Hunting answers (Graph and legacy) started from now on stop before their frame
    /// `before_frame` (frames are 512 rows, about 100 KB; 0 holds back even the head) until the
    /// next [`Simulator::release_streams`]; `None` stops holding new answers. A test sees what a
    /// client got of an answer the simulator has not finished sending.
    pub fn hold_hunting_streams(&self, before_frame: Option<u64>) {
        self.shared.lock().hunting_hold = before_frame;
    }

    /// Lets every `/api/_test/stream` response started before this call send its second part,
    /// and every held hunting answer ([`Simulator::hold_hunting_streams`]) the rest.
    pub fn release_streams(&self) {
        self.shared.release.send_modify(|g| *g += 1);
    }

    /// Every token request recorded (oldest first).
    pub fn token_requests(&self) -> Vec<TokenRequestRecord> {
        self.shared.lock().token_records.iter().cloned().collect()
    }

    /// Every API request recorded (oldest first).
    pub fn api_requests(&self) -> Vec<ApiRequestRecord> {
        self.shared.lock().api_records.iter().cloned().collect()
    }

    /// Token requests recorded for `tenant_id` (the path segment, case-insensitive).
    pub fn token_request_count(&self, tenant_id: &str) -> usize {
        self.shared
            .lock()
            .token_records
            .iter()
            .filter(|r| r.tenant.eq_ignore_ascii_case(tenant_id))
            .count()
    }

    /// Token requests of any tenant since the last reset.
    pub fn total_token_request_count(&self) -> usize {
        self.shared.counts.borrow().token
    }

    /// API requests since the last reset.
    pub fn api_request_count(&self) -> usize {
        self.shared.counts.borrow().api
    }

    /// Forgets all records and counts.
    pub fn reset_records(&self) {
        let mut state = self.shared.lock();
        state.token_records.clear();
        state.api_records.clear();
        drop(state);
        self.shared.counts.send_replace(Default::default());
    }

    /// Forgets records, every tenant's modes, rate-limit windows, revocations and the hunting
    /// hold, and sets `gzip_json` back to its configured value (registered certificates and seen
    /// assertion ids stay).
    pub fn reset_all(&self) {
        self.shared.set_gzip_json(self.shared.config.gzip_json);
        let mut state = self.shared.lock();
        state.tenants.clear();
        state.limiter.clear();
        state.revoked.clear();
        state.lifetime = self.shared.config.token_lifetime;
        state.refresh_in = self.shared.config.refresh_in;
        state.hunting_hold = None;
        drop(state);
        self.reset_records();
    }

    /// Resolves once at least `n` token requests have been recorded since the last reset.
    pub async fn wait_token_requests(&self, n: usize) {
        let mut rx = self.shared.counts.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|c| c.token >= n).await;
    }

    /// Resolves once at least `n` token requests for `tenant_id` have arrived since the last
    /// reset, without waiting for their answers: with [`Simulator::set_token_delay`] a test can
    /// act while a request is still held at the token endpoint.
    pub async fn wait_token_requests_started(&self, tenant_id: &str, n: usize) {
        let key = tenant_id.to_ascii_lowercase();
        let mut rx = self.shared.counts.subscribe();
        let _ = rx
            .wait_for(|c| c.token_started.get(&key).copied().unwrap_or(0) >= n)
            .await;
    }

    /// Resolves once at least `n` API requests have been recorded since the last reset.
    pub async fn wait_api_requests(&self, n: usize) {
        let mut rx = self.shared.counts.subscribe();
        let _ = rx.wait_for(|c| c.api >= n).await;
    }
}

/// A simulator serving on `127.0.0.1:<ephemeral>` in a background task, and each of its
/// [`super::SimConfig::clouds`] on a port of its own. Dereferences to the [`Simulator`]; stops
/// when dropped or on [`RunningSim::shutdown`].
#[derive(Debug)]
pub struct RunningSim {
    sim: Simulator,
    addr: SocketAddr,
    base_url: String,
    /// Every listener: cloud, address, base URL; [`PUBLIC_CLOUD`] first.
    listeners: Vec<(String, SocketAddr, String)>,
    /// Dropping it resolves every listener's shutdown future.
    stop: Option<watch::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningSim {
    pub(crate) async fn start(sim: Simulator) -> std::io::Result<Self> {
        Self::start_with(sim, None).await
    }

    /// As `start`, serving TLS with `tls` (its certificate must name `localhost`).
    pub(crate) async fn start_with(
        sim: Simulator,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Self> {
        let clouds = std::iter::once(PUBLIC_CLOUD.to_owned())
            .chain(sim.config().clouds.iter().map(|c| c.name.clone()));
        let (stop, stopped) = watch::channel(());
        let mut listeners = Vec::new();
        let mut serving = Vec::new();
        for cloud in clouds {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
            let addr = listener.local_addr()?;
            let base_url = super::base_url_for(addr, tls.is_some());
            // Set now, not when the task first runs, so `base_url()` is right at once.
            sim.shared.set_base_url(&cloud, &base_url);
            let mut stopped = stopped.clone();
            let shutdown = async move {
                let _ = stopped.changed().await;
            };
            let sim = sim.clone();
            let (name, tls) = (cloud.clone(), tls.clone());
            serving.push(async move { sim.serve_cloud(&name, listener, tls, shutdown).await });
            listeners.push((cloud, addr, base_url));
        }
        let task =
            tokio::spawn(
                async move { futures_util::future::try_join_all(serving).await.map(drop) },
            );
        let (_, addr, base_url) = listeners[0].clone();
        Ok(RunningSim {
            sim,
            addr,
            base_url,
            listeners,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The listening address of the main cloud.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the authority for Entra and the API base for the proxy, in the
    /// main cloud.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The base URL of `cloud`'s listener ([`PUBLIC_CLOUD`] or one of the config's clouds).
    pub fn cloud_base_url(&self, cloud: &str) -> Option<&str> {
        self.listeners
            .iter()
            .find(|(name, ..)| name == cloud)
            .map(|(.., base)| base.as_str())
    }

    /// The listening address of `cloud`.
    pub fn cloud_addr(&self, cloud: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(name, ..)| name == cloud)
            .map(|(_, addr, _)| *addr)
    }

    /// Every listener's cloud and base URL, the main cloud first (what
    /// [`crate::dev::dev_config_in`] takes).
    pub fn base_urls(&self) -> Vec<(String, String)> {
        self.listeners
            .iter()
            .map(|(cloud, _, base)| (cloud.clone(), base.clone()))
            .collect()
    }

    /// The token endpoint URL of a tenant (the `aud` a client assertion must carry).
    pub fn token_url(&self, tenant_id: &str, version: TokenEndpoint) -> String {
        token_url(&self.base_url, tenant_id, version)
    }

    /// The token endpoint URL of a tenant in `cloud`.
    pub fn cloud_token_url(
        &self,
        cloud: &str,
        tenant_id: &str,
        version: TokenEndpoint,
    ) -> Option<String> {
        Some(token_url(self.cloud_base_url(cloud)?, tenant_id, version))
    }

    /// The simulator handle (also reachable through `Deref`).
    pub fn simulator(&self) -> &Simulator {
        &self.sim
    }

    /// Stops serving, closes every connection and waits for the server task.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.stop.take();
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Ok(()),
        }
    }
}

fn token_url(base: &str, tenant_id: &str, version: TokenEndpoint) -> String {
    match version {
        TokenEndpoint::V2 => format!("{base}/{tenant_id}/oauth2/v2.0/token"),
        TokenEndpoint::V1 => format!("{base}/{tenant_id}/oauth2/token"),
    }
}

impl Deref for RunningSim {
    type Target = Simulator;
    fn deref(&self) -> &Simulator {
        &self.sim
    }
}
