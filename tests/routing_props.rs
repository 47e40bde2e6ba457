//! Property: no request path selects another tenant than its prefix names, and the path sent
//! upstream never climbs out of the API root, however the path is spelled.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use defender_proxy::app::App;
use defender_proxy::dev::dev_config;
use defender_proxy::sim::SimConfig;
use http::{HeaderMap, Uri};
use proptest::prelude::*;

/// Path pieces chosen to be nasty: dots and their escapes, separators, other tenants' names.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2e".to_string()),
        Just(".%2e".to_string()),
        Just("".to_string()),
        Just("%2f".to_string()),
        Just("%5c".to_string()),
        Just("\\".to_string()),
        Just("contoso".to_string()),
        Just("fabrikam".to_string()),
        Just("api".to_string()),
        Just("incidents".to_string()),
        Just("%61pi".to_string()),
        Just("a.b".to_string()),
        "[a-z0-9._~-]{1,8}",
    ]
}

/// Resolve `path` against a fresh route table; (tenant name, upstream path) or an error.
fn resolve(path: &str) -> Option<(String, String)> {
    thread_local! {
        static PROXY: std::sync::Arc<defender_proxy::proxy::Proxy> = {
            let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
            let config = dev_config(&SimConfig::demo(), "http://127.0.0.1:1", addr, addr);
            App::build(&config, None).unwrap().proxy().clone()
        };
    }
    let uri: Uri = path.parse().ok()?;
    PROXY.with(|proxy| {
        let snapshot = proxy.snapshot.load();
        let routes = &snapshot.routes;
        routes.resolve(&uri, &HeaderMap::new()).ok().map(|route| {
            (
                route.tenant.name.to_string(),
                route.upstream_path.into_owned(),
            )
        })
    })
}

fn climbs(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or("");
    path.split('/').any(|seg| {
        let lower = seg.to_ascii_lowercase().replace("%2e", ".");
        lower == "." || lower == ".."
    }) || path.contains("//")
        || path.contains('\\')
        || path.to_ascii_lowercase().contains("%5c")
        || path.to_ascii_lowercase().contains("%2f")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_prefix_picks_the_tenant_and_the_root_holds(pieces in proptest::collection::vec(piece(), 1..7)) {
        let path = format!("/{}", pieces.join("/"));
        if let Some((tenant, upstream)) = resolve(&path) {
            // Only the first segment can name the tenant, and only exactly.
            prop_assert_eq!(&tenant, &pieces[0], "{} routed to {}", path, tenant);
            prop_assert!(upstream.starts_with('/'));
            prop_assert!(!climbs(&upstream), "{} forwarded as {}", path, upstream);
            // What goes upstream is exactly the rest of the path.
            let whole = format!("/{tenant}{upstream}");
            prop_assert!(whole == path || (upstream == "/" && path == format!("/{tenant}")), "{} -> {}", path, upstream);
        }
    }
}
