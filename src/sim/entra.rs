//! The simulated Entra ID token endpoint: the client-credentials grant on
//! `POST /{tenant}/oauth2/v2.0/token` (`scope`) and `POST /{tenant}/oauth2/token` (v1,
//! `resource`), with a client secret, a certificate-signed client assertion, or a federated
//! assertion (workload identity: a token of another issuer the app trusts).
//!
//! Each listener is a cloud's authority (see `profiles`): it knows that cloud's resources and
//! the tenants homed there, and its tokens name it as issuer and the app they were issued to.
//!
//! Errors use Entra's real shape and AADSTS codes, because the proxy decides between retrying,
//! remembering a failure and showing a consent link from `error` and `error_codes` alone.
//! Checks run in roughly Entra's order: tenant, request syntax, app and consent, credential.

use std::collections::HashMap;

use http::header::HOST;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::entra_error::{err, missing, no_store, EntraError};
use super::profiles::AppRef;
use super::records::{CredentialKind, TokenEndpoint, TokenRequestRecord};
use super::site::{self, Site};
use super::state::{Shared, TenantModes};
use super::support::{self, Body};
use super::{assertion, jwt};

/// Form bodies are small; anything larger is refused rather than buffered.
const FORM_LIMIT: usize = 64 * 1024;
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `{tenant}` and the endpoint version, when `path` is a token endpoint.
pub(crate) fn match_token_path(path: &str) -> Option<(String, TokenEndpoint)> {
    let (tenant, rest) = path.strip_prefix('/')?.split_once('/')?;
    let version = match rest {
        "oauth2/v2.0/token" => TokenEndpoint::V2,
        "oauth2/token" => TokenEndpoint::V1,
        _ => return None,
    };
    (!tenant.is_empty()).then(|| (tenant.to_owned(), version))
}

/// One token request being evaluated.
struct Ctx<'a> {
    shared: &'a Shared,
    site: &'a Site,
    tenant: String,
    version: TokenEndpoint,
    /// The endpoint URL as the client could have addressed it: assertion `aud` candidates.
    endpoint_urls: Vec<String>,
    form: HashMap<String, String>,
}

/// Answers one token request and records it.
pub(crate) async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
    tenant: String,
    version: TokenEndpoint,
    site: &Site,
) -> Response<Body> {
    let host = site::host_of(&req);
    let mut endpoint_urls = vec![format!("{}{}", site.base, req.uri().path())];
    // Also the host the client named (h1 `Host` or h2 `:authority`), so a client configured
    // with `localhost` instead of the IP still gets its assertion audience accepted.
    for host in req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .into_iter()
        .chain(req.uri().authority().map(|a| a.as_str()))
    {
        endpoint_urls.push(format!("http://{host}{}", req.uri().path()));
    }
    shared.counts.send_modify(|c| {
        *c.token_started
            .entry(tenant.to_ascii_lowercase())
            .or_default() += 1;
    });
    let method = req.method().clone();
    let form = read_form(req.into_body()).await;
    let ctx = Ctx {
        shared,
        site,
        tenant,
        version,
        endpoint_urls,
        form: form.clone().unwrap_or_default(),
    };
    let modes = shared.modes(&ctx.tenant);
    if !modes.delay.is_zero() {
        tokio::time::sleep(modes.delay).await;
    }
    let outcome = match form {
        _ if method != Method::POST => Err(err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900561,
            format!(
                "The endpoint only accepts POST, OPTIONS requests. Received a {method} request."
            ),
        )),
        None => Err(err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body could not be read as a form of at most 64 KiB.",
        )),
        Some(_) => ctx.evaluate(),
    };
    shared.record_token(ctx.record(&outcome, host));
    match outcome {
        Ok(body) => {
            let mut resp = support::json(StatusCode::OK, &body);
            no_store(&mut resp);
            resp
        }
        Err(e) => {
            tracing::debug!(tenant = %ctx.tenant, code = e.code, "simulated Entra error");
            e.response(shared, &site.base)
        }
    }
}

/// The form of a token request; `None` when it cannot be read within [`FORM_LIMIT`].
async fn read_form(body: Incoming) -> Option<HashMap<String, String>> {
    let read = support::read_hashed(body, FORM_LIMIT).await.ok()?;
    read.kept
        .as_ref()
        .map(|b| form_urlencoded::parse(b).into_owned().collect())
}

impl Ctx<'_> {
    fn field(&self, name: &str) -> &str {
        self.form.get(name).map(String::as_str).unwrap_or("")
    }

    fn resource_field(&self) -> &'static str {
        match self.version {
            TokenEndpoint::V2 => "scope",
            TokenEndpoint::V1 => "resource",
        }
    }

    fn credential_kind(&self) -> CredentialKind {
        match (
            self.form.contains_key("client_secret"),
            self.form.contains_key("client_assertion"),
        ) {
            (true, false) => CredentialKind::Secret,
            // Entra tells the two assertion kinds apart by issuer: the app signs its own
            // (`iss` = client id); any other issuer is looked up among its federations.
            (false, true)
                if assertion::is_federated(
                    self.field("client_assertion"),
                    self.field("client_id"),
                ) =>
            {
                CredentialKind::Federated
            }
            (false, true) => CredentialKind::Assertion,
            _ => CredentialKind::None,
        }
    }

    /// The recorder's entry for this request, answered with `outcome`, sent to `host`.
    fn record(&self, outcome: &Result<Value, EntraError>, host: String) -> TokenRequestRecord {
        let credential = self.credential_kind();
        TokenRequestRecord {
            tenant: self.tenant.clone(),
            version: self.version,
            client_id: self.field("client_id").to_owned(),
            credential,
            assertion_subject: match credential {
                CredentialKind::Federated => assertion::subject(self.field("client_assertion")),
                _ => None,
            },
            scope_or_resource: self.field(self.resource_field()).to_owned(),
            status: match outcome {
                Ok(_) => 200,
                Err(e) => e.status.as_u16(),
            },
            error_code: outcome.as_ref().err().map(|e| e.code),
            host,
            cloud: self.site.cloud.to_string(),
        }
    }

    /// The next of the tenant's forced failures, if one is left.
    fn forced_failure(&self) -> Option<EntraError> {
        let (status, retry_after) = self.shared.with_modes(&self.tenant, |m| {
            (m.fail_remaining > 0).then(|| {
                m.fail_remaining -= 1;
                (m.fail_status, m.fail_retry_after)
            })
        })?;
        let (code, text) = if status == StatusCode::TOO_MANY_REQUESTS {
            (
                90055,
                "There are too many incoming requests. Please retry later.",
            )
        } else {
            (
                50000,
                "There was an error issuing a token or an issue with our sign-in service.",
            )
        };
        let mut e = err(status, "temporarily_unavailable", code, text);
        e.retry_after = retry_after;
        Some(e)
    }

    /// All checks, then a token; the JSON success body or the error to answer.
    fn evaluate(&self) -> Result<Value, EntraError> {
        if let Some(e) = self.forced_failure() {
            return Err(e);
        }
        let config = &self.shared.config;
        let tenant = self
            .shared
            .tenant_by_id(&self.tenant)
            .filter(|t| config.tenant_in_cloud(&t.id, &self.site.cloud));
        let Some(tenant) = tenant else {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                90002,
                format!(
                    "Tenant '{}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.",
                    self.tenant
                ),
            ));
        };
        match self.form.get("grant_type").map(String::as_str) {
            None => return Err(missing("grant_type")),
            Some("client_credentials") => {}
            Some(other) => {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    70003,
                    format!("The app requested an unsupported grant type '{other}'."),
                ))
            }
        }
        let client_id = self
            .form
            .get("client_id")
            .ok_or_else(|| missing("client_id"))?;
        let resource = self.resource()?;
        let app = config
            .app(client_id)
            .filter(|app| self.shared.consented(&tenant.id, app.client_id));
        let Some(app) = app else {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                    tenant.id
                ),
            ));
        };
        self.check_credential(app)?;
        Ok(self.issue(tenant, resource, app))
    }

    /// The requested resource, which must be one of this listener's cloud.
    fn resource(&self) -> Result<String, EntraError> {
        let field = self.resource_field();
        let value = self.form.get(field).ok_or_else(|| missing(field))?;
        let resource = match self.version {
            TokenEndpoint::V1 => value.as_str(),
            TokenEndpoint::V2 => value.strip_suffix("/.default").ok_or_else(|| {
                err(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    1002012,
                    format!("The provided value for scope {value} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
                )
            })?,
        };
        self.shared
            .config
            .audiences(&self.site.cloud)
            .find(|a| a.trim_end_matches('/') == resource.trim_end_matches('/'))
            .map(str::to_owned)
            .ok_or_else(|| {
                err(
                    StatusCode::BAD_REQUEST,
                    "invalid_resource",
                    500011,
                    format!("The resource principal named {resource} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.", self.tenant),
                )
            })
    }

    fn check_credential(&self, app: AppRef<'_>) -> Result<(), EntraError> {
        let invalid_client =
            |code, text: String| err(StatusCode::UNAUTHORIZED, "invalid_client", code, text);
        match self.credential_kind() {
            CredentialKind::Secret => {
                // Compare digests so the comparison time says nothing about the secret.
                let given = support::sha256_hex(self.field("client_secret").as_bytes());
                let rotated = self
                    .shared
                    .lock()
                    .secrets
                    .get(&app.client_id.to_ascii_lowercase())
                    .cloned();
                match rotated.as_deref().or(app.secret) {
                    Some(secret) if given == support::sha256_hex(secret.as_bytes()) => Ok(()),
                    _ => Err(invalid_client(7000215, format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.", app.client_id))),
                }
            }
            kind @ (CredentialKind::Assertion | CredentialKind::Federated) => {
                if self.field("client_assertion_type") != ASSERTION_TYPE {
                    return Err(err(StatusCode::BAD_REQUEST, "invalid_request", 50027, "Invalid client_assertion_type; expected urn:ietf:params:oauth:client-assertion-type:jwt-bearer."));
                }
                let assertion = self.field("client_assertion");
                if kind == CredentialKind::Federated {
                    assertion::check_federated(self.shared, app, assertion)
                } else {
                    assertion::check(self.shared, app.client_id, &self.endpoint_urls, assertion)
                }
            }
            CredentialKind::None => Err(invalid_client(7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".into())),
        }
    }

    /// The token's claims: v1 or v2 by the endpoint, naming `app` and this listener's authority.
    fn claims(&self, tid: &str, resource: &str, app: AppRef<'_>, now: u64, exp: u64) -> Value {
        let base = &self.site.base;
        let acr = if self.credential_kind() == CredentialKind::Secret {
            "1"
        } else {
            "2"
        };
        let mut claims = json!({
            "aud": resource,
            "iat": now, "nbf": now, "exp": exp,
            "app_displayname": app.name,
            "oid": support::uuid(),
            "tid": tid,
        });
        let version = match self.version {
            TokenEndpoint::V1 => json!({
                "iss": format!("{base}/{tid}/"),
                "idp": format!("{base}/{tid}/"),
                "appid": app.client_id,
                "appidacr": acr,
                "ver": "1.0",
            }),
            TokenEndpoint::V2 => json!({
                "iss": format!("{base}/{tid}/v2.0"),
                "azp": app.client_id,
                "azpacr": acr,
                "ver": "2.0",
            }),
        };
        if let (Some(claims), Value::Object(more)) = (claims.as_object_mut(), version) {
            claims.extend(more);
        }
        claims
    }

    /// Mints the access token and builds the success body of this endpoint version.
    fn issue(&self, tenant: &super::SimTenant, resource: String, app: AppRef<'_>) -> Value {
        let shared = self.shared;
        let modes = shared.modes(&tenant.id);
        let tid = modes
            .tid_override
            .clone()
            .unwrap_or_else(|| tenant.id.clone());
        let now = shared.clock.unix_secs();
        let uti = jwt::b64url(&fastrand::u128(..).to_le_bytes());
        let (lifetime, refresh_in) = {
            let mut state = shared.lock();
            state
                .issued
                .insert(uti.clone(), tenant.id.to_ascii_lowercase());
            (
                state.lifetime.as_secs(),
                state.refresh_in.map(|d| d.as_secs()),
            )
        };
        let exp = now + lifetime;
        let mut claims = self.claims(&tid, &resource, app, now, exp);
        claims["uti"] = json!(uti);
        let roles = roles(tenant, &modes);
        // Like Entra, no `roles` claim at all when nothing is granted.
        if !roles.is_empty() {
            claims["roles"] = json!(roles);
        }
        let mut token = jwt::sign_hs256(&shared.key, &claims);
        if let Some(suffix) = &modes.token_suffix {
            token.push_str(suffix);
        }
        match self.version {
            TokenEndpoint::V2 => {
                let mut body = json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token});
                if let Some(r) = refresh_in {
                    body["refresh_in"] = json!(r);
                }
                body
            }
            TokenEndpoint::V1 => json!({
                "token_type": "Bearer",
                "expires_in": lifetime.to_string(),
                "ext_expires_in": lifetime.to_string(),
                "expires_on": exp.to_string(),
                "not_before": now.to_string(),
                "resource": resource,
                "access_token": token,
            }),
        }
    }
}

/// The tenant's configured roles, less those withheld, plus those granted by a test.
fn roles(tenant: &super::SimTenant, modes: &TenantModes) -> Vec<String> {
    let mut roles: Vec<String> = tenant
        .roles
        .iter()
        .filter(|r| modes.role_overrides.get(*r) != Some(&false))
        .cloned()
        .collect();
    let mut granted: Vec<&String> = modes
        .role_overrides
        .iter()
        .filter(|(r, on)| **on && !roles.contains(r))
        .map(|(r, _)| r)
        .collect();
    granted.sort();
    roles.extend(granted.into_iter().cloned());
    roles
}
