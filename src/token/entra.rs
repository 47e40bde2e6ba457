//! The HTTP client for Entra ID's token endpoint (client-credentials grant, v2 or v1).
//!
//! One request, one answer: retries, caching and failure memory are the slot's business
//! (`slot.rs`). This file builds the form, sends it, reads a bounded body and turns the answer into
//! a [`FetchedToken`] or a classified [`TokenError`]. It acts on the OAuth `error` field and
//! `error_codes` only, never on `error_description`, whose text Microsoft changes at will.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::claims::de_opt_u64;
use super::classify::{classify, ErrorClass};
use super::credential::{ClientAuth, PreparedCredential, ASSERTION_TYPE};
use super::error::{InvalidResponse, TokenError};
use super::{FetchFuture, FetchedToken, TokenSource};
use crate::config::{CloudConfig, TokenEndpointVersion};

/// Token answers are a few KiB; anything much larger is not one.
const MAX_BODY: usize = 64 * 1024;
/// Longest `Retry-After` taken at its word; beyond that the slot's own backoff cap applies anyway.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Requests tokens from Entra ID for any tenant, as the partner's multi-tenant app.
pub(crate) struct EntraClient {
    pub(crate) http: HttpClient,
    pub(crate) cloud: CloudConfig,
    pub(crate) client_id: String,
    pub(crate) credential: PreparedCredential,
    /// Whole request: connect, send, answer, body (applied by `fetch_attempt`).
    pub(crate) timeout: Duration,
}

impl fmt::Debug for EntraClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraClient")
            .field("authority", &self.cloud.authority)
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl TokenSource for EntraClient {
    fn fetch<'a>(&'a self, tenant_id: &'a str, scope: &'a str) -> FetchFuture<'a> {
        Box::pin(self.request(tenant_id, scope))
    }

    fn attempt_timeout(&self) -> Duration {
        self.timeout
    }
}

impl EntraClient {
    async fn request(&self, tenant_id: &str, scope: &str) -> Result<FetchedToken, TokenError> {
        let transport = |e: Arc<dyn std::error::Error + Send + Sync>| TokenError::Transport {
            tenant_id: tenant_id.to_owned(),
            source: e,
        };
        let url = self.cloud.token_url(tenant_id);
        let auth = self.credential.client_auth(&self.client_id, &url).await?;
        let body = form_body(self.cloud.token_endpoint, &self.client_id, scope, &auth);
        let request = Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body.expose_secret().to_owned())))
            .map_err(|e| transport(Arc::new(e)))?;

        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| transport(Arc::new(e)))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = match Limited::new(response.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                let reason = InvalidResponse::TooLarge { limit: MAX_BODY };
                return Err(TokenError::InvalidResponse {
                    tenant_id: tenant_id.to_owned(),
                    reason,
                });
            }
            Err(e) => return Err(transport(Arc::from(e))),
        };
        if status.is_success() {
            parse_success(&bytes).map_err(|reason| TokenError::InvalidResponse {
                tenant_id: tenant_id.to_owned(),
                reason,
            })
        } else {
            Err(parse_error(
                status,
                retry_after,
                &bytes,
                tenant_id,
                |tenant| self.cloud.consent_url(tenant, &self.client_id),
            ))
        }
    }
}

/// The `application/x-www-form-urlencoded` body of a client-credentials request. Kept secret: it
/// holds the client secret or the assertion.
pub(crate) fn form_body(
    version: TokenEndpointVersion,
    client_id: &str,
    scope: &str,
    auth: &ClientAuth,
) -> SecretString {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    form.append_pair("client_id", client_id);
    match version {
        TokenEndpointVersion::V2 => form.append_pair("scope", scope),
        // v1 names the resource itself, not a scope of it.
        TokenEndpointVersion::V1 => {
            form.append_pair("resource", scope.strip_suffix("/.default").unwrap_or(scope))
        }
    };
    match auth {
        ClientAuth::Secret(secret) => form.append_pair("client_secret", secret.expose_secret()),
        ClientAuth::Assertion(jwt) => {
            form.append_pair("client_assertion_type", ASSERTION_TYPE);
            form.append_pair("client_assertion", jwt.expose_secret())
        }
    };
    SecretString::from(form.finish())
}

/// A success answer. v1 sends the numbers as strings, so both are accepted.
#[derive(Deserialize)]
struct SuccessBody {
    // A plain `String` only because secrecy's serde feature is off; wrapped right away.
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    expires_in: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    refresh_in: Option<u64>,
}

pub(crate) fn parse_success(body: &[u8]) -> Result<FetchedToken, InvalidResponse> {
    let parsed: SuccessBody =
        serde_json::from_slice(body).map_err(|e| InvalidResponse::Json(Arc::new(e)))?;
    if let Some(kind) = &parsed.token_type {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(InvalidResponse::TokenType);
        }
    }
    Ok(FetchedToken {
        access_token: SecretString::from(parsed.access_token),
        expires_in: parsed.expires_in.map(Duration::from_secs),
        refresh_in: parsed.refresh_in.map(Duration::from_secs),
    })
}

/// An OAuth error answer: only `error` and `error_codes` are read.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_codes: Vec<u32>,
}

/// Turn an error answer into a [`TokenError`]; `consent_url` makes the tenant's consent link,
/// attached to consent errors only.
pub(crate) fn parse_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    tenant_id: &str,
    consent_url: impl FnOnce(&str) -> String,
) -> TokenError {
    let tenant_id = tenant_id.to_owned();
    let status = status.as_u16();
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            mut error,
            error_codes: codes,
        }) => {
            // Shown to clients: keep it the short OAuth token it should be.
            error.retain(|c| c.is_ascii_alphanumeric() || c == '_');
            error.truncate(64);
            let class = classify(status, &error, &codes);
            let consent_url = (class == ErrorClass::Consent).then(|| consent_url(&tenant_id));
            TokenError::Entra {
                tenant_id,
                status,
                error,
                codes,
                class,
                consent_url,
                retry_after,
            }
        }
        Err(_) => TokenError::Status {
            tenant_id,
            status,
            retry_after,
        },
    }
}

/// `Retry-After` in seconds (Entra's form). The HTTP-date form is ignored: backoff applies then.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "entra_tests.rs"]
mod tests;
