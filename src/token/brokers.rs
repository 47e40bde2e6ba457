//! One [`TokenBroker`] per (app, cloud) that tenants use: `[app]` on `[cloud]` for most, a
//! customer's own `[apps.NAME]`, a government `[clouds.NAME]` for others. Each broker asks its
//! own authority with its own app's credential, and hands out its own slots, so a token is only
//! ever made for (and sent with) the tenant's own app and cloud.
//!
//! A reload reconfigures the broker of every pair that stays (a rotated secret keeps the tokens;
//! another client id or authority drops them, see [`TokenBroker::apply`]), makes brokers
//! for new pairs, and forgets the pairs no tenant uses any more. A tenant that moves to another
//! app or cloud gets that pair's slot, so its old token is never used again; everyone else keeps
//! theirs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::{Prepared, TokenBroker, TokenInitError};
use crate::config::{Config, DEFAULT_PROFILE};
use crate::sync::LockExt;

/// An (app, cloud) pair by their config names (`default` for `[app]` and `[cloud]`).
type Pair = (String, String);

/// The token brokers by (app, cloud). Looked up when routing snapshots are built, never per
/// request.
#[derive(Debug)]
pub(crate) struct TokenBrokers {
    brokers: Mutex<BTreeMap<Pair, TokenBroker>>,
}

impl TokenBrokers {
    /// A broker for `[app]` on `[cloud]` and for every other pair a tenant of `config` uses.
    pub(crate) fn new(config: &Config) -> Result<Self, TokenInitError> {
        let brokers = prepare(config)?
            .into_iter()
            .map(|(pair, prepared)| (pair, TokenBroker::from_prepared(prepared)))
            .collect();
        Ok(TokenBrokers {
            brokers: Mutex::new(brokers),
        })
    }

    /// A reload: every pair `config` uses gets its broker reconfigured, or a new one; pairs no
    /// tenant uses any more are forgotten. Every source is built first: if one fails (a bad key,
    /// a bad CA file), nothing changes.
    pub(crate) fn reconfigure(&self, config: &Config) -> Result<(), TokenInitError> {
        let prepared = prepare(config)?;
        let mut brokers = self.brokers.locked();
        let mut next = BTreeMap::new();
        for (pair, prepared) in prepared {
            let broker = match brokers.remove(&pair) {
                Some(broker) => {
                    broker.apply(prepared);
                    broker
                }
                None => TokenBroker::from_prepared(prepared),
            };
            next.insert(pair, broker);
        }
        *brokers = next;
        Ok(())
    }

    /// The broker of `app` on `cloud` (config names); `None` for a pair the config had no tenant
    /// for (never for a tenant of the config the brokers were made or reconfigured with).
    pub(crate) fn of(&self, app: &str, cloud: &str) -> Option<TokenBroker> {
        self.brokers
            .locked()
            .get(&(app.to_owned(), cloud.to_owned()))
            .cloned()
    }

    /// Forget the slots no tenant holds any more; how many went.
    pub(crate) fn prune_unused(&self) -> usize {
        self.brokers
            .locked()
            .values()
            .map(TokenBroker::prune_unused)
            .sum()
    }
}

/// The pairs `config` uses (`[app]` on `[cloud]` always), each with its source built.
fn prepare(config: &Config) -> Result<Vec<(Pair, Prepared)>, TokenInitError> {
    let default = (DEFAULT_PROFILE, DEFAULT_PROFILE);
    let pairs: BTreeSet<(&str, &str)> = std::iter::once(default)
        .chain(
            config
                .tenants
                .iter()
                .map(|t| (config.app_of(t).0, config.cloud_of(t).0)),
        )
        .collect();
    pairs
        .into_iter()
        .map(|(app_name, cloud_name)| {
            let app = config.app_named(app_name).unwrap_or(&config.app);
            let cloud = config.cloud_named(cloud_name).unwrap_or(&config.cloud);
            let prepared = Prepared::new(app, cloud, &config.upstream)?;
            Ok(((app_name.to_owned(), cloud_name.to_owned()), prepared))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    /// `[app]` and `[apps.own]`, `[cloud]` and `[clouds.gov]`; `tenants` as TOML.
    fn config(tenants: &str, own_secret_env: &str) -> Config {
        let text = format!(
            r#"
[app]
client_id = "11111111-1111-1111-1111-111111111111"
client_secret = {{ env = "S" }}
[apps.own]
client_id = "22222222-2222-2222-2222-222222222222"
client_secret = {{ env = "{own_secret_env}" }}
[clouds.gov]
cloud = "gcc-high"
{tenants}
"#
        );
        let env = |name: &str| (name == "S" || name == "S2").then(|| "secret".to_owned());
        crate::config::parse_str(&text, Path::new("/nonexistent/proxy.toml"), &env).unwrap()
    }

    const TENANTS: &str = r#"
[[tenant]]
name = "a"
id = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
[[tenant]]
name = "b"
id = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"
app = "own"
[[tenant]]
name = "c"
id = "cccccccc-cccc-cccc-cccc-cccccccccccc"
cloud = "gov"
"#;

    fn pairs(brokers: &TokenBrokers) -> Vec<(String, String)> {
        brokers.brokers.locked().keys().cloned().collect()
    }

    #[test]
    fn one_broker_per_pair_in_use_and_default_always() {
        let brokers = TokenBrokers::new(&config(TENANTS, "S")).unwrap();
        let pair = |a: &str, c: &str| (a.to_owned(), c.to_owned());
        assert_eq!(
            pairs(&brokers),
            [
                pair("default", "default"),
                pair("default", "gov"),
                pair("own", "default")
            ]
        );
        assert!(brokers.of("own", "gov").is_none(), "no tenant uses it");
        let own = brokers.of("own", "default").unwrap();
        let default = brokers.of("default", "default").unwrap();
        let scope = "https://api.security.microsoft.com/.default";
        let id = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb";
        assert!(!Arc::ptr_eq(&own.slot(id, scope), &default.slot(id, scope)));
    }

    #[test]
    fn a_reload_keeps_the_brokers_of_pairs_that_stay_and_drops_the_rest() {
        let brokers = TokenBrokers::new(&config(TENANTS, "S")).unwrap();
        let scope = "https://api.security.microsoft.com/.default";
        let a = brokers.of("default", "default").unwrap().slot("a", scope);
        let b = brokers.of("own", "default").unwrap().slot("b", scope);
        // b moves to [app]; c leaves gov; own's secret is rotated (another env var).
        let moved = TENANTS
            .replace("app = \"own\"\n", "")
            .replace("cloud = \"gov\"\n", "app = \"own\"\n");
        brokers.reconfigure(&config(&moved, "S2")).unwrap();
        assert!(brokers.of("default", "gov").is_none());
        let default = brokers.of("default", "default").unwrap();
        assert!(
            Arc::ptr_eq(&default.slot("a", scope), &a),
            "a's slot survives"
        );
        let own = brokers.of("own", "default").unwrap();
        assert!(
            Arc::ptr_eq(&own.slot("b", scope), &b),
            "own's broker is reconfigured, not new"
        );
        assert!(
            !Arc::ptr_eq(&default.slot("b", scope), &b),
            "b on [app] has another slot"
        );
    }

    #[test]
    fn a_failing_reload_changes_nothing() {
        let brokers = TokenBrokers::new(&config(TENANTS, "S")).unwrap();
        // b leaves `own` (a success would forget that pair), and gov's CA file is missing.
        let mut bad = config(&TENANTS.replace("app = \"own\"\n", ""), "S");
        bad.clouds.get_mut("gov").unwrap().ca = Some("/nonexistent/ca.pem".into());
        let err = brokers.reconfigure(&bad).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
        assert_eq!(pairs(&brokers).len(), 3);
        assert!(brokers.of("own", "default").is_some());
    }
}
