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
            let app = config.apps.get(app_name).unwrap_or(&config.app);
            let cloud = config.clouds.get(cloud_name).unwrap_or(&config.cloud);
            let prepared = Prepared::new(app, cloud, &config.upstream)?;
            Ok(((app_name.to_owned(), cloud_name.to_owned()), prepared))
        })
        .collect()
}
