//! The floor of a hyper proxy: what `benches/proxy.sh` measures defender-proxy against besides
//! nginx and HAProxy. It does only what any hyper-based reverse proxy must: accept HTTP/1.1,
//! rewrite the URI to the upstream, set a static `Authorization` and forward through
//! hyper-util's pooled client on a current-thread runtime, streaming the answer back. No routing,
//! tokens, limits, header hygiene, link rewriting, logs or metrics: the gap between this and
//! defender-proxy is the cost of those; the gap between this and nginx is hyper's.
//!
//! `cargo run --release --example hyper_floor -- 127.0.0.1:8081 http://127.0.0.1:8080`

use std::convert::Infallible;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The same allocator as defender-proxy, so the comparison is of the work done.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Upstream = Client<HttpConnector, Incoming>;

async fn forward(
    client: Upstream,
    base: (Scheme, Authority),
    mut request: Request<Incoming>,
) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
    let path = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(base.0);
    parts.authority = Some(base.1);
    parts.path_and_query = Some(path);
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request.headers_mut().insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer bench-static-token"),
    );
    client.request(request).await
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8081".into());
    let upstream: Uri = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into())
        .parse()?;
    let base = (
        upstream
            .scheme()
            .cloned()
            .ok_or("upstream needs a scheme")?,
        upstream
            .authority()
            .cloned()
            .ok_or("upstream needs a host")?,
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            eprintln!("hyper_floor on {listen} -> {upstream}");
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let (client, base) = (client.clone(), base.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (client, base) = (client.clone(), base.clone());
                        async move {
                            Ok::<_, Infallible>(match forward(client, base, request).await {
                                Ok(response) => response.map(http_body_util::Either::Left),
                                Err(_) => {
                                    let mut bad = Response::new(http_body_util::Either::Right(
                                        http_body_util::Empty::new(),
                                    ));
                                    *bad.status_mut() = http::StatusCode::BAD_GATEWAY;
                                    bad
                                }
                            })
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
}
