//! One API the proxy forwards to, as every tenant shares it: where it is, the prefix that picks
//! it, how its own links are spelled, its token scope and its histograms. A leaf: the snapshot
//! makes these, each tenant holds them.

use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::Uri;

use crate::metrics::ApiLatency;
use crate::rewrite::LinkBase;

/// Where the default API lives; cloned into every upstream URI (both are cheap `Bytes` clones).
#[derive(Debug, Clone)]
pub struct ApiBase {
    pub scheme: Scheme,
    pub authority: Authority,
}

/// One API the proxy forwards to.
#[derive(Debug)]
pub struct ApiTarget {
    /// `default` for `[cloud]`'s, else the `[[api]]` name (a metrics label).
    pub name: Arc<str>,
    /// The path prefix that selects it (`/mde`); `None` for the default API.
    pub prefix: Option<Box<str>>,
    pub base: ApiBase,
    /// The base as it appears in the API's own links (`https://api.security.microsoft.com`).
    pub links: LinkBase,
    /// This API's latency histograms (shown with `[metrics] per_tenant_histograms = false`).
    pub latency: Arc<ApiLatency>,
    /// The OAuth scope of its tokens.
    pub scope: Box<str>,
}

impl ApiTarget {
    /// The rest of `path` if it is under this API's prefix (whole segments, ASCII
    /// case-insensitive).
    pub fn strip<'a>(&self, path: &'a str) -> Option<&'a str> {
        crate::config::strip_api_prefix(self.prefix.as_deref()?, path)
    }
}

impl ApiBase {
    pub fn from_uri(uri: &Uri) -> Option<Self> {
        Some(ApiBase {
            scheme: uri.scheme()?.clone(),
            authority: uri.authority()?.clone(),
        })
    }
}
