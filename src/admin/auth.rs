//! Who may use the admin API: `Authorization: Bearer <admin key>`, its SHA-256 compared in
//! constant time with `[admin] key_sha256`. Reading needs the key only off loopback; writing
//! always does. The key is never logged: the audit log names the caller by the first hex digits
//! of the configured hash.

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use subtle::ConstantTimeEq as _;

use crate::body::ResponseBody;
use crate::config::AdminConfig;
use crate::error::json_error_response;

/// Hex digits of the key hash that name the admin key in the audit log.
const WHO_DIGITS: usize = 8;

/// Who made an admin request, as the audit log writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Caller(pub(super) String);

/// The caller of a request to the admin API, or the 401 to answer. `write`: the request
/// changes something.
pub(super) fn authorize(
    admin: &AdminConfig,
    headers: &HeaderMap,
    write: bool,
) -> Result<Caller, Box<Response<ResponseBody>>> {
    let loopback = admin.addr.ip().to_canonical().is_loopback();
    let presented = match bearer(headers) {
        Ok(presented) => presented,
        Err(()) => {
            return Err(unauthorized(
                "send the admin key as Authorization: Bearer <key>",
            ))
        }
    };
    match (&admin.key_sha256, presented) {
        (Some(expected), Some(key)) => {
            let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
            if bool::from(digest.as_ref().ct_eq(expected.as_slice())) {
                let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
                Ok(Caller(format!("admin key sha256:{}", &hex[..WHO_DIGITS])))
            } else {
                Err(unauthorized(
                    "the admin key is not the one [admin] key_sha256 names",
                ))
            }
        }
        (None, Some(_)) => Err(unauthorized(
            "no admin key is configured: set [admin] key_sha256 (`defender-proxy hash-key`)",
        )),
        (_, None) if loopback && !write => Ok(Caller("loopback".to_owned())),
        (Some(_), None) => Err(unauthorized(
            "the admin API needs the admin key as Authorization: Bearer <key>",
        )),
        (None, None) if loopback => Err(unauthorized(
            "changes need an admin key: set [admin] key_sha256 (`defender-proxy hash-key`) and \
             send the key as Authorization: Bearer <key>",
        )),
        (None, None) => Err(unauthorized(
            "the admin API off loopback needs [admin] key_sha256 and the key as Authorization: \
             Bearer <key>",
        )),
    }
}

/// The bearer token, `None` without an Authorization header; `Err` for any other scheme, a
/// repeated header or a value that is not text.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ()> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    let value = value.to_str().map_err(|_| ())?;
    let (scheme, key) = value.split_once(' ').ok_or(())?;
    if !scheme.eq_ignore_ascii_case("bearer") || key.trim().is_empty() {
        return Err(());
    }
    Ok(Some(key.trim()))
}

fn unauthorized(message: &str) -> Box<Response<ResponseBody>> {
    let mut response = json_error_response(StatusCode::UNAUTHORIZED, "Unauthorized", message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"defender-proxy admin\""),
    );
    Box::new(response)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn admin(addr: &str, key: Option<&str>) -> AdminConfig {
        AdminConfig {
            addr: addr.parse().unwrap(),
            key_sha256: key.map(|k| {
                let d = ring::digest::digest(&ring::digest::SHA256, k.as_bytes());
                d.as_ref().try_into().unwrap()
            }),
            allow_unauthenticated: false,
        }
    }

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_key_is_needed_for_writes_and_off_loopback() {
        let local = admin("127.0.0.1:9090", Some("k1"));
        let remote = admin("0.0.0.0:9090", Some("k1"));
        let good = headers(Some("Bearer k1"));
        let who = authorize(&local, &good, true).unwrap();
        assert!(who.0.starts_with("admin key sha256:"), "{who:?}");
        assert!(!who.0.contains("k1"));
        assert!(authorize(&remote, &good, false).is_ok());
        assert!(authorize(&local, &headers(None), false).is_ok());
        for (config, h, write) in [
            (&local, headers(None), true),
            (&remote, headers(None), false),
            (&local, headers(Some("Bearer k2")), false),
            (&local, headers(Some("Basic k1")), true),
            (&local, headers(Some("Bearer ")), true),
        ] {
            let refused = authorize(config, &h, write).unwrap_err();
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
            assert!(refused.headers().contains_key(header::WWW_AUTHENTICATE));
        }
        let keyless = admin("127.0.0.1:9090", None);
        assert!(authorize(&keyless, &headers(None), false).is_ok());
        assert!(authorize(&keyless, &headers(None), true).is_err());
        assert!(authorize(&admin("10.0.0.1:9090", None), &headers(None), false).is_err());
    }
}
