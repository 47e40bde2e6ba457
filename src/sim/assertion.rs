//! Client-assertion checks of the simulated token endpoint, as Entra ID makes them for
//! certificate credentials: `alg` PS256 or RS256, a registered certificate named by `x5t#S256`
//! (or legacy `x5t`), a valid signature, `aud` = the token endpoint URL, `iss` = `sub` = the
//! client id, a time window of at most 10 minutes, and a `jti` never seen before.
//!
//! The AADSTS codes are the ones Entra answers for each failure where known; all are
//! `401 invalid_client`, which the proxy treats as a credential error (not retried at once).

use http::StatusCode;

use super::entra::{err, EntraError};
use super::jwt;
use super::state::Shared;

/// Clock skew Entra tolerates on an assertion's `nbf`.
const SKEW_SECS: u64 = 300;
/// Longest assertion validity Entra accepts (`exp - nbf`).
const MAX_ASSERTION_SECS: u64 = 600;

/// Checks a client assertion presented to the token endpoint at one of `endpoint_urls`.
pub(crate) fn check(
    shared: &Shared,
    endpoint_urls: &[String],
    assertion: &str,
) -> Result<(), EntraError> {
    let client_id = &shared.config.client_id;
    let bad = |code, text: &str| err(StatusCode::UNAUTHORIZED, "invalid_client", code, text);
    let parts =
        jwt::parse(assertion).ok_or_else(|| bad(50027, "JWT token is invalid or malformed."))?;
    let alg = parts.header["alg"].as_str().unwrap_or("");
    if alg != "PS256" && alg != "RS256" {
        return Err(bad(5002738, &format!("Invalid JWT token. '{alg}' is not a supported signature algorithm. Supported signing algorithms are: 'RS256, PS256'")));
    }
    let thumb = parts.header["x5t#S256"]
        .as_str()
        .or(parts.header["x5t"].as_str())
        .unwrap_or("");
    let key = shared.lock().certs.get(thumb).cloned();
    let Some(key) = key else {
        return Err(bad(700027, &format!("Client assertion failed signature validation. (Reason - The key was not found., Thumbprint of key used by client: '{thumb}')")));
    };
    if !jwt::verify_rsa(alg, &key, parts.signing_input.as_bytes(), &parts.signature) {
        return Err(bad(700027, "Client assertion failed signature validation. (Reason - The provided signature value did not match the expected signature value.)"));
    }
    let claims = &parts.claims;
    let aud = claims["aud"].as_str().unwrap_or("");
    if !endpoint_urls.iter().any(|u| u == aud) {
        return Err(bad(
            50013,
            &format!(
                "Assertion is invalid. (Reason - the audience '{aud}' is not the token endpoint.)"
            ),
        ));
    }
    if claims["iss"].as_str() != Some(client_id) || claims["sub"].as_str() != Some(client_id) {
        return Err(bad(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        ));
    }
    let now = shared.clock.unix_secs();
    let exp = claims["exp"]
        .as_u64()
        .ok_or_else(|| bad(50027, "JWT token is invalid or malformed: no 'exp'."))?;
    let nbf = claims["nbf"]
        .as_u64()
        .or(claims["iat"].as_u64())
        .unwrap_or(now);
    if nbf > now + SKEW_SECS || exp <= now || exp.saturating_sub(nbf) > MAX_ASSERTION_SECS {
        return Err(bad(
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    let jti = claims["jti"].as_str().filter(|j| !j.is_empty());
    let jti = jti.ok_or_else(|| bad(50013, "Assertion is invalid. (Reason - no 'jti'.)"))?;
    if !shared.lock().seen_jti.insert(jti.to_owned()) {
        return Err(bad(
            50013,
            "Assertion is invalid. (Reason - the 'jti' was already used: replayed assertion.)",
        ));
    }
    Ok(())
}
