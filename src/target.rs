//! Where one request goes (step 2 of the hot path): tenant, API, upstream URI, the base its
//! answer's links are rewritten to, and its rate-limit route class, resolved once from the
//! snapshot and carried through the steps after it.

use std::sync::Arc;

use http::request::Parts;
use http::Uri;

use crate::body::AccessLog;
use crate::conn::ConnInfo;
use crate::error::ProxyError;
use crate::hunting::Hunting;
use crate::metrics::ApiLatency;
use crate::ratelimit::RouteClass;
use crate::routing;
use crate::snapshot::Snapshot;
use crate::tenant::{select_api, Tenant, TenantApi};

/// Where one request goes (step 2): its tenant, API, upstream URI, the base its answer's links
/// are rewritten to, and its rate-limit route class.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) tenant: Arc<Tenant>,
    /// Which of the tenant's APIs (`0`: `[cloud]`'s): see [`Target::api`].
    pub(crate) api: usize,
    pub(crate) uri: Uri,
    /// This proxy as the client reached it, with the tenant and API prefixes the client used.
    pub(crate) link_to: String,
    /// The route class, matched on the path with the API prefix still on; for a request
    /// answered through Graph, Graph hunting's (see [`Target::settle_hunting`]).
    pub(crate) class: RouteClass,
    /// The API's histograms, when `[metrics] per_tenant_histograms = false` wants them.
    pub(crate) by_api: Option<Arc<ApiLatency>>,
    /// Whether this is a legacy advanced-hunting request, and where it goes.
    pub(crate) hunting: Hunting,
    /// The class of Graph's hunting endpoint, which a request answered through Graph takes:
    /// both legacy routes share Graph's per-tenant hunting limit, pauses and CPU quota.
    graph_class: RouteClass,
    /// The request's trace span, the parent of the exchange's spans (disabled without
    /// telemetry).
    pub(crate) trace: tracing::Span,
}

impl Target {
    pub(crate) fn resolve(
        parts: &Parts,
        conn: &ConnInfo,
        snapshot: &Snapshot,
    ) -> Result<Self, ProxyError> {
        // Links point at this proxy, at the host the client used (or, for an HTTP/1.0 client
        // that named none, the address it connected to).
        let host = routing::request_host(&parts.headers, &parts.uri, parts.version)?;
        let route = snapshot.routes.resolve(&parts.uri, &parts.headers)?;
        let (api, api_path) = select_api(&route.tenant.apis, &route.upstream_path);
        let target = &route.tenant.apis[api].target;
        let uri = Uri::builder()
            .scheme(target.base.scheme.clone())
            .authority(target.base.authority.clone())
            .path_and_query(api_path.as_ref())
            .build()
            .map_err(|_| routing::PathError::NotAbsolute)?;
        let mut link_to = match (&snapshot.public_url, host) {
            (Some(public), _) => public.to_string(),
            (None, Some(host)) => format!("{}://{host}", snapshot.link_scheme),
            (None, None) => format!("{}://{}", snapshot.link_scheme, conn.local),
        };
        if let Some(prefix) = route.prefix {
            link_to.push('/');
            link_to.push_str(prefix);
        }
        if let Some(api_prefix) = &target.prefix {
            link_to.push_str(api_prefix);
        }
        let class = route.tenant.limits.class_of(route.upstream_path.as_ref());
        let by_api = (!snapshot.metrics.per_tenant_histograms).then(|| target.latency.clone());
        let hunting = snapshot.hunting.classify(&parts.method, api, &api_path);
        let graph_class = match hunting {
            Hunting::Graph(_) | Hunting::Auto(_) => {
                route.tenant.limits.class_of(snapshot.hunting.graph_path())
            }
            Hunting::No | Hunting::Legacy => class,
        };
        Ok(Target {
            tenant: route.tenant,
            api,
            uri,
            link_to,
            class,
            by_api,
            hunting,
            graph_class,
            trace: tracing::Span::none(),
        })
    }

    /// A legacy hunting request's way settled (`auto` asks the tenant's Graph token) and
    /// counted; whether it goes through Graph.
    pub(crate) async fn settle_hunting(&mut self) -> bool {
        if self.hunting == Hunting::No {
            return false;
        }
        self.hunting = self.hunting.settle(&self.tenant).await;
        let through_graph = matches!(self.hunting, Hunting::Graph(_));
        if through_graph {
            self.class = self.graph_class;
        }
        self.tenant.metrics.record_hunting(through_graph);
        through_graph
    }

    /// The tenant's API this request goes to: its token, counters and target.
    pub(crate) fn api(&self) -> &TenantApi {
        &self.tenant.apis[self.api]
    }

    /// The tenant's API the request is sent to: Graph's for a legacy hunting request answered
    /// through Graph (its warnings are Graph's), else [`Target::api`].
    pub(crate) fn upstream_api(&self) -> &TenantApi {
        match self.hunting {
            Hunting::Graph(graph) => &self.tenant.apis[graph],
            Hunting::No | Hunting::Legacy | Hunting::Auto(_) => self.api(),
        }
    }

    /// From here on the request counts as this tenant's and this API's.
    pub(crate) fn label(&self, log: &mut AccessLog) {
        log.tenant = Some(self.tenant.clone());
        log.metrics = self.tenant.metrics.clone();
        log.requests = Some(self.api().requests.clone());
        log.api = self.by_api.clone();
    }
}
