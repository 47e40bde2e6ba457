//! Apps and clouds: `[app]` and `[apps.NAME]`, `[cloud]` and `[clouds.NAME]`, their names, client
//! ids unique across every app, and the `app = ...` and `cloud = ...` a `[[tenant]]` names.
//!
//! A named table is checked key for key like its default one (the same functions), its problems
//! on its own keys (`apps.acme.client_secret`, `clouds.gov.authority`).

use std::collections::{BTreeMap, HashMap};

use super::app::AppSection;
use super::Validator;
use crate::config::raw::{RawApp, RawCloud};
use crate::config::{AppConfig, CloudConfig, CloudPreset, DEFAULT_PROFILE};

/// The apps and clouds, validated.
pub(super) struct Profiles {
    /// `[app]`, `None` when it has a problem.
    pub(super) app: Option<AppConfig>,
    /// The valid `[apps.NAME]`s.
    pub(super) apps: BTreeMap<String, AppConfig>,
    pub(super) cloud: Option<CloudConfig>,
    pub(super) clouds: BTreeMap<String, CloudConfig>,
    /// Every `[apps.NAME]` and `[clouds.NAME]` name as written, valid or not: what a tenant
    /// names is checked against these, so a table with a problem of its own causes no second
    /// one at each tenant on it.
    pub(super) app_names: Vec<String>,
    pub(super) cloud_names: Vec<String>,
    /// The `cloud = ...` preset each valid profile wrote (API hosts are derived from these).
    pub(super) presets: BTreeMap<String, CloudPreset>,
}

/// What a `[[tenant]]` key refers to, for its messages.
#[derive(Clone, Copy)]
pub(super) struct Kind {
    /// The tenant's key: `app`, `cloud`.
    key: &'static str,
    /// `a configured app`, `a configured cloud profile`.
    what: &'static str,
    /// `apps`, `clouds`.
    table: &'static str,
}

pub(super) const APP: Kind = Kind {
    key: "app",
    what: "a configured app",
    table: "apps",
};
pub(super) const CLOUD: Kind = Kind {
    key: "cloud",
    what: "a configured cloud profile",
    table: "clouds",
};

impl Validator<'_> {
    pub(super) fn profiles(
        &mut self,
        app: RawApp,
        apps: BTreeMap<String, RawApp>,
        cloud: RawCloud,
        clouds: BTreeMap<String, RawCloud>,
    ) -> Profiles {
        let default_app = self.app("app", app, AppSection::Default);
        let mut client_ids = vec![("app".to_owned(), default_app.client_id.clone())];
        let app_names: Vec<String> = apps.keys().cloned().collect();
        let mut named_apps = BTreeMap::new();
        for (name, raw) in apps {
            let at = format!("apps.{name}");
            let valid = self.profile_name(&at, &name, APP);
            let parts = self.app(&at, raw, AppSection::Named);
            client_ids.push((at, parts.client_id.clone()));
            if let (true, Some(app)) = (valid, parts.config()) {
                named_apps.insert(name, app);
            }
        }
        self.unique_client_ids(client_ids);

        let default_cloud = self.cloud("cloud", cloud, false);
        let cloud_names: Vec<String> = clouds.keys().cloned().collect();
        let (mut named_clouds, mut presets) = (BTreeMap::new(), BTreeMap::new());
        for (name, raw) in clouds {
            let at = format!("clouds.{name}");
            let valid = self.profile_name(&at, &name, CLOUD);
            let wrote_preset = raw.cloud.is_some();
            if let (true, Some(cloud)) = (valid, self.cloud(&at, raw, true)) {
                if wrote_preset {
                    presets.insert(name.clone(), cloud.cloud);
                }
                named_clouds.insert(name, cloud);
            }
        }
        Profiles {
            app: default_app.config(),
            apps: named_apps,
            cloud: default_cloud,
            clouds: named_clouds,
            app_names,
            cloud_names,
            presets,
        }
    }

    /// A `[apps.NAME]` or `[clouds.NAME]` name (the table at `at`): `[a-z0-9-]+`, never
    /// `default`, the name its default table goes by.
    fn profile_name(&mut self, at: &str, name: &str, kind: Kind) -> bool {
        let problem = if name.is_empty() {
            "the name must not be empty".to_owned()
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            format!("the name `{name}` may contain only lower-case letters, digits and '-'")
        } else if name == DEFAULT_PROFILE {
            format!(
                "`{DEFAULT_PROFILE}` is the name of [{}] itself: choose another",
                kind.key
            )
        } else {
            return true;
        };
        self.problem(at, problem);
        false
    }

    /// Each app's client id (`at`, id) is another app's under no other name: one Entra ID app
    /// is one table, which all its tenants name. A repeat is reported at the later one in the
    /// file (`[app]` from the environment only counts as first).
    fn unique_client_ids(&mut self, mut ids: Vec<(String, Option<String>)>) {
        ids.sort_by_cached_key(|(at, _)| self.offset_of(&format!("{at}.client_id")));
        let mut seen: HashMap<String, String> = HashMap::new();
        for (at, id) in ids {
            let Some(id) = id else { continue };
            match seen.get(&id.to_ascii_lowercase()) {
                Some(first) => self.problem(
                    &format!("{at}.client_id"),
                    format!(
                        "{id} is already the client id of [{first}]: one Entra ID app is one \
                         table, which every tenant on it names"
                    ),
                ),
                None => {
                    seen.insert(id.to_ascii_lowercase(), at);
                }
            }
        }
    }

    /// A tenant's `app` or `cloud` (at `key`) as written: `Some(None)` for none (or `default`,
    /// which is `[app]` or `[cloud]`), `Some(Some(name))` for one of `names`, `None` (and a
    /// problem) for any other.
    pub(super) fn profile_ref(
        &mut self,
        key: &str,
        written: Option<String>,
        names: &[String],
        kind: Kind,
    ) -> Option<Option<String>> {
        let Some(name) = written.filter(|n| n != DEFAULT_PROFILE) else {
            return Some(None);
        };
        if names.contains(&name) {
            return Some(Some(name));
        }
        let Kind {
            key: own,
            what,
            table,
        } = kind;
        let message = if names.is_empty() {
            format!(
                "`{name}` is not {what}: there is no [{table}.NAME] table (leave `{own}` out \
                 for [{own}])"
            )
        } else {
            let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!(
                "`{name}` is not {what}; configured: {} (leave `{own}` out for [{own}])",
                names.join(", ")
            )
        };
        self.problem(key, message);
        None
    }
}
