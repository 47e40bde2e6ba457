//! JSON Web Tokens as the simulator needs them: it mints its access tokens with HS256 under a
//! random per-simulator key (so only tokens it issued verify), and it verifies the RS256/PS256
//! client assertions the proxy signs with its certificate's key.
//!
//! Deliberately minimal: no general JOSE library, only the compact form and the algorithms the
//! simulated Entra ID and Defender API meet.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ring::{digest, hmac, signature};
use serde_json::Value;

/// Base64url decoding that also tolerates padding, as lenient servers do.
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Unpadded base64url.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Base64url (padded or not) to bytes.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    B64_LENIENT.decode(text).ok()
}

/// A compact JWT split into its decoded parts.
#[derive(Debug)]
pub(crate) struct Parts<'a> {
    pub(crate) header: Value,
    pub(crate) claims: Value,
    /// `base64url(header) . base64url(claims)`: the bytes the signature covers.
    pub(crate) signing_input: &'a str,
    pub(crate) signature: Vec<u8>,
}

/// Splits and decodes a compact JWT; `None` when it is not three base64url JSON parts.
pub(crate) fn parse(token: &str) -> Option<Parts<'_>> {
    let (signing_input, sig) = token.rsplit_once('.')?;
    let (header, claims) = signing_input.split_once('.')?;
    let header: Value = serde_json::from_slice(&b64url_decode(header)?).ok()?;
    let claims: Value = serde_json::from_slice(&b64url_decode(claims)?).ok()?;
    if !header.is_object() || !claims.is_object() {
        return None;
    }
    Some(Parts {
        header,
        claims,
        signing_input,
        signature: b64url_decode(sig)?,
    })
}

/// Mints an HS256 token over `claims`.
pub(crate) fn sign_hs256(key: &hmac::Key, claims: &Value) -> String {
    let header = serde_json::json!({"typ": "JWT", "alg": "HS256", "kid": "defender-proxy-sim"});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let tag = hmac::sign(key, input.as_bytes());
    format!("{input}.{}", b64url(tag.as_ref()))
}

/// The claims of `token` when it is an HS256 token whose signature verifies under `key`.
pub(crate) fn verify_hs256(key: &hmac::Key, token: &str) -> Option<Value> {
    let parts = parse(token)?;
    if parts.header.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    hmac::verify(key, parts.signing_input.as_bytes(), &parts.signature).ok()?;
    Some(parts.claims)
}

/// Verifies an RS256 or PS256 signature with an RSA public key in PKCS#1 `RSAPublicKey` DER.
/// Any other algorithm is refused.
pub(crate) fn verify_rsa(alg: &str, public_key_pkcs1: &[u8], message: &[u8], sig: &[u8]) -> bool {
    let params: &'static dyn signature::VerificationAlgorithm = match alg {
        "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        _ => return false,
    };
    signature::UnparsedPublicKey::new(params, public_key_pkcs1)
        .verify(message, sig)
        .is_ok()
}

/// `x5t#S256` of a DER certificate: base64url SHA-256.
pub(crate) fn thumbprint_s256(cert_der: &[u8]) -> String {
    b64url(digest::digest(&digest::SHA256, cert_der).as_ref())
}

/// `x5t` of a DER certificate: base64url SHA-1, which older MSAL versions still send.
pub(crate) fn thumbprint_sha1(cert_der: &[u8]) -> String {
    b64url(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, cert_der).as_ref())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hs256_round_trip_and_tamper() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let token = sign_hs256(&key, &serde_json::json!({"tid": "t"}));
        assert_eq!(verify_hs256(&key, &token).unwrap()["tid"], "t");
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"other");
        assert!(verify_hs256(&other, &token).is_none());
        let (input, _) = token.rsplit_once('.').unwrap();
        assert!(verify_hs256(&key, &format!("{input}.AAAA")).is_none());
        assert!(parse("not-a-jwt").is_none());
    }
}
