//! Why a token could not be had, and how the broker should react to it.
//!
//! Every variant's `Display` is safe to show a client (the proxy puts it in its `503
//! TokenUnavailable` body): it names the tenant and Entra's AADSTS code with a short meaning, but
//! never a token, a secret, an assertion or Entra's free-text `error_description`. The broker acts
//! on [`ErrorClass`] only, which `classify.rs` derives from the OAuth `error` field and
//! `error_codes`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::classify::{known, status_class, ErrorClass};
use crate::tls::TlsError;

/// A failed token request. Cloned to every caller waiting on the same request, hence the `Arc`s
/// around sources.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// Entra ID answered with an OAuth error body.
    Entra {
        /// The tenant the token was requested for.
        tenant_id: String,
        /// HTTP status of the answer.
        status: u16,
        /// The OAuth `error` field, e.g. `invalid_client`.
        error: String,
        /// The `error_codes` field: AADSTS numbers, most specific first.
        codes: Vec<u32>,
        /// How the broker reacts.
        class: ErrorClass,
        /// The tenant's admin-consent link, for consent errors.
        consent_url: Option<String>,
        /// `Retry-After`, when Entra sent one.
        retry_after: Option<Duration>,
    },
    /// An error status without an OAuth body (e.g. a gateway in between answered).
    Status {
        /// The tenant the token was requested for.
        tenant_id: String,
        /// HTTP status of the answer.
        status: u16,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// The token was issued for another tenant than the one asked for; it is not used.
    TenantMismatch {
        /// The configured tenant id.
        expected: String,
        /// The token's `tid` claim (empty when it has none).
        got: String,
    },
    /// The token endpoint could not be reached, or the connection broke.
    Transport {
        /// The tenant the token was requested for.
        tenant_id: String,
        /// The connection or body error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The token endpoint did not answer in time.
    Timeout {
        /// The tenant the token was requested for.
        tenant_id: String,
        /// The time allowed.
        after: Duration,
    },
    /// The caller stopped waiting after one attempt's timeout; the token request goes on in the
    /// background (more attempts), for the requests that come later.
    Pending {
        /// The tenant the token was requested for.
        tenant_id: String,
        /// How long the caller waited.
        waited: Duration,
        /// The running request's last failed attempt, if one failed yet (e.g. a 429 whose
        /// `Retry-After` it is waiting out); none means the endpoint has not answered.
        last_attempt: Option<Arc<TokenError>>,
    },
    /// A success answer that is no usable token.
    InvalidResponse {
        /// The tenant the token was requested for.
        tenant_id: String,
        /// What is wrong with it.
        #[source]
        reason: InvalidResponse,
    },
    /// The client assertion could not be signed.
    Credential(#[from] CredentialError),
    /// The token request panicked (a bug). Its message is withheld, as it may quote the token;
    /// the failure is remembered like a rejection, so a bug is not hit once per request.
    Internal {
        /// The tenant the token was requested for.
        tenant_id: String,
    },
    /// The token request ended without an answer (its task was cancelled at shutdown).
    Aborted {
        /// The tenant the token was requested for.
        tenant_id: String,
    },
}

/// What is wrong with a token endpoint answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvalidResponse {
    /// The answer is larger than any token response should be.
    #[error("the answer is larger than {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The body is not the JSON expected.
    #[error("the answer is not the expected JSON: {0}")]
    Json(#[source] Arc<serde_json::Error>),
    /// `token_type` is not `Bearer`.
    #[error("unsupported token_type")]
    TokenType,
    /// The access token has a character outside base64url and the dots between segments (a
    /// space, padding, a non-ASCII character): no JWT Entra issues.
    #[error("the access token is not a JWT of base64url segments")]
    NotBase64url,
    /// The access token is not a JWT whose payload can be read.
    #[error("the access token is not a readable JWT: {0}")]
    Claims(#[from] super::claims::ClaimsError),
    /// The access token cannot be put in an HTTP header.
    #[error("the access token has characters not allowed in a header")]
    HeaderValue,
    /// Neither `expires_in` nor an `exp` claim in the future.
    #[error("the token has no usable lifetime")]
    Lifetime,
}

/// The app's credential could not produce the client authentication of a token request. Nothing
/// was sent to Entra ID.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    /// RSA signing failed (ring gives no detail by design).
    #[error("signing the client assertion failed")]
    Sign,
    /// The random number generator failed.
    #[error("no randomness for the assertion id")]
    Random,
    /// The workload identity token file could not be read, or is empty. The message names the
    /// file and the I/O error, never the file's content.
    #[error("cannot use the federated token file {path}: {reason}")]
    FederatedTokenFile {
        /// The file, for the message.
        path: String,
        /// Why (an I/O error's text, "the file is empty", ...).
        reason: String,
    },
}

/// Why the broker could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TokenInitError {
    /// The outbound TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The certificate credential's private key is not a usable RSA key.
    #[error("the private key {path} is not a usable RSA key: {reason}")]
    Key {
        /// The key file, for the message.
        path: String,
        /// ring's reason (ring's error is not a `std::error::Error` here, hence no source).
        reason: ring::error::KeyRejected,
    },
}

impl TokenError {
    /// The most specific AADSTS code, when Entra sent one.
    pub fn aadsts(&self) -> Option<u32> {
        match self {
            TokenError::Entra { codes, .. } => codes.first().copied(),
            TokenError::Pending {
                last_attempt: Some(last),
                ..
            } => last.aadsts(),
            _ => None,
        }
    }

    /// The tenant's admin-consent link, for consent errors.
    pub fn consent_url(&self) -> Option<&str> {
        match self {
            TokenError::Entra { consent_url, .. } => consent_url.as_deref(),
            TokenError::Pending {
                last_attempt: Some(last),
                ..
            } => last.consent_url(),
            _ => None,
        }
    }

    /// How the broker reacts to this failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            TokenError::Entra { class, .. } => *class,
            TokenError::Status { status, .. } => status_class(*status),
            TokenError::Transport { .. }
            | TokenError::Timeout { .. }
            | TokenError::Pending { .. }
            | TokenError::Aborted { .. } => ErrorClass::Transient,
            // A garbled success may be a glitch on the way; asking again is cheap and bounded.
            TokenError::InvalidResponse { .. } => ErrorClass::Transient,
            TokenError::TenantMismatch { .. } => ErrorClass::Tenant,
            TokenError::Credential(_) => ErrorClass::Credential,
            // A bug: asking again at once would most likely hit it again.
            TokenError::Internal { .. } => ErrorClass::Rejected,
        }
    }

    /// `Retry-After` sent with the failure.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TokenError::Entra { retry_after, .. } | TokenError::Status { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Entra { tenant_id, status, error, codes, consent_url, .. } => {
                write!(f, "token request for tenant {tenant_id} failed: ")?;
                match codes.first() {
                    Some(code) => match known(*code) {
                        Some((_, meaning)) => write!(f, "AADSTS{code} ({meaning})")?,
                        None => write!(f, "AADSTS{code} ({error})")?,
                    },
                    None => write!(f, "HTTP {status} ({error})")?,
                }
                if let Some(url) = consent_url {
                    write!(f, "; an admin can consent at {url}")?;
                }
                Ok(())
            }
            TokenError::Status { tenant_id, status, .. } => {
                write!(f, "token request for tenant {tenant_id} failed: the token endpoint answered HTTP {status}")
            }
            TokenError::TenantMismatch { expected, got } => write!(
                f,
                "the token issued for tenant {expected} names tenant '{got}' in its tid claim; not used"
            ),
            // The cause (connection refused, DNS, TLS) is the source, logged as a chain by the
            // slot; clients only need to know Entra ID was out of reach.
            TokenError::Transport { tenant_id, .. } => {
                write!(f, "token request for tenant {tenant_id} failed: cannot reach the token endpoint")
            }
            TokenError::Timeout { tenant_id, after } => write!(
                f,
                "token request for tenant {tenant_id} failed: no answer from the token endpoint within {}s",
                after.as_secs()
            ),
            TokenError::Pending {
                tenant_id,
                waited,
                last_attempt,
            } => {
                let waited = humantime::format_duration(*waited);
                write!(f, "token request for tenant {tenant_id} failed: no token within {waited}")?;
                match last_attempt.as_deref() {
                    None | Some(TokenError::Timeout { .. }) => write!(
                        f,
                        "; the token endpoint is not answering, retrying in the background"
                    ),
                    Some(last) => {
                        // Its own text starts like this one; said once is enough.
                        let text = last.to_string();
                        let prefix = format!("token request for tenant {tenant_id} failed: ");
                        let reason = text.strip_prefix(&prefix).unwrap_or(&text);
                        write!(f, ", retrying in the background; the last attempt: {reason}")
                    }
                }
            }
            TokenError::InvalidResponse { tenant_id, reason } => {
                write!(f, "token request for tenant {tenant_id} failed: {reason}")
            }
            TokenError::Credential(e) => write!(f, "token request failed: {e}"),
            TokenError::Internal { tenant_id } => write!(
                f,
                "token request for tenant {tenant_id} failed: internal error (logged by the proxy)"
            ),
            TokenError::Aborted { tenant_id } => {
                write!(f, "token request for tenant {tenant_id} was abandoned")
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::token::classify::classify;

    fn entra(error: &str, codes: Vec<u32>, consent: Option<&str>) -> TokenError {
        TokenError::Entra {
            tenant_id: "2222".into(),
            status: 400,
            error: error.into(),
            class: classify(400, error, &codes),
            codes,
            consent_url: consent.map(str::to_owned),
            retry_after: None,
        }
    }

    #[test]
    fn display_names_code_and_consent_link() {
        let url = "https://login.microsoftonline.com/2222/adminconsent?client_id=1111";
        let e = entra("unauthorized_client", vec![700016], Some(url));
        let msg = e.to_string();
        assert!(msg.contains("AADSTS700016"), "{msg}");
        assert!(msg.contains("not consented"), "{msg}");
        assert!(msg.ends_with(url), "{msg}");
        assert_eq!(e.aadsts(), Some(700016));
        assert_eq!(e.consent_url(), Some(url));

        let e = entra("invalid_scope", vec![70011], None);
        assert!(e.to_string().contains("AADSTS70011 (invalid_scope)"));
        let e = entra("invalid_request", vec![], None);
        assert!(e.to_string().contains("HTTP 400 (invalid_request)"));
    }
}
