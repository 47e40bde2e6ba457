//! `GET /consent/callback`: where Entra ID sends the customer's admin back after admin consent.
//!
//! In order, each step refusing with its own [`Answer`]: the client's allowance; the signed
//! state (whom the link was for); the consent itself; the `tenant` GUID; a token for that
//! tenant with the state's app and cloud, whose `tid` must be that tenant (the query alone is
//! never believed: anyone can type it); and only then the tenants file, through
//! [`crate::tenants::change`]. Every callback writes one info line: what happened, the tenant's
//! name and id, the client. Never the state or a token.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::{Method, Request};

use super::limit::ClientLimit;
use super::page::Answer;
use super::state::{self, Invite, StateKey};
use crate::config::{is_guid, Config};
use crate::proxy::Proxy;
use crate::reload::Reloader;
use crate::tenants::{self, Change, ChangeError, Outcome, TenantEntry};
use crate::token::{aadsts_meaning, ErrorClass, Prepared, TokenBroker, TokenError};

/// The one path served.
pub(crate) const PATH: &str = "/consent/callback";
/// Who changes the tenants file, for its audit line.
const WHO: &str = "onboarding";

/// The callback's view of the running proxy.
#[derive(Debug)]
pub(crate) struct Callback {
    pub(crate) proxy: Arc<Proxy>,
    /// Adds the tenant and applies it like a reload; `None` without a config file.
    pub(crate) reloader: Option<Arc<Reloader>>,
    pub(crate) limit: ClientLimit,
}

/// The query parameters the callback reads (the first of each; others are ignored).
#[derive(Debug, Default)]
struct Query {
    admin_consent: Option<String>,
    tenant: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

impl Query {
    fn parse(query: &str) -> Self {
        let mut q = Query::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*key {
                "admin_consent" => &mut q.admin_consent,
                "tenant" => &mut q.tenant,
                "state" => &mut q.state,
                "error" => &mut q.error,
                _ => continue,
            };
            slot.get_or_insert_with(|| value.into_owned());
        }
        q
    }
}

/// What the log line names, as far as the callback got.
#[derive(Debug, Default)]
struct Seen {
    name: Option<String>,
    tenant_id: Option<String>,
}

impl Callback {
    /// The answer to `request` from `client`, logged.
    pub(crate) async fn answer<B>(&self, request: &Request<B>, client: IpAddr) -> Answer {
        let mut seen = Seen::default();
        let answer = self.steps(request, client, &mut seen).await;
        if answer != Answer::NotFound {
            tracing::info!(
                outcome = answer.label(),
                status = answer.status().as_u16(),
                tenant = seen.name.as_deref().unwrap_or(""),
                tenant_id = seen.tenant_id.as_deref().unwrap_or(""),
                client = %client,
                "consent callback"
            );
        }
        answer
    }

    async fn steps<B>(&self, request: &Request<B>, client: IpAddr, seen: &mut Seen) -> Answer {
        if request.uri().path() != PATH || request.method() != Method::GET {
            return Answer::NotFound;
        }
        if let Err(retry_after) = self.limit.check(client, tokio::time::Instant::now()) {
            return Answer::RateLimited { retry_after };
        }
        let config = self.proxy.config.load_full();
        let Some(onboarding) = &config.onboarding else {
            return Answer::NotFound;
        };
        let query = Query::parse(request.uri().query().unwrap_or(""));
        let key = StateKey::new(&onboarding.state_key);
        let text = query.state.as_deref().unwrap_or("");
        let invite = match state::verify(&key, text, SystemTime::now(), &config) {
            Ok(invite) => invite,
            Err(why) => return Answer::BadState(why),
        };
        seen.name = Some(invite.name.clone());
        // Entra's decline is `error=access_denied`; anything but `admin_consent=True` is no
        // consent.
        let consented = query.error.is_none()
            && query
                .admin_consent
                .as_deref()
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if !consented {
            return Answer::Declined { name: invite.name };
        }
        let Some(tenant_id) = query.tenant.filter(|t| is_guid(t)) else {
            return Answer::BadTenant;
        };
        let tenant_id = tenant_id.to_ascii_lowercase();
        seen.tenant_id = Some(tenant_id.clone());
        if let Err(answer) = self.prove(&config, &invite, &tenant_id).await {
            return answer;
        }
        if let Some(answer) = already(&config, &invite.name, &tenant_id) {
            return answer;
        }
        self.add(invite, tenant_id).await
    }

    /// A token for `tenant_id` with the invite's app and cloud, naming that tenant: the proof
    /// that its admin consented to this app.
    async fn prove(&self, config: &Config, invite: &Invite, tenant_id: &str) -> Result<(), Answer> {
        let (broker, scope) = self.broker(config, invite)?;
        let refused = |error: TokenError| {
            tracing::info!(tenant_id, error = %error, "consent callback: no token for the tenant");
            match error {
                TokenError::TenantMismatch { .. } => Answer::TidMismatch {
                    tenant_id: tenant_id.to_owned(),
                },
                error => Answer::TokenFailed {
                    tenant_id: tenant_id.to_owned(),
                    aadsts: error.aadsts(),
                    meaning: error.aadsts().and_then(aadsts_meaning),
                    transient: error.class() == ErrorClass::Transient,
                },
            }
        };
        let token = broker
            .fetch_once(tenant_id, &scope)
            .await
            .map_err(refused)?;
        // `fetch_once` refuses another tid already; this is the line onboarding rests on.
        if !token.tid().eq_ignore_ascii_case(tenant_id) {
            return Err(Answer::TidMismatch {
                tenant_id: tenant_id.to_owned(),
            });
        }
        Ok(())
    }

    /// The running broker of the invite's app and cloud, or a one-off one for a pair no tenant
    /// uses yet; and the cloud's scope.
    fn broker(&self, config: &Config, invite: &Invite) -> Result<(TokenBroker, String), Answer> {
        let app = config.app_named(&invite.app).unwrap_or(&config.app);
        let cloud = config.cloud_named(&invite.cloud).unwrap_or(&config.cloud);
        if let Some(broker) = self.proxy.broker.of(&invite.app, &invite.cloud) {
            return Ok((broker, cloud.scope.clone()));
        }
        match Prepared::new(app, cloud, &config.upstream) {
            Ok(prepared) => Ok((TokenBroker::from_prepared(prepared), cloud.scope.clone())),
            Err(error) => {
                tracing::warn!(error = %error, app = %invite.app, cloud = %invite.cloud,
                    "consent callback: cannot make a token client");
                Err(Answer::NotSaved {
                    name: invite.name.clone(),
                })
            }
        }
    }

    /// Add the tenant to the tenants file and apply it.
    async fn add(&self, invite: Invite, tenant_id: String) -> Answer {
        let name = invite.name.clone();
        let entry = TenantEntry {
            id: tenant_id.clone(),
            app: Some(invite.app).filter(|a| a != crate::config::DEFAULT_PROFILE),
            cloud: Some(invite.cloud).filter(|c| c != crate::config::DEFAULT_PROFILE),
            rate_limit: None,
        };
        let change = Change::Add {
            name: name.clone(),
            entry,
        };
        match tenants::change(self.reloader.as_deref(), change, WHO).await {
            Ok(Outcome::AlreadyThere) => Answer::AlreadyConnected { name, tenant_id },
            Ok(Outcome::Created | Outcome::Replaced | Outcome::Deleted) => {
                Answer::Connected { name, tenant_id }
            }
            Err(ChangeError::Conflict(why)) => {
                tracing::info!(tenant = %name, why = %why, "consent callback: name taken");
                Answer::NameTaken { name }
            }
            Err(error) => {
                tracing::warn!(tenant = %name, tenant_id = %tenant_id, error = %error,
                    "consent callback: the tenant could not be added");
                Answer::NotSaved { name }
            }
        }
    }
}

/// When the running config already has `name` or `tenant_id`: a replayed link for a tenant
/// already served is harmless, a name taken by another tenant is not re-pointed.
fn already(config: &Config, name: &str, tenant_id: &str) -> Option<Answer> {
    let by_name = config.tenants.iter().find(|t| t.name == name);
    let by_id = config
        .tenants
        .iter()
        .find(|t| t.id.eq_ignore_ascii_case(tenant_id));
    match (by_name, by_id) {
        (Some(t), _) if t.id.eq_ignore_ascii_case(tenant_id) => Some(Answer::AlreadyConnected {
            name: t.name.clone(),
            tenant_id: tenant_id.to_owned(),
        }),
        (Some(_), _) => Some(Answer::NameTaken {
            name: name.to_owned(),
        }),
        // The same customer onboarded before under another name.
        (None, Some(t)) => Some(Answer::AlreadyConnected {
            name: t.name.clone(),
            tenant_id: tenant_id.to_owned(),
        }),
        (None, None) => None,
    }
}
