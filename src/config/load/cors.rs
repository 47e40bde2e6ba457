//! `[cors]`: which browser origins may call the proxy, each normalized as browsers send it.
//!
//! Apart from `inbound.rs` (clients and the audit log), which had grown past 500 lines: origin
//! parsing is a concern of its own, with its own tests.

use std::time::Duration;

use http::uri::Authority;

use super::cloud::is_loopback_host;
use super::Validator;
use crate::config::raw::RawCors;
use crate::config::{defaults, CorsConfig};

impl Validator<'_> {
    /// `[cors]`; nothing allowed when absent.
    pub(super) fn cors(&mut self, raw: Option<RawCors>) -> Option<CorsConfig> {
        let Some(raw) = raw else {
            return Some(CorsConfig {
                allowed_origins: Vec::new(),
                max_age: defaults::CORS_MAX_AGE,
            });
        };
        let mut origins: Vec<String> = Vec::new();
        let mut ok = true;
        for (i, value) in raw.allowed_origins.unwrap_or_default().iter().enumerate() {
            match origin(value) {
                Ok(origin) => {
                    if !origins.contains(&origin) {
                        origins.push(origin);
                    }
                }
                Err(message) => {
                    self.problem(&format!("cors.allowed_origins[{i}]"), message);
                    ok = false;
                }
            }
        }
        // Zero is allowed here (unlike timeouts): browsers then preflight every request.
        let max_age = match raw.max_age {
            None => Some(defaults::CORS_MAX_AGE),
            Some(value) => match humantime::parse_duration(&value) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.problem(
                        "cors.max_age",
                        format!("`{value}` is not a duration like \"10m\" or \"1h\": {e}"),
                    );
                    None
                }
            },
        };
        let max_age: Duration = max_age?;
        ok.then_some(CorsConfig {
            allowed_origins: origins,
            max_age,
        })
    }
}

/// An exact browser origin, normalized as browsers send it: lower-case scheme and host, no
/// default port. `*` is refused: requests carry client keys, and a wildcard would hand them to
/// any page.
fn origin(value: &str) -> Result<String, String> {
    let like = "an origin is scheme://host[:port], like https://dashboards.example.com";
    if value == "*" {
        return Err(
            "`*` is not allowed: requests carry client credentials, so every origin must be \
             listed by name"
                .to_owned(),
        );
    }
    if value.eq_ignore_ascii_case("null") {
        return Err(
            "`null` is the origin of sandboxed frames and local files: anyone can send it"
                .to_owned(),
        );
    }
    let Some((scheme, rest)) = value.split_once("://") else {
        return Err(format!("`{value}` is not an origin: {like}"));
    };
    let scheme = scheme.to_ascii_lowercase();
    if rest.contains('*') {
        return Err(format!(
            "`{value}`: wildcards are not allowed; list each origin"
        ));
    }
    if let Some(slash) = rest.find('/') {
        return Err(if slash + 1 == rest.len() {
            format!("`{value}` must not end with '/': {like}")
        } else {
            format!("`{value}` must not have a path: {like}")
        });
    }
    if rest.contains(['?', '#']) {
        return Err(format!(
            "`{value}` must not have a query or fragment: {like}"
        ));
    }
    if rest.contains('@') {
        return Err(format!("`{value}` must not contain user information"));
    }
    let authority: Authority = rest
        .parse()
        .map_err(|_| format!("`{value}` is not an origin: {like}"))?;
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() {
        return Err(format!("`{value}` has no host: {like}"));
    }
    // `Authority::port` is `None` for a port that is not a u16 too: anything after the host must
    // have been a port.
    let port = authority.port_u16();
    if port.is_none() && authority.as_str().len() != authority.host().len() {
        return Err(format!("`{value}` has an invalid port"));
    }
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" if is_loopback_host(&host) => 80,
        "http" => {
            return Err(format!(
                "`{value}` must be https:// (plain http is only allowed for loopback hosts)"
            ))
        }
        _ => return Err(format!("`{value}` must be an https:// origin")),
    };
    Ok(match port {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod unit {
    use super::origin;

    #[test]
    fn origins_are_normalized() {
        for (written, stored) in [
            ("https://Dash.Example.COM", "https://dash.example.com"),
            ("HTTPS://dash.example.com:443", "https://dash.example.com"),
            (
                "https://dash.example.com:8443",
                "https://dash.example.com:8443",
            ),
            ("http://localhost:3000", "http://localhost:3000"),
            ("http://127.0.0.1", "http://127.0.0.1"),
            ("http://[::1]:3000", "http://[::1]:3000"),
        ] {
            assert_eq!(origin(written).as_deref(), Ok(stored), "{written}");
        }
    }
}
