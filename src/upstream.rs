//! The pooled client to the API: rustls (HTTP/1.1 or HTTP/2 by ALPN), connection reuse, the
//! response-header timeout and the idle timeout of the response body. Bodies pass through as streams; [`RequestBody`] is the one body type
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

use crate::config::{Config, UpstreamConfig};
use crate::error::{ProxyError, TimeoutKind, UpstreamFailure};
use crate::idle::{ClientBody, ClientFault, FaultCell, IdleBody};
use crate::tls::{self, TlsError};

/// A request body on its way upstream: nothing, a small body kept in memory (so a request can
/// be replayed once after a 401), or the client's body streamed through.
///
/// 48 bytes: hyper's HTTP/1 client keeps a queue block of 32 request slots per upstream
/// connection, so every byte here is 32 per connection. Trailers and a streamed body are boxed
/// (rare, and one allocation each).
#[derive(Debug)]
pub enum RequestBody {
    Empty,
    Kept {
        data: Option<Bytes>,
        trailers: Option<Box<http::HeaderMap>>,
    },
    Streamed(Box<Streamed>),
}

/// The client's body: the part already read (while deciding whether to keep it), then the rest.
#[derive(Debug)]
pub struct Streamed {
    prefix: Option<Bytes>,
    body: ClientBody,
}

/// A response body from the API, under `[upstream] body_idle_timeout`.
pub(crate) type UpstreamBody = IdleBody<Incoming>;

impl RequestBody {
    pub fn kept(data: Bytes, trailers: Option<http::HeaderMap>) -> Self {
        RequestBody::Kept {
            data: Some(data),
            trailers: trailers.map(Box::new),
        }
    }

    pub fn streamed(prefix: Option<Bytes>, body: ClientBody) -> Self {
        RequestBody::Streamed(Box::new(Streamed { prefix, body }))
    }

    /// Where a streamed client body records why it broke off, so that the failed exchange is
    /// answered as the client's fault; `None` for a body already read whole.
    pub fn watch(&mut self) -> Option<FaultCell> {
        match self {
            RequestBody::Streamed(streamed) => Some(streamed.body.watch()),
            RequestBody::Empty | RequestBody::Kept { .. } => None,
        }
    }

    /// A replayable copy, when this body can be replayed.
    pub fn try_clone(&self) -> Option<RequestBody> {
        match self {
            RequestBody::Empty => Some(RequestBody::Empty),
            RequestBody::Kept { data, trailers } => Some(RequestBody::Kept {
                data: data.clone(),
                trailers: trailers.clone(),
            }),
            RequestBody::Streamed(_) => None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = ClientFault;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientFault>>> {
        // Unpin: `ClientBody` is, and it sits behind a `Box`.
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Kept { data, trailers } => Poll::Ready(
                data.take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(|t| Frame::trailers(*t)))
                    .map(Ok),
            ),
            RequestBody::Streamed(streamed) => match streamed.prefix.take() {
                Some(first) => Poll::Ready(Some(Ok(Frame::data(first)))),
                None => Pin::new(&mut streamed.body).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Kept { data, trailers } => data.is_none() && trailers.is_none(),
            RequestBody::Streamed(s) => s.prefix.is_none() && s.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Kept { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            RequestBody::Streamed(s) => {
                let extra = s.prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = s.body.size_hint();
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

/// The API client with its timeouts.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, RequestBody>,
    response_timeout: Duration,
    body_idle_timeout: Duration,
}

impl Upstream {
    pub fn new(config: &Config) -> Result<Self, TlsError> {
        // API hosts of every cloud profile share the pool: every profile's extra roots.
        let tls = tls::client_config(&config.ca_files())?;
        let connector = tls::https_connector(tls, &config.upstream);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            // As many idle connections as the listener lets requests be in flight at once: a
            // smaller cap closes connections that the next requests of a burst open again
            // (measured: 1000 client connections, cap 256: ~8000 upstream connects in 3 s,
            // 25 % fewer requests served, and a higher memory peak). Idle ones close after 90 s.
            .pool_max_idle_per_host(config.listen.limits.max_connections)
            .build(connector);
        Ok(Upstream {
            client,
            response_timeout: config.upstream.response_timeout,
            body_idle_timeout: config.upstream.body_idle_timeout,
        })
    }

    /// The same pool (its connections stay) with the timeouts that are not the connector's.
    pub fn with_timeouts(&self, config: &UpstreamConfig) -> Self {
        Upstream {
            client: self.client.clone(),
            response_timeout: config.response_timeout,
            body_idle_timeout: config.body_idle_timeout,
        }
    }

    /// Send and wait for the response headers; the body then streams on its own, each frame
    /// within the body idle timeout of the last. A failure caused by the client's own body
    /// (stalled, broken off) is the client's error, not the API's.
    pub async fn send(
        &self,
        mut request: Request<RequestBody>,
    ) -> Result<http::Response<UpstreamBody>, ProxyError> {
        let fault = request.body_mut().watch();
        let result =
            match tokio::time::timeout(self.response_timeout, self.client.request(request)).await {
                Err(_) => Err(ProxyError::UpstreamTimeout(TimeoutKind::Response(
                    self.response_timeout,
                ))),
                Ok(Ok(response)) => {
                    Ok(response.map(|body| IdleBody::new(body, self.body_idle_timeout)))
                }
                Ok(Err(err)) => Err(classify(err)),
            };
        match fault.as_ref().and_then(|cell| cell.get()) {
            Some(fault) if result.is_err() => Err((*fault).into()),
            _ => result,
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn the_request_body_is_small() {
        // hyper's client queues 32 of these (in a request) per upstream connection.
        assert!(std::mem::size_of::<RequestBody>() <= 48);
    }

    #[tokio::test]
    async fn a_kept_body_and_its_trailers_arrive_whole() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-check", http::HeaderValue::from_static("1"));
        let body = RequestBody::kept(Bytes::from_static(b"hello"), Some(trailers.clone()));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers));
        assert_eq!(collected.to_bytes(), Bytes::from_static(b"hello"));

        let empty = RequestBody::Empty;
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }
}
