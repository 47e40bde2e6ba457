//! `[api.clouds.NAME]`: where an `[[api]]` is in a cloud profile, and the endpoints derived for
//! the profiles no table names.
//!
//! Every cloud profile a `[[tenant]]` uses needs an endpoint in every `[[api]]`, or that tenant's
//! requests to the API would have nowhere to go but another cloud's host. An endpoint is written
//! (`[api.clouds.gov] url = ...`, `scope` defaulting as the API's own), or derived from the API's
//! URL when that is a well-known Microsoft host and the profile wrote a `cloud` preset (see
//! [`endpoint_in_cloud`]). A profile that gives only an `authority` is a cloud no preset
//! describes (a sovereign one, a simulator), so nothing is derived for it: guessing the public
//! host there would send its tokens across clouds.

use std::collections::BTreeMap;

use http::Uri;

use super::profiles::Profiles;
use super::Validator;
use crate::config::api::endpoint_in_cloud;
use crate::config::raw::{RawApiEndpoint, RawTenant};
use crate::config::{ApiEndpoint, CloudPreset, DEFAULT_PROFILE};

/// The cloud profiles as the `[[api]]` checks need them.
#[derive(Debug, Default)]
pub(super) struct CloudUse {
    /// Every `[clouds.NAME]` name as written, valid or not (a table naming one that has a problem
    /// of its own gets no second one).
    pub(super) names: Vec<String>,
    /// Each valid profile some tenant uses: the preset it wrote (`None`: it gave only an
    /// authority), and the tenants on it (their names, or `tenant[i]`).
    pub(super) used: BTreeMap<String, (Option<CloudPreset>, Vec<String>)>,
}

impl CloudUse {
    /// The profiles of `profiles` that `tenants` (as written) use.
    pub(super) fn new(profiles: &Profiles, tenants: &[RawTenant]) -> Self {
        let Profiles {
            clouds,
            presets,
            cloud_names,
            ..
        } = profiles;
        let mut used: BTreeMap<String, (Option<CloudPreset>, Vec<String>)> = BTreeMap::new();
        for (i, tenant) in tenants.iter().enumerate() {
            let Some(cloud) = tenant.cloud.as_deref().filter(|c| clouds.contains_key(*c)) else {
                continue;
            };
            let label = tenant
                .name
                .clone()
                .unwrap_or_else(|| format!("tenant[{i}]"));
            used.entry(cloud.to_owned())
                .or_insert_with(|| (presets.get(cloud).copied(), Vec::new()))
                .1
                .push(label);
        }
        CloudUse {
            names: cloud_names.clone(),
            used,
        }
    }
}

impl Validator<'_> {
    /// The `[api.clouds.NAME]` tables of the `[[api]]` at `at`, and an endpoint derived from its
    /// `endpoint` (URL and scope, when valid) for each profile in use that none names; a problem
    /// for each profile in use that still has none.
    pub(super) fn api_clouds(
        &mut self,
        at: &str,
        raw: BTreeMap<String, RawApiEndpoint>,
        endpoint: Option<(&Uri, &str)>,
        clouds: &CloudUse,
    ) -> BTreeMap<String, ApiEndpoint> {
        let mut out = BTreeMap::new();
        for (name, written) in raw {
            let key = format!("{at}.clouds.{name}");
            let (url, scope) = self.url_and_scope(
                &key,
                written.url,
                written.scope,
                &format!("is required: this API's base URL in cloud profile `{name}`"),
            );
            if name == DEFAULT_PROFILE {
                self.problem(
                    &key,
                    "`default` is [cloud]: this API's own url and scope are its endpoint there",
                );
            } else if !clouds.names.contains(&name) {
                self.problem(&key, unknown_profile(&name, &clouds.names));
            } else if let (Some(url), Some(scope)) = (url, scope) {
                out.insert(name, ApiEndpoint { url, scope });
            }
        }
        let Some((url, scope)) = endpoint else {
            return out;
        };
        for (name, (preset, tenants)) in &clouds.used {
            if out.contains_key(name) {
                continue;
            }
            match preset.and_then(|p| endpoint_in_cloud(url, scope, p)) {
                Some(derived) => {
                    out.insert(name.clone(), derived);
                }
                None => {
                    // On the `[[api]]`'s line: `{at}.clouds` may be another profile's table.
                    let offset = self.offset_of(at);
                    let message = missing_endpoint(name, *preset, url, tenants);
                    self.push(format!("{at}.clouds.{name}"), offset, message);
                }
            }
        }
        out
    }
}

fn unknown_profile(name: &str, names: &[String]) -> String {
    if names.is_empty() {
        format!("no cloud profile `{name}`: there is no [clouds.NAME] table")
    } else {
        let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        format!(
            "no cloud profile `{name}`; configured: {} ([clouds.NAME])",
            names.join(", ")
        )
    }
}

/// Why the API at `url` has no endpoint in profile `name`, which `tenants` use.
fn missing_endpoint(
    name: &str,
    preset: Option<CloudPreset>,
    url: &Uri,
    tenants: &[String],
) -> String {
    let users = match tenants {
        [one] => format!("tenant `{one}` uses"),
        [first, second] => format!("tenants `{first}` and `{second}` use"),
        [first, rest @ ..] => format!("tenants `{first}` and {} more use", rest.len()),
        [] => "a tenant uses".to_owned(),
    };
    let host = url.host().unwrap_or_default();
    let why = match preset {
        None => format!("[clouds.{name}] names no `cloud` preset to derive one from"),
        Some(preset) => format!("{host} is no Microsoft API host whose {preset} host is known"),
    };
    format!(
        "no URL in cloud profile `{name}`, which {users}, and {why}: add [api.clouds.{name}] \
         with url = \"https://...\" after this [[api]]"
    )
}
