//! The pooled client to the API: rustls (HTTP/1.1 or HTTP/2 by ALPN), connection reuse, and the
//! response-header timeout. Bodies pass through as streams; [`RequestBody`] is the one body type
//! the client sends, so no request pays for a boxed trait object.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Config;
use crate::error::{ProxyError, TimeoutKind, UpstreamFailure};
use crate::tls::{self, TlsError};

pin_project_lite::pin_project! {
    /// A request body on its way upstream: nothing, a small body kept in memory (so a request can
    /// be replayed once after a 401), or the client's body streamed through.
    #[project = RequestBodyProj]
    #[derive(Debug)]
    pub enum RequestBody {
        Empty,
        Kept { data: Option<Bytes>, trailers: Option<http::HeaderMap> },
        Streamed { prefix: Option<Bytes>, #[pin] body: Incoming },
    }
}

impl RequestBody {
    /// A replayable copy, when this body can be replayed.
    pub fn try_clone(&self) -> Option<RequestBody> {
        match self {
            RequestBody::Empty => Some(RequestBody::Empty),
            RequestBody::Kept { data, trailers } => Some(RequestBody::Kept {
                data: data.clone(),
                trailers: trailers.clone(),
            }),
            RequestBody::Streamed { .. } => None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            RequestBodyProj::Empty => Poll::Ready(None),
            RequestBodyProj::Kept { data, trailers } => Poll::Ready(
                data.take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
            RequestBodyProj::Streamed { prefix, body } => match prefix.take() {
                Some(first) => Poll::Ready(Some(Ok(Frame::data(first)))),
                None => body.poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Kept { data, trailers } => data.is_none() && trailers.is_none(),
            RequestBody::Streamed { prefix, body } => prefix.is_none() && body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Kept { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            RequestBody::Streamed { prefix, body } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = body.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
        }
    }
}

/// The API client with its timeout.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, RequestBody>,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(config: &Config) -> Result<Self, TlsError> {
        let tls = tls::client_config(config.cloud.ca.as_deref())?;
        let connector = tls::https_connector(tls, &config.upstream);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Upstream {
            client,
            response_timeout: config.upstream.response_timeout,
        })
    }

    /// Send and wait for the response headers; the body then streams on its own.
    pub async fn send(
        &self,
        request: Request<RequestBody>,
    ) -> Result<http::Response<Incoming>, ProxyError> {
        match tokio::time::timeout(self.response_timeout, self.client.request(request)).await {
            Err(_) => Err(ProxyError::UpstreamTimeout(TimeoutKind::Response(
                self.response_timeout,
            ))),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(classify(err)),
        }
    }
}

/// Connect timeouts are timeouts (504); every other failure is an unreachable upstream (502).
fn classify(err: hyper_util::client::legacy::Error) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&err);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return ProxyError::UpstreamTimeout(TimeoutKind::Connect);
            }
        }
        source = s.source();
    }
    if err.is_connect() {
        ProxyError::UpstreamUnavailable(UpstreamFailure::Connect(err))
    } else {
        ProxyError::UpstreamUnavailable(UpstreamFailure::Request(err))
    }
}
