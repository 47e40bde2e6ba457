//! The admin listener: `/healthz`, `/readyz`, `/metrics`, the admin API (`/tenants`) and the
//! status page (`/`). Kept off the data port so probes and scrapes never compete with (or get
//! routed like) API traffic.

mod auth;
mod page;
mod tenants;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::ResponseBody;
use crate::error::json_error_response;
use crate::metrics::Scrape;
use crate::proxy::Proxy;
use crate::reload::Reloader;

/// Admin endpoints' view of the running proxy.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    pub proxy: Arc<Proxy>,
    /// True once the config is loaded and the data listener is up; false again while draining.
    pub ready: Arc<AtomicBool>,
    /// Where tenant changes go (`None` without a config file: `serve --dev`).
    pub reloader: Option<Arc<Reloader>>,
}

impl Admin {
    pub(crate) async fn handle(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        let path = request.uri().path();
        if path == "/tenants" || path.starts_with("/tenants/") {
            return tenants::handle(self, request).await;
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return json_error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "BadRequest",
                "admin endpoints answer GET only (and PUT, DELETE on /tenants/{name})",
            );
        }
        match path {
            "/" => page::handle(self, request.headers(), request.uri()).await,
            "/healthz" => text(StatusCode::OK, "ok\n", "text/plain"),
            "/readyz" if self.ready.load(Ordering::Acquire) => {
                text(StatusCode::OK, "ready\n", "text/plain")
            }
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n", "text/plain"),
            "/metrics" => {
                // Streamed: the text of thousands of tenants is never held whole.
                let scrape =
                    Scrape::new(self.proxy.metrics.clone(), self.proxy.snapshot.load_full());
                let mut response = Response::new(ResponseBody::scrape(scrape));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            _ => json_error_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                "admin endpoints: / /healthz /readyz /metrics /tenants",
            ),
        }
    }
}

fn text(
    status: StatusCode,
    body: &'static str,
    content_type: &'static str,
) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::from(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
