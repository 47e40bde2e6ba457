//! Why no token came back, in the words of `check`'s report: shared by the tenant's main token
//! and its Graph hunting token.

use std::error::Error as _;

use crate::token::{aadsts_meaning, ErrorClass, TokenError};

/// Why no token came back, as reported.
pub(crate) struct Failure {
    /// `Some(false)` for a token naming another tenant; `None` otherwise.
    pub(crate) tid_ok: Option<bool>,
    pub(crate) tid: Option<String>,
    pub(crate) aadsts: Option<u32>,
    pub(crate) meaning: Option<String>,
    pub(crate) problem: String,
    pub(crate) consent_url: Option<String>,
}

impl Failure {
    /// Why no token came back for `tenant_id`: the AADSTS code and its meaning, the consent link
    /// for consent errors, a `tid` mismatch, or the error's own (secret-free) description and
    /// causes.
    pub(crate) fn of(error: &TokenError, tenant_id: &str) -> Failure {
        let mut failure = Failure {
            tid_ok: None,
            tid: None,
            aadsts: None,
            meaning: None,
            problem: String::new(),
            consent_url: None,
        };
        match error {
            TokenError::TenantMismatch { got, .. } => {
                failure.tid_ok = Some(false);
                failure.tid = Some(got.clone());
                failure.problem = if got.is_empty() {
                    "tid mismatch: the token has no tid claim; not used".to_owned()
                } else {
                    format!("tid mismatch: the token names tenant {got}; not used")
                };
            }
            TokenError::Entra {
                error: oauth_error,
                codes,
                status,
                ..
            } => {
                failure.aadsts = codes.first().copied();
                failure.meaning = failure.aadsts.and_then(aadsts_meaning).map(str::to_owned);
                failure.problem = match (failure.aadsts, &failure.meaning) {
                    (Some(code), Some(meaning)) => format!("AADSTS{code}: {meaning}"),
                    (Some(code), None) => format!("AADSTS{code}: {oauth_error}"),
                    (None, _) => format!("HTTP {status} from the token endpoint: {oauth_error}"),
                };
                if error.class() == ErrorClass::Transient {
                    failure.problem.push_str(" (temporary: try again)");
                }
                failure.consent_url = error.consent_url().map(str::to_owned);
            }
            _ => {
                // The causes (connection refused, DNS, TLS) are what an operator needs here; they
                // come from the HTTP stack and hold nothing secret.
                let text = error.to_string();
                // The line already names the tenant.
                let prefix = format!("token request for tenant {tenant_id} failed: ");
                let mut problem = text.strip_prefix(&prefix).unwrap_or(&text).to_owned();
                let mut source = error.source();
                while let Some(cause) = source {
                    problem.push_str(": ");
                    problem.push_str(&cause.to_string());
                    source = cause.source();
                }
                failure.problem = problem;
            }
        }
        failure
    }
}
