//! More than one API, and paging that stays on the proxy: each API gets a token for its own
//! audience, and every `@odata.nextLink` the client follows points back at the proxy (tenant
//! prefix or header mode, gzip or not), rewritten as the body streams.

#![allow(clippy::unwrap_used)]

mod support;

use futures_util::StreamExt;
use support::{Harness, CONTOSO};

const XDR: &str = "https://api.security.microsoft.com";
const MDE: &str = "https://api.securitycenter.microsoft.com";
const GRAPH: &str = "https://graph.microsoft.com";

#[tokio::test]
async fn each_api_gets_a_token_for_its_own_audience() {
    let h = Harness::start().await;
    for path in [
        "/contoso/api/incidents",
        "/contoso/mde/api/machines",
        "/contoso/graph/v1.0/security/incidents",
    ] {
        assert_eq!(h.get(path).await.status(), 200, "{path}");
    }
    let seen = h.sim.api_requests();
    let audiences: Vec<(&str, Option<&str>)> = seen
        .iter()
        .map(|r| (r.path_and_query.as_str(), r.aud.as_deref()))
        .collect();
    assert_eq!(
        audiences,
        vec![
            ("/api/incidents", Some(XDR)),
            ("/api/machines", Some(MDE)),
            ("/v1.0/security/incidents", Some(GRAPH))
        ]
    );
    // One token per (tenant, scope).
    assert_eq!(h.sim.token_request_count(&h.tenant_id(CONTOSO)), 3);
}

/// Follow `@odata.nextLink` from `first` to the end; every link must point at the proxy.
async fn walk(h: &Harness, first: &str, header: Option<&str>, gzip: bool) -> usize {
    let proxy = format!("http://{}", h.addr);
    let mut url = h.url(first);
    let mut items = 0;
    for page in 0..100 {
        let mut request = h.http.get(&url);
        if let Some(tenant) = header {
            request = request.header("X-Defender-Tenant", tenant);
        }
        if gzip {
            request = request.header("accept-encoding", "gzip");
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "page {page}: {url}");
        assert!(
            response.headers().get("content-encoding").is_none(),
            "sent to the client decoded"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        items += body["value"].as_array().unwrap().len();
        if let Some(context) = body["@odata.context"].as_str() {
            assert!(
                context.starts_with(&proxy),
                "context leaves the proxy: {context}"
            );
        }
        match body["@odata.nextLink"].as_str() {
            None => return items,
            Some(next) => {
                assert!(
                    next.starts_with(&proxy),
                    "nextLink leaves the proxy: {next}"
                );
                url = next.to_owned();
            }
        }
    }
    panic!("more than 100 pages");
}

#[tokio::test]
async fn paging_stays_on_the_proxy_in_prefix_and_header_mode_with_and_without_gzip() {
    let h = Harness::start().await;
    for gzip in [false, true] {
        h.sim.set_gzip_json(gzip);
        assert_eq!(
            walk(&h, "/contoso/api/incidents?$top=7", None, gzip).await,
            25
        );
        assert_eq!(
            walk(&h, "/api/incidents?$top=7", Some("contoso"), gzip).await,
            25
        );
        assert_eq!(
            walk(
                &h,
                "/contoso/graph/v1.0/security/incidents?$top=10",
                None,
                gzip
            )
            .await,
            25
        );
    }
    // Every page went to the simulator through the proxy, and links kept the tenant prefix.
    let seen = h.sim.api_requests();
    assert!(
        seen.iter()
            .any(|r| r.path_and_query == "/api/incidents?$top=7&$skip=21"),
        "{seen:?}"
    );
    assert!(h
        .sim
        .api_requests()
        .iter()
        .all(|r| r.tid.as_deref() == Some(h.tenant_id(CONTOSO).as_str())));
}

#[tokio::test]
async fn a_200_mib_json_response_is_rewritten_as_it_streams() {
    let h = Harness::start().await;
    let pages = 3200; // 3200 x 64 KiB = 200 MiB
    let response = h
        .get(&format!("/contoso/api/_test/bigjson?pages={pages}"))
        .await;
    assert_eq!(response.status(), 200);
    let needle_proxy = format!("\"http://{}/contoso/api/", h.addr);
    let needle_sim = format!("\"{}/api/", h.sim.base_url());
    let (mut total, mut carry, mut rewritten, mut leaked) =
        (0usize, Vec::<u8>::new(), 0usize, 0usize);
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        total += chunk.len();
        // Count links across chunk edges with a small carried tail; never hold the body.
        let mut window = std::mem::take(&mut carry);
        window.extend_from_slice(&chunk);
        let text = String::from_utf8_lossy(&window);
        rewritten += text.matches(&needle_proxy).count();
        leaked += text.matches(&needle_sim).count();
        let keep = window.len().min(256);
        carry = window[window.len() - keep..].to_vec();
        // Links in the carried tail would be counted twice: drop any whole needle from it.
        if let Some(pos) = String::from_utf8_lossy(&carry).rfind('"') {
            carry.drain(..pos);
        }
    }
    assert!(total >= pages * 64 * 1024 - pages * 1024, "{total} bytes");
    assert_eq!(leaked, 0, "a link to the API's own host reached the client");
    assert!(rewritten >= 2 * pages, "{rewritten} links rewritten");
}

#[tokio::test]
async fn public_url_is_the_base_of_links_behind_another_proxy() {
    let h = Harness::start_with(defender_proxy::sim::SimConfig::demo(), |c| {
        c.listen.public_url = Some("https://defender.soc.example/edge".into());
    })
    .await;
    let body: serde_json::Value = h
        .get("/contoso/api/incidents?$top=5")
        .await
        .json()
        .await
        .unwrap();
    let next = body["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with("https://defender.soc.example/edge/contoso/api/incidents?"),
        "{next}"
    );
}
