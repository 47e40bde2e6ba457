//! Where tokens come from and go to: `[cloud]` preset, URLs and trust roots, `[upstream]`
//! timeouts.
//!
//! A `cloud = ...` preset only supplies defaults: `authority`, `api` and `scope` written next to it
//! win, so a regional API host or a corrected gov-cloud scope needs no new preset. `[cloud]` and
//! every `[clouds.NAME]` profile go through the same [`Validator::cloud`].

use std::time::Duration;

use http::Uri;

use super::app::count_certificates;
use super::{is_loopback_ip, Validator};
use crate::config::raw::{RawCloud, RawUpstream};
use crate::config::{defaults, CloudConfig, CloudPreset, TokenEndpointVersion, UpstreamConfig};

impl Validator<'_> {
    /// `[cloud]` (`at` = `cloud`) or a `[clouds.NAME]` profile (`at` = `clouds.NAME`, `named`),
    /// problems on its own keys. A profile must say which cloud it is: its preset or its
    /// authority (the public cloud is `[cloud]`'s default, never a profile's silent one).
    pub(super) fn cloud(&mut self, at: &str, raw: RawCloud, named: bool) -> Option<CloudConfig> {
        let key = |name: &str| format!("{at}.{name}");
        let unnamed = named && raw.cloud.is_none() && raw.authority.is_none();
        if unnamed {
            self.problem(
                at,
                "a cloud profile must name its preset or its authority: cloud = \"gcc\", \
                 \"gcc-high\", \"dod\" or \"public\", or authority = \"https://...\"",
            );
        }
        // An unknown preset is reported, and the public cloud's defaults stand in for it so the
        // other keys are still checked in the same run.
        let preset = self.cloud_preset(&key("cloud"), raw.cloud.as_deref());
        let hosts = preset.unwrap_or_default();
        let authority = raw.authority.as_deref().unwrap_or(hosts.authority());
        let authority = self.base_url(&key("authority"), authority);
        let api = raw.api.as_deref().unwrap_or(hosts.api());
        let api = self.base_url(&key("api"), api);
        let scope = raw.scope.unwrap_or_else(|| hosts.scope().to_owned());
        if scope.trim().is_empty() {
            self.problem(&key("scope"), "must not be empty");
        }
        let token_endpoint = match raw.token_endpoint.as_deref() {
            None | Some("v2") => Some(TokenEndpointVersion::V2),
            Some("v1") => Some(TokenEndpointVersion::V1),
            Some(other) => {
                self.problem(
                    &key("token_endpoint"),
                    format!("`{other}` is neither \"v2\" nor \"v1\""),
                );
                None
            }
        };
        let ca = raw.ca.and_then(|ca| {
            let path = self.resolve_watched(&ca);
            match count_certificates(&path) {
                Ok(_) => Some(path),
                Err(message) => {
                    self.problem(&key("ca"), message);
                    None
                }
            }
        });
        if let (Some(preset), true) = (preset, raw.cloud.is_some()) {
            self.warn_of_foreign_hosts(at, preset, [&authority, &api]);
        }
        // `Uri` renders an empty path as "/": keep the documented "no trailing slash" form so
        // `{authority}/{tenant}/...` joins cleanly.
        let authority = authority?.to_string().trim_end_matches('/').to_owned();
        if unnamed {
            return None;
        }
        Some(CloudConfig {
            cloud: preset?,
            authority,
            api: api?,
            scope: scope.trim().to_owned(),
            token_endpoint: token_endpoint?,
            ca,
        })
    }

    /// `cloud = ...` at `key`: a preset's name (`None`: public).
    fn cloud_preset(&mut self, key: &str, name: Option<&str>) -> Option<CloudPreset> {
        let Some(name) = name else {
            return Some(CloudPreset::Public);
        };
        CloudPreset::from_name(name).or_else(|| {
            let known: Vec<String> = CloudPreset::ALL
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect();
            self.problem(
                key,
                format!("`{name}` is not a cloud; use one of {}", known.join(", ")),
            );
            None
        })
    }

    /// Warns of an `authority` or `api` (as `[authority, api]`) on a host of another cloud than
    /// the written `preset`.
    fn warn_of_foreign_hosts(&mut self, at: &str, preset: CloudPreset, urls: [&Option<Uri>; 2]) {
        for (name, url) in ["authority", "api"].into_iter().zip(urls) {
            let host = url.as_ref().and_then(|u| u.host());
            if let Some(other) = host.and_then(|h| foreign_cloud(h, preset)) {
                self.warnings.push(format!(
                    "{at}.{name}: {} is a host of the {other} cloud, but cloud = \"{preset}\"; \
                     tokens don't cross clouds",
                    host.unwrap_or_default()
                ));
            }
        }
    }

    /// A base URL: scheme and host, no path or query. https, or http to a loopback host only,
    /// since a token sent over plain http elsewhere is a token given away.
    pub(super) fn base_url(&mut self, key: &str, value: &str) -> Option<Uri> {
        let result = (|| {
            let uri: Uri = value
                .parse()
                .map_err(|e| format!("`{value}` is not a URL: {e}"))?;
            let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
                return Err(format!(
                    "`{value}` is not an absolute URL like https://host"
                ));
            };
            if authority.as_str().contains('@') {
                return Err(format!("`{value}` must not contain user information"));
            }
            if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
                return Err(format!(
                    "`{value}` must be scheme and host only, without a path or query"
                ));
            }
            match scheme {
                "https" => {}
                "http" if is_loopback_host(authority.host()) => {}
                "http" => {
                    return Err(
                        "must be https:// (plain http is only allowed for loopback hosts)".into(),
                    )
                }
                _ => return Err(format!("`{value}` must be an https:// URL")),
            }
            format!("{scheme}://{authority}")
                .parse::<Uri>()
                .map_err(|e| format!("`{value}` is not a URL: {e}"))
        })();
        result.map_err(|message| self.problem(key, message)).ok()
    }

    pub(super) fn upstream(&mut self, raw: RawUpstream) -> Option<UpstreamConfig> {
        let connect = self.duration(
            "upstream.connect_timeout",
            raw.connect_timeout,
            defaults::CONNECT_TIMEOUT,
        );
        let response = self.duration(
            "upstream.response_timeout",
            raw.response_timeout,
            defaults::RESPONSE_TIMEOUT,
        );
        let body_idle = self.duration(
            "upstream.body_idle_timeout",
            raw.body_idle_timeout,
            defaults::BODY_IDLE_TIMEOUT,
        );
        Some(UpstreamConfig {
            connect_timeout: connect?,
            response_timeout: response?,
            body_idle_timeout: body_idle?,
        })
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        value: Option<String>,
        default: Duration,
    ) -> Option<Duration> {
        let Some(value) = value else {
            return Some(default);
        };
        match humantime::parse_duration(&value) {
            Ok(d) if d.is_zero() => self.problem(key, "must be greater than zero"),
            Ok(d) => return Some(d),
            Err(e) => self.problem(
                key,
                format!("`{value}` is not a duration like \"10s\" or \"5m\": {e}"),
            ),
        }
        None
    }
}

/// The cloud a well-known Microsoft `host` belongs to, when `preset` is not among its owners: a
/// preset with a host of another cloud written over it is almost certainly a mistake (tokens
/// don't cross clouds). Hosts shared by clouds (GCC uses the public Entra ID; GCC High and DoD
/// share theirs) belong to each; regional API hosts (`eu.api.security.microsoft.com`) to their
/// cloud's.
fn foreign_cloud(host: &str, preset: CloudPreset) -> Option<CloudPreset> {
    let host = host.to_ascii_lowercase();
    let owns = |p: &CloudPreset| {
        [p.authority(), p.api()].iter().any(|url| {
            let known = url.trim_start_matches("https://");
            host == known || host.ends_with(&format!(".{known}"))
        })
    };
    let owners: Vec<CloudPreset> = CloudPreset::ALL.into_iter().filter(owns).collect();
    match owners.first() {
        Some(&owner) if !owners.contains(&preset) => Some(owner),
        _ => None,
    }
}

pub(super) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse().is_ok_and(is_loopback_ip)
}
