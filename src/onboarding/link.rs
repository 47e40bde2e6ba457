//! The admin-consent links `consent-url` prints: each configured tenant's (through
//! [`crate::config::CloudConfig::consent_url`]), and the onboarding link for a tenant to be
//! (`--new NAME`), which carries `redirect_uri` and a signed `state` so that the callback knows
//! whom the consent was for.

use std::time::SystemTime;

use super::state::{self, Invite, StateKey};
use crate::config::{tenant_name_problem, Config, DEFAULT_PROFILE};

/// What `consent-url` is asked for.
#[derive(Debug, Clone, Copy)]
pub enum Wanted<'a> {
    /// Each configured tenant's link, or only the one named's.
    Tenants(Option<&'a str>),
    /// The onboarding link of a tenant to be: its name, app and cloud (`None`: `[app]`,
    /// `[cloud]`).
    New {
        name: &'a str,
        app: Option<&'a str>,
        cloud: Option<&'a str>,
    },
}

impl<'a> Wanted<'a> {
    /// From `consent-url`'s flags: `--new NAME [--app] [--cloud]`, else `[--tenant]`.
    pub fn of(
        tenant: Option<&'a str>,
        new: Option<&'a str>,
        app: Option<&'a str>,
        cloud: Option<&'a str>,
    ) -> Self {
        match new {
            Some(name) => Wanted::New { name, app, cloud },
            None => Wanted::Tenants(tenant),
        }
    }
}

/// The lines `consent-url` prints for `wanted`, a state made at `now`.
pub fn consent_links(
    config: &Config,
    wanted: Wanted<'_>,
    now: SystemTime,
) -> Result<Vec<String>, LinkError> {
    match wanted {
        Wanted::New { name, app, cloud } => {
            new_tenant_link(config, name, app, cloud, now).map(|link| vec![link])
        }
        Wanted::Tenants(only) => {
            let lines = tenant_links(config, only);
            match (lines.is_empty(), only) {
                (true, Some(name)) => Err(LinkError::NoTenant(name.to_owned())),
                (true, None) => Err(LinkError::NoTenants),
                (false, _) => Ok(lines),
            }
        }
    }
}

/// Why no link could be made; each is a usage or config problem (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("no tenant named '{0}'")]
    NoTenant(String),
    #[error("no tenants are configured")]
    NoTenants,
    #[error(
        "the config has no [onboarding]: set addr, redirect_uri and state_key there (and \
         [tenants] file) to onboard tenants by consent"
    )]
    NoOnboarding,
    #[error("`{name}` is no tenant name: {problem}")]
    BadName { name: String, problem: String },
    #[error("`{0}` is already a tenant")]
    Taken(String),
    #[error("no app named `{0}` in the config ([apps.{0}], or `default` for [app])")]
    UnknownApp(String),
    #[error("no cloud named `{0}` in the config ([clouds.{0}], or `default` for [cloud])")]
    UnknownCloud(String),
    /// A name longer than the state's format holds (255 bytes).
    #[error("{0}")]
    TooLong(String),
}

/// One line per configured tenant (the one named, or all): name, consent link, app and cloud
/// names, tab-separated.
pub fn tenant_links(config: &Config, only: Option<&str>) -> Vec<String> {
    config
        .tenants
        .iter()
        .filter(|t| only.is_none_or(|n| n == t.name))
        .map(|t| {
            // The tenant's own app on its own cloud's authority.
            let (app_name, app) = config.app_of(t);
            let (cloud_name, cloud) = config.cloud_of(t);
            let link = cloud.consent_url(&t.id, &app.client_id);
            format!("{}\t{link}\t{app_name}\t{cloud_name}", t.name)
        })
        .collect()
}

/// The admin-consent link that onboards `name` on `app` in `cloud` (config names; `None`:
/// `[app]`, `[cloud]`), its state issued at `now`. Any organisation's admin may open it (the
/// tenant is `organizations`); the callback learns which one consented from Entra ID and
/// believes it only once a token for it is issued.
pub fn new_tenant_link(
    config: &Config,
    name: &str,
    app: Option<&str>,
    cloud: Option<&str>,
    now: SystemTime,
) -> Result<String, LinkError> {
    let onboarding = config.onboarding.as_ref().ok_or(LinkError::NoOnboarding)?;
    if let Some(problem) = tenant_name_problem(name) {
        return Err(LinkError::BadName {
            name: name.to_owned(),
            problem,
        });
    }
    if config.tenants.iter().any(|t| t.name == name) {
        return Err(LinkError::Taken(name.to_owned()));
    }
    let app_name = app.unwrap_or(DEFAULT_PROFILE);
    let app = config
        .app_named(app_name)
        .ok_or_else(|| LinkError::UnknownApp(app_name.to_owned()))?;
    let cloud_name = cloud.unwrap_or(DEFAULT_PROFILE);
    let cloud = config
        .cloud_named(cloud_name)
        .ok_or_else(|| LinkError::UnknownCloud(cloud_name.to_owned()))?;
    let invite = Invite::new(name, app_name, cloud_name, now);
    let key = StateKey::new(&onboarding.state_key);
    let state = state::sign(&key, &invite).map_err(|e| LinkError::TooLong(e.to_string()))?;
    Ok(cloud.onboarding_consent_url(&app.client_id, &onboarding.redirect_uri, &state))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::onboarding::state::{verify, StateError};

    const ONBOARDING: &str = r#"
[onboarding]
addr = "127.0.0.1:0"
redirect_uri = "https://onboard.soc.example/consent/callback"
state_key = { env = "K" }
[tenants]
file = "/nonexistent/tenants.toml"
"#;

    fn config(onboarding: &str) -> Config {
        let text = format!(
            r#"
[app]
client_id = "11111111-1111-1111-1111-111111111111"
client_secret = {{ env = "S" }}
[apps.own]
client_id = "22222222-2222-2222-2222-222222222222"
client_secret = {{ env = "S" }}
[clouds.gov]
cloud = "gcc-high"
[[tenant]]
name = "contoso"
id = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
{onboarding}
"#
        );
        let env = |name: &str| match name {
            "K" => Some("k".repeat(32)),
            _ => Some("secret".to_owned()),
        };
        crate::config::parse_str(&text, Path::new("/nonexistent/proxy.toml"), &env).unwrap()
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn the_link_names_app_scope_redirect_and_a_state_for_the_name() {
        let config = config(ONBOARDING);
        let link = new_tenant_link(&config, "acme", Some("own"), Some("gov"), now()).unwrap();
        let (base, query) = link.split_once('?').unwrap();
        assert_eq!(
            base,
            "https://login.microsoftonline.us/organizations/v2.0/adminconsent"
        );
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("client_id"), "22222222-2222-2222-2222-222222222222");
        assert_eq!(
            get("scope"),
            "https://api-gov.security.microsoft.us/.default"
        );
        assert_eq!(
            get("redirect_uri"),
            "https://onboard.soc.example/consent/callback"
        );
        let key = StateKey::new(&config.onboarding.as_ref().unwrap().state_key);
        let invite = verify(&key, &get("state"), now(), &config).unwrap();
        assert_eq!(
            (
                invite.name.as_str(),
                invite.app.as_str(),
                invite.cloud.as_str()
            ),
            ("acme", "own", "gov")
        );
        let week = now() + state::VALIDITY;
        assert_eq!(
            verify(&key, &get("state"), week, &config),
            Err(StateError::Expired)
        );
    }

    #[test]
    fn the_defaults_are_app_and_cloud() {
        let link = new_tenant_link(&config(ONBOARDING), "acme", None, None, now()).unwrap();
        assert!(link.starts_with(
            "https://login.microsoftonline.com/organizations/v2.0/adminconsent?client_id=11111111-1111-1111-1111-111111111111&scope=https%3A%2F%2Fapi.security.microsoft.com%2F.default&redirect_uri=https%3A%2F%2Fonboard.soc.example%2Fconsent%2Fcallback&state="
        ), "{link}");
    }

    #[test]
    fn refusals() {
        let config = config(ONBOARDING);
        let link = |name, app, cloud| new_tenant_link(&config, name, app, cloud, now());
        assert_eq!(
            link("contoso", None, None),
            Err(LinkError::Taken("contoso".into()))
        );
        assert!(matches!(
            link("Acme", None, None),
            Err(LinkError::BadName { .. })
        ));
        assert!(matches!(
            link("api", None, None),
            Err(LinkError::BadName { .. })
        ));
        assert_eq!(
            link("acme", Some("nope"), None),
            Err(LinkError::UnknownApp("nope".into()))
        );
        assert_eq!(
            link("acme", None, Some("nope")),
            Err(LinkError::UnknownCloud("nope".into()))
        );
        let without = self::config("");
        assert_eq!(
            new_tenant_link(&without, "acme", None, None, now()),
            Err(LinkError::NoOnboarding)
        );
    }

    #[test]
    fn tenant_links_are_each_tenants_own() {
        let config = config("");
        let wanted = Wanted::of(None, None, None, None);
        assert_eq!(
            consent_links(&config, wanted, now()).unwrap(),
            ["contoso\thttps://login.microsoftonline.com/aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa/adminconsent?client_id=11111111-1111-1111-1111-111111111111\tdefault\tdefault"]
        );
        assert_eq!(
            consent_links(&config, Wanted::Tenants(Some("nope")), now()),
            Err(LinkError::NoTenant("nope".into()))
        );
    }
}
