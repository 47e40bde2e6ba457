//! `[advanced_hunting]` as typed settings: whether the legacy hunting routes
//! (`/api/advancedhunting/run`, `/api/advancedqueries/run`) go to their legacy APIs or are
//! answered through Microsoft Graph's `runHuntingQuery`, retired APIs being switched off on
//! 2027-02-01.

use std::time::Duration;

/// `via`: where legacy hunting requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuntingVia {
    /// Forwarded to the API they name, as before (the default).
    Legacy,
    /// Translated to Graph for every tenant.
    Graph,
    /// Per tenant: Graph when its Graph token carries `ThreatHunting.Read.All`, else legacy.
    Auto,
}

/// `[advanced_hunting]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuntingConfig {
    pub via: HuntingVia,
    /// `graph_api`: the name of the `[[api]]` that is Microsoft Graph; checked to exist unless
    /// `via = "legacy"`.
    pub graph_api: String,
    /// `quota_retry_after`: the `Retry-After` of Graph's CPU-quota refusal (an HTTP 400), whose
    /// 15-minute cycles start at unpublished times.
    pub quota_retry_after: Duration,
}

impl Default for HuntingConfig {
    fn default() -> Self {
        HuntingConfig {
            via: HuntingVia::Legacy,
            graph_api: super::defaults::HUNTING_GRAPH_API.to_owned(),
            quota_retry_after: super::defaults::HUNTING_QUOTA_RETRY_AFTER,
        }
    }
}
