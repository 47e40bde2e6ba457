//! Reading an access token's claims without verifying it.
//!
//! The token comes straight from Entra ID over TLS, so its signature adds nothing here; the proxy
//! only needs `tid` (to refuse a token for the wrong tenant), `exp` (lifetime when
//! `expires_in` is missing), `roles` and `aud` (for `check`).

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::Deserialize;

/// base64url that accepts the padded and the unpadded form: JWTs are unpadded by the spec, but a
/// lenient reader costs nothing.
const B64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The claims the proxy reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct Claims {
    /// The tenant that issued the token.
    #[serde(default)]
    pub(crate) tid: Option<String>,
    /// Application permissions granted; missing when none are.
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    /// Expiry, seconds since the epoch.
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub(crate) exp: Option<u64>,
    /// The audience: a string, or (rarely) a list of which the first is kept.
    #[serde(default, deserialize_with = "de_aud")]
    pub(crate) aud: Option<String>,
}

/// Why a token's payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    /// Not three dot-separated parts.
    #[error("not three dot-separated parts")]
    Shape,
    /// The payload is not base64url.
    #[error("the payload is not base64url")]
    Base64,
    /// The payload is not a JSON object with the expected claim types.
    #[error("the payload is not a JSON claims object")]
    Json,
}

/// Whether `token` is made of base64url segments (`[A-Za-z0-9_-]`, none empty) separated by dots,
/// as every JWT Entra issues is. Anything else (a space, `+`, padding, a non-ASCII character) is
/// no token of Entra's: it is refused before any other look at it, so nothing downstream ever
/// meets a byte outside that alphabet.
pub(crate) fn is_base64url_jwt(token: &str) -> bool {
    token
        .split('.')
        .all(|segment| !segment.is_empty() && segment.bytes().all(is_base64url_byte))
}

fn is_base64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The last `n` characters of `s`, counted in characters: never a byte index, so no secret can
/// make it panic (std's panic message would quote the string).
pub(crate) fn last_chars(s: &str, n: usize) -> String {
    let skip = s.chars().count().saturating_sub(n);
    s.chars().skip(skip).collect()
}

/// Decode the payload (second part) of a compact JWT.
pub(crate) fn decode(jwt: &str) -> Result<Claims, ClaimsError> {
    let mut parts = jwt.split('.');
    let (Some(_header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ClaimsError::Shape);
    };
    let bytes = B64URL_LENIENT
        .decode(payload)
        .map_err(|_| ClaimsError::Base64)?;
    // The serde error is dropped on purpose: it may quote a piece of the token.
    serde_json::from_slice(&bytes).map_err(|_| ClaimsError::Json)
}

/// A number, or a string holding one (the v1 endpoint and some tokens use strings).
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum NumOrString {
    Num(u64),
    Float(f64),
    Str(String),
}

impl NumOrString {
    pub(crate) fn to_u64(&self) -> Option<u64> {
        match self {
            NumOrString::Num(n) => Some(*n),
            NumOrString::Float(f) if f.is_finite() && *f >= 0.0 => Some(*f as u64),
            NumOrString::Float(_) => None,
            NumOrString::Str(s) => s.trim().parse().ok(),
        }
    }
}

/// `Option<u64>` from a number or a numeric string; anything else is treated as absent.
pub(crate) fn de_opt_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v: Option<NumOrString> = Option::deserialize(d).or(Ok(None))?;
    Ok(v.and_then(|v| v.to_u64()))
}

fn de_aud<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    let v: Option<Aud> = Option::deserialize(d).or(Ok(None))?;
    Ok(match v {
        Some(Aud::One(s)) => Some(s),
        Some(Aud::Many(v)) => v.into_iter().next(),
        None => None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// An unsigned JWT with the given payload, as the tests' fake token sources hand out.
    pub(crate) fn fake_jwt(payload: &serde_json::Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(payload.to_string());
        format!("{header}.{body}.c2lnbmF0dXJlWFlaVw")
    }

    #[test]
    fn reads_tid_roles_exp_aud() {
        let jwt = fake_jwt(&serde_json::json!({
            "tid": "2222", "roles": ["Incident.Read.All"], "exp": 1_700_000_000u64,
            "aud": "https://api.security.microsoft.com", "other": {"x": 1}
        }));
        let c = decode(&jwt).unwrap();
        assert_eq!(c.tid.as_deref(), Some("2222"));
        assert_eq!(c.roles, vec!["Incident.Read.All".to_string()]);
        assert_eq!(c.exp, Some(1_700_000_000));
        assert_eq!(c.aud.as_deref(), Some("https://api.security.microsoft.com"));
    }

    #[test]
    fn tolerates_missing_claims_string_exp_and_aud_list() {
        let jwt = fake_jwt(&serde_json::json!({"exp": "1700000000", "aud": ["a", "b"]}));
        let c = decode(&jwt).unwrap();
        assert_eq!(c.tid, None);
        assert!(c.roles.is_empty());
        assert_eq!(c.exp, Some(1_700_000_000));
        assert_eq!(c.aud.as_deref(), Some("a"));
    }

    #[test]
    fn only_base64url_segments_pass_the_alphabet_check() {
        let jwt = fake_jwt(&serde_json::json!({"tid": "2222"}));
        assert!(is_base64url_jwt(&jwt));
        assert!(is_base64url_jwt("aZ09-_.b.c"));
        for bad in [
            format!("{jwt}é"),
            format!("{jwt}€ab"),
            format!("{jwt} x"),
            format!("{jwt}\tx"),
            format!("{jwt}=="),
            format!("{jwt}+/"),
            format!("{jwt}\u{7f}"),
            format!("é{jwt}"),
            format!("{jwt}."),
            "a..c".to_owned(),
            String::new(),
        ] {
            assert!(!is_base64url_jwt(&bad), "{bad:?}");
        }
    }

    #[test]
    fn last_chars_counts_characters_not_bytes() {
        assert_eq!(last_chars("abcdef", 4), "cdef");
        assert_eq!(last_chars("ab", 4), "ab");
        assert_eq!(last_chars("xyz€ab", 4), "z€ab");
        assert_eq!(last_chars("€€€€€", 4), "€€€€");
        assert_eq!(last_chars("", 4), "");
    }

    #[test]
    fn rejects_non_jwts() {
        assert_eq!(decode("opaque-token"), Err(ClaimsError::Shape));
        assert_eq!(decode("a.b.c.d"), Err(ClaimsError::Shape));
        assert_eq!(decode("a.!!!.c"), Err(ClaimsError::Base64));
        let not_json = format!("a.{}.c", URL_SAFE_NO_PAD.encode("[1,2]"));
        assert_eq!(decode(&not_json), Err(ClaimsError::Json));
    }
}
