//! `[[api]]`: APIs besides `[cloud]`'s, and the Microsoft APIs whose documented limits and
//! audiences are known.
//!
//! Each `[[api]]` has its own token audience (so its own token per tenant) and its own limits.
//! Those limits are an ordinary rate-limit route class (see [`super::RateLimitConfig::routes`])
//! keyed by the API's prefix, so the limiter needs no notion of "API" at all.

use std::num::NonZeroU32;

use super::{defaults, CloudPreset, Windows};

/// One `[[api]]` entry, validated.
///
/// A request picks it by its path: after the tenant prefix (or from the start, in header mode and
/// with `default_tenant`), a path that starts with `prefix` on whole segments goes to `url` with
/// the prefix removed: `/contoso/mde/api/machines` -> `{url}/api/machines` with a token for
/// `scope`. Any other path goes to `[cloud]`'s API (the one named `default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// `[a-z0-9-]+`, unique, never `default` (the name of `[cloud]`'s API in logs and metrics).
    pub name: String,
    /// `/mde`: starts with `/`, whole segments, no trailing `/`. Unique ignoring ASCII case, and
    /// never on the path of another API's prefix (`/mde` and `/mde/x` are refused together), so a
    /// path belongs to one API at most.
    pub prefix: String,
    /// Base URL: scheme and authority only (`https://api.securitycenter.microsoft.com`); plain
    /// `http` only to loopback hosts.
    pub url: http::Uri,
    /// OAuth scope of its tokens. Default `{url}/.default`, except that a regional host of a
    /// known API (`eu.api.security.microsoft.com`) gets the scope of the API itself: the regions
    /// serve one resource, so one audience.
    pub scope: String,
    /// `[api.clouds.NAME]`: where this API is in cloud profile `NAME` and its scope there. After
    /// validation every profile a tenant uses has an entry: written (kept for any configured
    /// profile), or derived for a profile in use that wrote a `cloud` preset when `url` is a
    /// well-known Microsoft host (see [`endpoint_in_cloud`]).
    pub clouds: std::collections::BTreeMap<String, ApiEndpoint>,
}

/// One API in one cloud: its base URL (scheme and authority) and the scope of its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEndpoint {
    pub url: http::Uri,
    pub scope: String,
}

impl ApiConfig {
    /// This API in cloud profile `cloud` (`None` or `default`: `[cloud]`'s, i.e. `url` and
    /// `scope`); `None` when the profile has no entry (never for a profile a validated config's
    /// tenant uses).
    pub fn endpoint(&self, cloud: Option<&str>) -> Option<(&http::Uri, &str)> {
        match cloud {
            None | Some(super::DEFAULT_PROFILE) => Some((&self.url, &self.scope)),
            Some(name) => self.clouds.get(name).map(|e| (&e.url, e.scope.as_str())),
        }
    }

    /// The rest of `path` when it lies under this API's prefix (whole segments, ASCII
    /// case-insensitive): `/api/machines` for `/MDE/api/machines`, `""` for `/mde` itself.
    pub fn strip_prefix<'a>(&self, path: &'a str) -> Option<&'a str> {
        strip_api_prefix(&self.prefix, path)
    }
}

/// The rest of `path` (a path, or path and query) when it lies under `prefix` on whole segments,
/// ASCII case-insensitively: `/api/x` for `/MDE/api/x`, `""` for `/mde`, `?q` for `/mde?q`.
/// The one matcher for API prefixes, used by the config and the hot path alike.
pub fn strip_api_prefix<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    let head = path.get(..prefix.len())?;
    let rest = &path[prefix.len()..];
    (head.eq_ignore_ascii_case(prefix)
        && (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')))
    .then_some(rest)
}

/// Microsoft APIs an `[[api]]` is recognised as by its URL's host, for their documented limits
/// (the defaults of its `per_minute`/`per_hour`) and their token audience.
///
/// Sources: Defender for Endpoint API docs (machines, alerts and machine actions: 100 calls per
/// minute and 1,500 per hour; hosts `api.securitycenter.microsoft.com`, regional
/// `api-eu.securitycenter.microsoft.com` and the like, gov `api-gcc.`/`api-gov.securitycenter.
/// microsoft.us`); Microsoft Graph security API throttling (150 requests per minute per tenant;
/// hosts `graph.microsoft.com`, `graph.microsoft.us`, `dod-graph.microsoft.us`). Collected in the
/// design notes' defender-reference.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownApi {
    /// Microsoft Defender for Endpoint: machines, alerts, machine actions, advanced queries.
    DefenderForEndpoint,
    /// The Microsoft Graph security API: incidents, alerts_v2, runHuntingQuery.
    GraphSecurity,
}

/// Domains whose every host is the Defender for Endpoint API (public and US gov clouds).
const MDE_DOMAINS: [&str; 2] = [
    "securitycenter.microsoft.com",
    "securitycenter.microsoft.us",
];
/// Graph's hosts, one per national cloud that has its own.
const GRAPH_HOSTS: [&str; 3] = [
    "graph.microsoft.com",
    "graph.microsoft.us",
    "dod-graph.microsoft.us",
];
/// API hosts that regional hosts (`eu.{host}`, `us.{host}`, ...) are variants of, audience and all.
const REGIONAL_BASES: [&str; 6] = [
    "api.security.microsoft.com",
    "api-gcc.security.microsoft.us",
    "api-gov.security.microsoft.us",
    "api.securitycenter.microsoft.com",
    "api-gcc.securitycenter.microsoft.us",
    "api-gov.securitycenter.microsoft.us",
];

impl KnownApi {
    /// The API served by `host` (any case, a trailing dot allowed), if it is a known one.
    pub fn of_host(host: &str) -> Option<KnownApi> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if MDE_DOMAINS.iter().any(|d| is_within(&host, d)) {
            Some(KnownApi::DefenderForEndpoint)
        } else if GRAPH_HOSTS.contains(&host.as_str()) {
            Some(KnownApi::GraphSecurity)
        } else {
            None
        }
    }

    /// Its documented per-tenant limits: the default windows of an `[[api]]` on its host.
    pub fn windows(self) -> Windows {
        match self {
            KnownApi::DefenderForEndpoint => Windows {
                per_minute: NonZeroU32::new(defaults::MDE_PER_MINUTE),
                per_hour: NonZeroU32::new(defaults::MDE_PER_HOUR),
                burst: None,
            },
            // Graph documents no hourly limit for the security API.
            KnownApi::GraphSecurity => Windows {
                per_minute: NonZeroU32::new(defaults::GRAPH_PER_MINUTE),
                per_hour: None,
                burst: None,
            },
        }
    }

    /// Its scope in the public cloud (for `serve --dev` and docs; an `[[api]]` derives its own
    /// from its URL).
    pub fn public_scope(self) -> &'static str {
        match self {
            KnownApi::DefenderForEndpoint => defaults::MDE_SCOPE,
            KnownApi::GraphSecurity => defaults::GRAPH_SCOPE,
        }
    }
}

/// `host` is `domain` or a host under it.
fn is_within(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|head| head.ends_with('.'))
}

/// The default scope of an API at `scheme://authority`: `{url}/.default`, with a regional host of
/// a known API (`eu.api.security.microsoft.com`, `api-eu.securitycenter.microsoft.com`) mapped to
/// that API's own host, whose audience every region accepts.
pub(crate) fn default_scope(scheme: &str, authority: &http::uri::Authority) -> String {
    let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
    match regional_base(&host) {
        Some(base) => format!("https://{base}/.default"),
        None => format!("{scheme}://{authority}/.default"),
    }
}

/// The API host `host` (lower-case) is a regional variant of: `api.security.microsoft.com` for
/// `eu.api.security.microsoft.com`, or for MDE's older `api-eu.securitycenter.microsoft.com`.
fn regional_base(host: &str) -> Option<&'static str> {
    REGIONAL_BASES.iter().copied().find(|base| {
        let dotted = host
            .strip_suffix(*base)
            .is_some_and(|head| head.ends_with('.') && !head[..head.len() - 1].contains('.'));
        let dashed = base.split_once('.').is_some_and(|(label, domain)| {
            host.strip_suffix(domain)
                .and_then(|head| head.strip_suffix('.'))
                .and_then(|head| head.strip_prefix(label))
                .is_some_and(|region| {
                    region
                        .strip_prefix('-')
                        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_lowercase()))
                })
        });
        dotted || dashed
    })
}

/// Defender for Endpoint's host in each cloud, in the order of [`CloudPreset::ALL`].
const MDE_CLOUD_HOSTS: [&str; 4] = [
    "api.securitycenter.microsoft.com",
    "api-gcc.securitycenter.microsoft.us",
    "api-gov.securitycenter.microsoft.us",
    "api-gov.securitycenter.microsoft.us",
];
/// Graph's host in each cloud (GCC uses the public one), in the order of [`CloudPreset::ALL`].
const GRAPH_CLOUD_HOSTS: [&str; 4] = [
    "graph.microsoft.com",
    "graph.microsoft.com",
    "graph.microsoft.us",
    "dod-graph.microsoft.us",
];

impl KnownApi {
    /// Its host in `preset`'s cloud (see [`CloudPreset`] for the sources).
    pub fn host_in(self, preset: CloudPreset) -> &'static str {
        let hosts = match self {
            KnownApi::DefenderForEndpoint => &MDE_CLOUD_HOSTS,
            KnownApi::GraphSecurity => &GRAPH_CLOUD_HOSTS,
        };
        hosts[cloud_index(preset)]
    }
}

fn cloud_index(preset: CloudPreset) -> usize {
    CloudPreset::ALL
        .iter()
        .position(|p| *p == preset)
        .unwrap_or_default()
}

/// The table of well-known hosts per cloud: each row one API (Defender XDR, whose hosts are
/// [`CloudPreset::api`]'s, Defender for Endpoint, Graph), each column a [`CloudPreset`].
fn cloud_hosts() -> [[&'static str; 4]; 3] {
    [
        CloudPreset::ALL.map(|p| p.api().trim_start_matches("https://")),
        CloudPreset::ALL.map(|p| KnownApi::DefenderForEndpoint.host_in(p)),
        CloudPreset::ALL.map(|p| KnownApi::GraphSecurity.host_in(p)),
    ]
}

/// Where the API at `url` (with `scope`) is in the cloud of `preset`, when `url`'s host is one of
/// a well-known Microsoft API in any cloud, or a regional variant of one: `url` and `scope`
/// themselves when that host is already `preset`'s (a regional host is kept), else
/// `https://{that API's host in preset}` with its `/.default` scope. `None` for any other host:
/// only the operator knows where that API is in another cloud.
pub(crate) fn endpoint_in_cloud(
    url: &http::Uri,
    scope: &str,
    preset: CloudPreset,
) -> Option<ApiEndpoint> {
    let host = url.host()?.trim_end_matches('.').to_ascii_lowercase();
    let base = regional_base(&host).unwrap_or(&host);
    let row = cloud_hosts().into_iter().find(|row| row.contains(&base))?;
    let wanted = row[cloud_index(preset)];
    if wanted == base {
        return Some(ApiEndpoint {
            url: url.clone(),
            scope: scope.to_owned(),
        });
    }
    Some(ApiEndpoint {
        url: format!("https://{wanted}").parse().ok()?,
        scope: format!("https://{wanted}/.default"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(url: &str) -> String {
        let uri: http::Uri = url.parse().expect("uri");
        default_scope(
            uri.scheme_str().expect("scheme"),
            uri.authority().expect("authority"),
        )
    }

    #[test]
    fn known_hosts() {
        for host in [
            "api.securitycenter.microsoft.com",
            "API-EU.securitycenter.microsoft.com",
            "eu.api.securitycenter.microsoft.com",
            "api-gcc.securitycenter.microsoft.us",
            "api-gov.securitycenter.microsoft.us.",
        ] {
            assert_eq!(
                KnownApi::of_host(host),
                Some(KnownApi::DefenderForEndpoint),
                "{host}"
            );
        }
        for host in [
            "graph.microsoft.com",
            "graph.microsoft.us",
            "dod-graph.microsoft.us",
        ] {
            assert_eq!(KnownApi::of_host(host), Some(KnownApi::GraphSecurity));
        }
        for host in [
            "api.security.microsoft.com",
            "notsecuritycenter.microsoft.com",
            "graph.microsoft.com.evil.example",
            "127.0.0.1",
        ] {
            assert_eq!(KnownApi::of_host(host), None, "{host}");
        }
    }

    #[test]
    fn default_scopes() {
        assert_eq!(
            scope("https://api.securitycenter.microsoft.com"),
            "https://api.securitycenter.microsoft.com/.default"
        );
        assert_eq!(
            scope("https://eu.api.security.microsoft.com"),
            "https://api.security.microsoft.com/.default"
        );
        assert_eq!(
            scope("https://api-uk.securitycenter.microsoft.com"),
            "https://api.securitycenter.microsoft.com/.default"
        );
        assert_eq!(
            scope("https://us.api-gov.security.microsoft.us"),
            "https://api-gov.security.microsoft.us/.default"
        );
        // Not regional variants: deeper names, and other hosts, keep their own.
        assert_eq!(
            scope("https://a.b.api.security.microsoft.com"),
            "https://a.b.api.security.microsoft.com/.default"
        );
        assert_eq!(
            scope("http://127.0.0.1:9001"),
            "http://127.0.0.1:9001/.default"
        );
        assert_eq!(
            scope("https://graph.microsoft.com"),
            "https://graph.microsoft.com/.default"
        );
    }

    #[test]
    fn endpoints_in_other_clouds() {
        use CloudPreset::{Dod, Gcc, GccHigh, Public};
        let at = |url: &str, preset| {
            let uri: http::Uri = url.parse().expect("uri");
            endpoint_in_cloud(&uri, "own-scope", preset).map(|e| (e.url.to_string(), e.scope))
        };
        let derived = |host: &str| {
            Some((
                format!("https://{host}/"),
                format!("https://{host}/.default"),
            ))
        };
        let mde = "https://api.securitycenter.microsoft.com";
        assert_eq!(at(mde, Gcc), derived("api-gcc.securitycenter.microsoft.us"));
        assert_eq!(
            at(mde, GccHigh),
            derived("api-gov.securitycenter.microsoft.us")
        );
        assert_eq!(at(mde, Dod), derived("api-gov.securitycenter.microsoft.us"));
        let graph = "https://graph.microsoft.com";
        assert_eq!(at(graph, GccHigh), derived("graph.microsoft.us"));
        assert_eq!(at(graph, Dod), derived("dod-graph.microsoft.us"));
        let xdr = "https://api.security.microsoft.com";
        for preset in [Gcc, GccHigh, Dod] {
            let host = preset.api().trim_start_matches("https://");
            assert_eq!(at(xdr, preset), derived(host), "{preset}");
        }
        // A host already in the preset's cloud is kept, with its scope: Graph in GCC, a region.
        let kept = |url: &str| Some((format!("{url}/"), "own-scope".to_owned()));
        assert_eq!(at(graph, Gcc), kept(graph));
        assert_eq!(at(mde, Public), kept(mde));
        let eu = "https://eu.api.security.microsoft.com";
        assert_eq!(at(eu, Public), kept(eu));
        assert_eq!(at(eu, GccHigh), derived("api-gov.security.microsoft.us"));
        // From a gov host the other way round.
        assert_eq!(
            at("https://graph.microsoft.us", Public),
            derived("graph.microsoft.com")
        );
        // Other hosts are nobody's to guess.
        assert_eq!(at("http://127.0.0.1:9001", GccHigh), None);
        assert_eq!(at("https://api.example.com", Public), None);
        assert_eq!(at("https://graph.microsoft.com.evil.example", Dod), None);
    }

    #[test]
    fn strip_prefix_on_whole_segments() {
        let api = ApiConfig {
            name: "mde".into(),
            prefix: "/mde".into(),
            url: http::Uri::from_static("https://api.securitycenter.microsoft.com"),
            scope: defaults::MDE_SCOPE.into(),
            clouds: Default::default(),
        };
        assert_eq!(api.strip_prefix("/mde/api/machines"), Some("/api/machines"));
        assert_eq!(api.strip_prefix("/MDE/api"), Some("/api"));
        assert_eq!(api.strip_prefix("/mde"), Some(""));
        assert_eq!(api.strip_prefix("/mdex/api"), None);
        assert_eq!(api.strip_prefix("/md"), None);
        assert_eq!(api.strip_prefix("/api/mde"), None);
        // A multi-byte character where the prefix would end is no match, and no panic.
        assert_eq!(api.strip_prefix("/mdé"), None);
    }
}
