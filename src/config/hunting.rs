//! `[advanced_hunting]` as typed settings: whether the legacy hunting routes
//! (`/api/advancedhunting/run`, `/api/advancedqueries/run`) go to their legacy APIs or are
//! answered through Microsoft Graph's `runHuntingQuery`, retired APIs being switched off on
//! 2027-02-01.

use std::time::Duration;

/// Graph's advanced-hunting endpoint, under the Graph `[[api]]`'s URL (and prefix).
pub const GRAPH_HUNTING_PATH: &str = "/v1.0/security/runHuntingQuery";

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

impl super::Config {
    /// Graph hunting's own rate-limit class (`{graph prefix}/v1.0/security/runHuntingQuery`,
    /// 45/minute), added to `rate_limit.routes` when queries go through Graph and no
    /// `[[rate_limit.route]]` names it: the legacy routes of both APIs then share Graph's
    /// per-tenant hunting limit, its pauses and its CPU quota, and a pause of hunting leaves the
    /// tenant's other routes alone. The loader calls it; so must a config built in code.
    pub fn add_hunting_route(&mut self) {
        if self.hunting.via == HuntingVia::Legacy {
            return;
        }
        let Some(graph) = self.apis.iter().find(|a| a.name == self.hunting.graph_api) else {
            return;
        };
        let path = format!("{}{GRAPH_HUNTING_PATH}", graph.prefix);
        let routes = &mut self.rate_limit.routes;
        if !routes
            .iter()
            .any(|r| r.path_prefix.eq_ignore_ascii_case(&path))
        {
            routes.push(super::RouteLimit {
                path_prefix: path,
                windows: super::Windows {
                    per_minute: std::num::NonZeroU32::new(
                        super::defaults::GRAPH_HUNTING_PER_MINUTE,
                    ),
                    per_hour: None,
                    burst: None,
                },
            });
        }
    }
}
