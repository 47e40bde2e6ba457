//! The admin listener: `/healthz`, `/readyz`, `/metrics`. Kept off the data port so probes and
//! scrapes never compete with (or get routed like) API traffic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::ResponseBody;
use crate::error::json_error_response;
use crate::proxy::Proxy;

/// Admin endpoints' view of the running proxy.
#[derive(Debug, Clone)]
pub struct Admin {
    pub proxy: Arc<Proxy>,
    /// True once the config is loaded and the data listener is up; false again while draining.
    pub ready: Arc<AtomicBool>,
}

impl Admin {
    pub fn handle(&self, request: &Request<Incoming>) -> Response<ResponseBody> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return json_error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "BadRequest",
                "admin endpoints answer GET only",
            );
        }
        match request.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n", "text/plain"),
            "/readyz" if self.ready.load(Ordering::Acquire) => {
                text(StatusCode::OK, "ready\n", "text/plain")
            }
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n", "text/plain"),
            "/metrics" => {
                let snapshot = self.proxy.snapshot.load();
                let mut body = self.proxy.metrics.render(&snapshot.routes);
                let tenants: Vec<_> = snapshot
                    .routes
                    .tenants()
                    .map(|t| (&*t.name, &*t.limits))
                    .collect();
                crate::ratelimit::metrics::render(&mut body, &tenants, &snapshot.limiter);
                text(
                    StatusCode::OK,
                    body,
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            }
            _ => json_error_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                "admin endpoints: /healthz /readyz /metrics",
            ),
        }
    }
}

fn text(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::from(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
