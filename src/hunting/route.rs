//! Which requests are legacy advanced hunting, and where each goes: to the legacy API it names,
//! or through Graph (`auto`: as the tenant's Graph token says).

use std::time::Duration;

use http::Method;

use crate::config::{ApiConfig, HuntingConfig, HuntingVia, GRAPH_HUNTING_PATH};
use crate::tenant::Tenant;

/// The application permission Graph's `runHuntingQuery` needs.
pub(crate) const THREAT_HUNTING_ROLE: &str = "ThreatHunting.Read.All";

/// The legacy hunting routes: Defender XDR's and Defender for Endpoint's.
const LEGACY_ROUTES: [&str; 2] = ["/api/advancedhunting/run", "/api/advancedqueries/run"];

/// What a request is, as far as advanced hunting goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hunting {
    /// Not a legacy hunting request.
    No,
    /// A legacy hunting request, forwarded to the API it names.
    Legacy,
    /// Answered through Graph, the tenant's API at this index.
    Graph(usize),
    /// Through the Graph API at this index if the tenant's Graph token carries
    /// [`THREAT_HUNTING_ROLE`], else legacy: see [`Hunting::settle`].
    Auto(usize),
}

impl Hunting {
    /// `Auto` made `Graph` or `Legacy` by the tenant's current Graph token (so a tenant moves
    /// over when a refreshed token carries the role, with no reload); a token that can't be had
    /// keeps the tenant on legacy. Anything else stays as it is.
    pub(crate) async fn settle(self, tenant: &Tenant) -> Hunting {
        let Hunting::Auto(graph) = self else {
            return self;
        };
        match tenant.apis[graph].token.get().await {
            Ok(token) if token.roles().iter().any(|r| r == THREAT_HUNTING_ROLE) => {
                Hunting::Graph(graph)
            }
            Ok(_) => Hunting::Legacy,
            Err(error) => {
                tracing::debug!(tenant = &*tenant.name, %error,
                    "no Graph token to decide on: advanced hunting stays on the legacy API");
                Hunting::Legacy
            }
        }
    }
}

/// `[advanced_hunting]` as requests use it.
#[derive(Debug, Clone)]
pub(crate) struct HuntingRoutes {
    via: HuntingVia,
    /// The index of the Graph API among the snapshot's APIs (`[cloud]`'s is 0); `None` when
    /// `via = "legacy"` names none (the config is refused otherwise).
    graph: Option<usize>,
    /// Graph's hunting endpoint on the proxy (`/graph/v1.0/security/runHuntingQuery`): what a
    /// translated request is rate limited (and paused) as, whichever legacy route it came by.
    graph_path: Box<str>,
    /// The `Retry-After` given for Graph's CPU-quota refusal, and the hunting class's pause.
    pub(crate) quota_retry_after: Duration,
}

impl HuntingRoutes {
    /// `config` over the APIs `apis` (the `[[api]]` entries; the snapshot puts `[cloud]`'s first).
    pub(crate) fn new(config: &HuntingConfig, apis: &[ApiConfig]) -> HuntingRoutes {
        let graph = apis.iter().position(|a| a.name == config.graph_api);
        let graph_path = graph.map_or(String::new(), |i| {
            format!("{}{GRAPH_HUNTING_PATH}", apis[i].prefix)
        });
        HuntingRoutes {
            via: config.via,
            graph: graph.map(|i| i + 1),
            graph_path: graph_path.into(),
            quota_retry_after: config.quota_retry_after,
        }
    }

    /// The path translated requests are rate limited as (see [`HuntingRoutes::graph_path`]).
    pub(crate) fn graph_path(&self) -> &str {
        &self.graph_path
    }

    /// What a request with `method` to the API at index `api`, with the path `api_path` (its
    /// prefix off, query or not), is.
    pub(crate) fn classify(&self, method: &Method, api: usize, api_path: &str) -> Hunting {
        if method != Method::POST || !is_legacy_route(api_path) {
            return Hunting::No;
        }
        match (self.via, self.graph) {
            // Graph's own API has no legacy routes to translate.
            (_, Some(graph)) if graph == api => Hunting::No,
            (HuntingVia::Graph, Some(graph)) => Hunting::Graph(graph),
            (HuntingVia::Auto, Some(graph)) => Hunting::Auto(graph),
            _ => Hunting::Legacy,
        }
    }
}

/// `/api/advancedhunting/run` or `/api/advancedqueries/run`, ASCII case-insensitively, with or
/// without a trailing `/` and a query.
fn is_legacy_route(path: &str) -> bool {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let path = path.strip_suffix('/').unwrap_or(path);
    LEGACY_ROUTES.iter().any(|r| r.eq_ignore_ascii_case(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(via: HuntingVia) -> HuntingRoutes {
        HuntingRoutes {
            via,
            graph: Some(2),
            graph_path: "/graph/v1.0/security/runHuntingQuery".into(),
            quota_retry_after: Duration::from_secs(900),
        }
    }

    #[test]
    fn legacy_routes_in_any_case_with_slash_or_query() {
        for path in [
            "/api/advancedhunting/run",
            "/api/AdvancedHunting/Run",
            "/api/advancedqueries/run/",
            "/api/advancedqueries/run?x=1",
        ] {
            assert!(is_legacy_route(path), "{path}");
        }
        for path in [
            "/api/advancedhunting",
            "/api/advancedhunting/run/x",
            "/v1.0/security/runHuntingQuery",
            "/api/advancedqueries/runs",
        ] {
            assert!(!is_legacy_route(path), "{path}");
        }
    }

    #[test]
    fn via_decides_for_posts_on_every_api_but_graph() {
        let post = Method::POST;
        let path = "/api/advancedhunting/run";
        assert_eq!(
            routes(HuntingVia::Graph).classify(&post, 0, path),
            Hunting::Graph(2)
        );
        assert_eq!(
            routes(HuntingVia::Graph).classify(&post, 1, path),
            Hunting::Graph(2)
        );
        assert_eq!(
            routes(HuntingVia::Auto).classify(&post, 0, path),
            Hunting::Auto(2)
        );
        assert_eq!(
            routes(HuntingVia::Legacy).classify(&post, 0, path),
            Hunting::Legacy
        );
        assert_eq!(
            routes(HuntingVia::Graph).classify(&post, 2, path),
            Hunting::No
        );
        assert_eq!(
            routes(HuntingVia::Graph).classify(&Method::GET, 0, path),
            Hunting::No
        );
        let no_graph = HuntingRoutes {
            graph: None,
            ..routes(HuntingVia::Legacy)
        };
        assert_eq!(no_graph.classify(&post, 0, path), Hunting::Legacy);
    }
}
