//! The token as requests use it: [`AccessToken`], and `accept`, the checks every fetched token
//! passes before anything holds it (readable base64url JWT, `tid` equal to the tenant, a
//! lifetime).
//!
//! Apart from the broker (`mod.rs`) and the slot: both the cached path and `fetch_once` go
//! through `accept`, and this is the one place that turns the secret string into a header.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::claims;
use super::error::{InvalidResponse, TokenError};
use super::source::FetchedToken;

/// Longest lifetime believed (Entra issues at most about a day).
const MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// A bearer token for one tenant, ready to be put in a request.
pub struct AccessToken {
    /// `Bearer <jwt>`, marked sensitive, built once so the hot path clones cheap `Bytes`.
    authorization: HeaderValue,
    expires_at: Instant,
    tid: String,
    roles: Vec<String>,
    audience: Option<String>,
    /// The token's last 4 characters: enough to tell tokens apart in logs, useless to an attacker.
    fingerprint: String,
}

impl AccessToken {
    /// The `Authorization` header value, `Bearer <jwt>`, marked sensitive.
    pub fn authorization(&self) -> &HeaderValue {
        &self.authorization
    }

    /// When Entra says the token expires (the broker stops handing it out somewhat earlier).
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// The application permissions (`roles` claim); empty when none were granted.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// The tenant that issued the token (`tid` claim); equals the slot's tenant id.
    pub fn tid(&self) -> &str {
        &self.tid
    }

    /// The token's audience (`aud` claim), when present.
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The token's last 4 characters, for logs.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("fingerprint", &format_args!("…{}", self.fingerprint))
            .field("tid", &self.tid)
            .field("roles", &self.roles)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A fetched token that passed the checks, with what the slot needs to schedule its refresh.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) token: AccessToken,
    pub(crate) issued_at: Instant,
    pub(crate) lifetime: Duration,
    pub(crate) refresh_in: Option<Duration>,
}

/// Check a fetched token (readable JWT, `tid` equal to the tenant, a lifetime) and build the
/// [`AccessToken`]. `requested_at` is when the request was sent: counting the lifetime from there
/// errs on the safe side.
pub(crate) fn accept(
    fetched: FetchedToken,
    tenant_id: &str,
    requested_at: Instant,
) -> Result<Accepted, TokenError> {
    let invalid = |reason| TokenError::InvalidResponse {
        tenant_id: tenant_id.to_owned(),
        reason,
    };
    let raw = fetched.access_token.expose_secret();
    // First, so that everything below (the header, the fingerprint, any log) only ever meets
    // base64url and dots.
    if !claims::is_base64url_jwt(raw) {
        return Err(invalid(InvalidResponse::NotBase64url));
    }
    let claims = claims::decode(raw).map_err(|e| invalid(e.into()))?;
    let tid = claims.tid.unwrap_or_default();
    if !tid.eq_ignore_ascii_case(tenant_id) {
        return Err(TokenError::TenantMismatch {
            expected: tenant_id.to_owned(),
            got: tid,
        });
    }
    let lifetime = match (fetched.expires_in, claims.exp) {
        (Some(d), _) => d,
        (None, Some(exp)) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Duration::from_secs(exp.saturating_sub(now))
        }
        (None, None) => Duration::ZERO,
    };
    // Bounded so that instant arithmetic can never overflow, whatever the endpoint says.
    let lifetime = lifetime.min(MAX_LIFETIME);
    if lifetime.is_zero() {
        return Err(invalid(InvalidResponse::Lifetime));
    }
    // Cannot fail after the alphabet check; kept so that a future change to that check cannot
    // put an invalid header on the wire. (`HeaderValue` itself accepts obs-text, bytes >= 0x80.)
    let mut authorization = HeaderValue::try_from(format!("Bearer {raw}"))
        .map_err(|_| invalid(InvalidResponse::HeaderValue))?;
    authorization.set_sensitive(true);
    // Counted in characters, not sliced at a byte index: a slice off a character boundary
    // panics, and the panic message quotes the token.
    let fingerprint = claims::last_chars(raw, 4);
    let token = AccessToken {
        authorization,
        expires_at: requested_at + lifetime,
        tid,
        roles: claims.roles,
        audience: claims.aud,
        fingerprint,
    };
    Ok(Accepted {
        token,
        issued_at: requested_at,
        lifetime,
        refresh_in: fetched.refresh_in.map(|d| d.min(lifetime)),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use claims::tests::fake_jwt;
    use secrecy::SecretString;

    fn fetched(payload: serde_json::Value, expires_in: Option<u64>) -> FetchedToken {
        FetchedToken {
            access_token: SecretString::from(fake_jwt(&payload)),
            expires_in: expires_in.map(Duration::from_secs),
            refresh_in: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn accept_checks_tid_case_insensitively() {
        let now = Instant::now();
        let a = accept(
            fetched(
                serde_json::json!({"tid": "ABCD", "roles": ["R"]}),
                Some(3600),
            ),
            "abcd",
            now,
        )
        .unwrap();
        assert_eq!(a.token.expires_at(), now + Duration::from_secs(3600));
        assert_eq!(a.token.roles(), ["R".to_string()]);
        assert!(a.token.authorization().is_sensitive());
        assert_eq!(a.token.fingerprint().len(), 4);
        let debug = format!("{:?}", a.token);
        assert!(
            !debug.contains(a.token.authorization().to_str().unwrap()),
            "{debug}"
        );

        let err = accept(
            fetched(serde_json::json!({"tid": "other"}), Some(3600)),
            "abcd",
            now,
        )
        .unwrap_err();
        assert!(matches!(err, TokenError::TenantMismatch { ref got, .. } if got == "other"));
        let err = accept(fetched(serde_json::json!({}), Some(3600)), "abcd", now).unwrap_err();
        assert!(matches!(err, TokenError::TenantMismatch { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn accept_refuses_tokens_that_are_not_base64url_jwts() {
        let jwt = fake_jwt(&serde_json::json!({"tid": "t"}));
        // Multi-byte characters at the end (the fingerprint's 4 characters would cut `€`), in
        // the payload, spaces, tabs, padding, standard base64, DEL, an empty segment.
        for suffix in ["€ab", "é", "€", " x", "\tx", "==", "+/", "\u{7f}", "."] {
            let bad = FetchedToken {
                access_token: SecretString::from(format!("{jwt}{suffix}")),
                expires_in: Some(Duration::from_secs(3600)),
                refresh_in: None,
            };
            let err = accept(bad, "t", Instant::now()).unwrap_err();
            assert!(
                matches!(
                    err,
                    TokenError::InvalidResponse {
                        reason: InvalidResponse::NotBase64url,
                        ..
                    }
                ),
                "{suffix:?}: {err:?}"
            );
            let shown = format!("{err} {err:?}");
            let header = jwt.split('.').next().unwrap();
            assert!(!shown.contains(header), "{shown}");
        }
        let in_payload = jwt.replacen('.', ".é", 1);
        let err = accept(
            FetchedToken {
                access_token: SecretString::from(in_payload),
                expires_in: Some(Duration::from_secs(3600)),
                refresh_in: None,
            },
            "t",
            Instant::now(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("base64url"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn lifetime_falls_back_to_exp_claim() {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1000;
        let a = accept(
            fetched(serde_json::json!({"tid": "t", "exp": exp}), None),
            "t",
            Instant::now(),
        )
        .unwrap();
        assert!(a.lifetime > Duration::from_secs(990) && a.lifetime <= Duration::from_secs(1000));
        let err = accept(
            fetched(serde_json::json!({"tid": "t"}), None),
            "t",
            Instant::now(),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            TokenError::InvalidResponse {
                reason: InvalidResponse::Lifetime,
                ..
            }
        ));
    }
}
