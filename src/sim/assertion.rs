//! Client-assertion checks of the simulated token endpoint, as Entra ID makes them for
//! certificate credentials: `alg` PS256 or RS256, a certificate registered for the app named by
//! `x5t#S256` (or legacy `x5t`), a valid signature, `aud` = the token endpoint URL, `iss` =
//! `sub` = the app's client id, a time window of at most 10 minutes, and a `jti` never seen
//! before.
//!
//! Federated assertions (workload identity) are checked as Entra checks them against the app's
//! federated identity credentials: `iss` and `sub` equal to a registered pair, `aud` =
//! `api://AzureADTokenExchange`, `exp` in the future. Their signature is not checked: Entra
//! verifies it with the issuer's OIDC keys, and the simulator trusts the issuer instead (tests
//! hand it unsigned tokens; nothing here guards anything real).
//!
//! The AADSTS codes are the ones Entra answers for each failure where known; all are
//! `401 invalid_client`, which the proxy treats as a credential error (not retried at once).

use http::StatusCode;

use super::entra_error::{err, EntraError};
use super::jwt;
use super::profiles::AppRef;
use super::state::Shared;

/// Clock skew Entra tolerates on an assertion's `nbf`.
const SKEW_SECS: u64 = 300;
/// Longest assertion validity Entra accepts (`exp - nbf`).
const MAX_ASSERTION_SECS: u64 = 600;

/// The audience Entra requires of a federated token.
pub(crate) const FEDERATION_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Whether `assertion` is a JWT issued by someone other than the app itself (`client_id`): a
/// federated token rather than a certificate-signed assertion.
pub(crate) fn is_federated(assertion: &str, client_id: &str) -> bool {
    jwt::parse(assertion).is_some_and(|parts| {
        parts.claims["iss"]
            .as_str()
            .is_some_and(|iss| !iss.eq_ignore_ascii_case(client_id))
    })
}

/// The `sub` of a federated assertion, for the recorder.
pub(crate) fn subject(assertion: &str) -> Option<String> {
    jwt::parse(assertion)?.claims["sub"]
        .as_str()
        .map(str::to_owned)
}

/// Checks a federated assertion for `app` against the registered federations (see the module
/// docs); only the main app has any.
pub(crate) fn check_federated(
    shared: &Shared,
    app: AppRef<'_>,
    assertion: &str,
) -> Result<(), EntraError> {
    let bad = |code, text: &str| err(StatusCode::UNAUTHORIZED, "invalid_client", code, text);
    let parts =
        jwt::parse(assertion).ok_or_else(|| bad(50027, "JWT token is invalid or malformed."))?;
    let claims = &parts.claims;
    let iss = claims["iss"].as_str().unwrap_or("");
    let sub = claims["sub"].as_str().unwrap_or("");
    // Kubernetes writes `aud` as a list; other issuers as a string.
    let auds: Vec<&str> = match &claims["aud"] {
        serde_json::Value::String(aud) => vec![aud.as_str()],
        serde_json::Value::Array(list) => list.iter().filter_map(|a| a.as_str()).collect(),
        _ => vec![],
    };
    let known = app.main
        && shared
            .lock()
            .federations
            .contains(&(iss.to_owned(), sub.to_owned()));
    if !known {
        return Err(bad(70021, &format!("No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{}'.", auds.join(","))));
    }
    if !auds.contains(&FEDERATION_AUDIENCE) {
        return Err(bad(700212, &format!("No matching federated identity record found for presented assertion audience '{}'.", auds.join(","))));
    }
    let now = shared.clock.unix_secs();
    let exp = claims["exp"]
        .as_u64()
        .ok_or_else(|| bad(50027, "JWT token is invalid or malformed: no 'exp'."))?;
    let nbf = claims["nbf"].as_u64().unwrap_or(0);
    if exp <= now || nbf > now + SKEW_SECS {
        return Err(bad(
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    Ok(())
}

/// Checks a client assertion of the app `client_id` presented to the token endpoint at one of
/// `endpoint_urls`: signed with one of that app's certificates.
pub(crate) fn check(
    shared: &Shared,
    client_id: &str,
    endpoint_urls: &[String],
    assertion: &str,
) -> Result<(), EntraError> {
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
    let key = shared
        .lock()
        .certs
        .get(&(client_id.to_ascii_lowercase(), thumb.to_owned()))
        .cloned();
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
    let names_app = |claim: &str| {
        claims[claim]
            .as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case(client_id))
    };
    if !names_app("iss") || !names_app("sub") {
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
