//! The HTTP client the OTLP exporter sends with: the proxy's own hyper client and rustls
//! connector (the upstream's trust roots), on a one-thread tokio runtime of its own.
//!
//! The SDK's batch processor runs exports on its own thread, outside any runtime, and waits for
//! each; this client drives its request to the end on its runtime right there. The proxy's
//! runtime does none of the work, and a collector that does not answer holds only that thread
//! (for at most the timeout).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{HttpClient, HttpError};
use std::time::Duration;

use super::TelemetryError;
use crate::config::Config;
use crate::tls;

/// A collector's answer is a few bytes (a partial-success note at most); more is not read.
const MAX_ANSWER: usize = 64 * 1024;

pub(super) struct OtlpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `None` only while dropping (a runtime is shut down in the background, never blocking).
    runtime: Option<tokio::runtime::Runtime>,
    timeout: Duration,
}

impl std::fmt::Debug for OtlpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpClient").finish_non_exhaustive()
    }
}

impl OtlpClient {
    pub(super) fn new(config: &Config, timeout: Duration) -> Result<Self, TelemetryError> {
        let tls = tls::client_config(&config.ca_files())?;
        let connector = tls::https_connector(tls, &config.upstream);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("otlp-export")
            .build()?;
        Ok(OtlpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            runtime: Some(runtime),
            timeout,
        })
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(body));
        let response = self.client.request(request).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let runtime = self.runtime.as_ref().ok_or("the exporter is shut down")?;
        // On the batch processor's thread, which waits for this export anyway.
        runtime.block_on(async {
            tokio::time::timeout(self.timeout, self.send(request))
                .await
                .map_err(|_| HttpError::from("the collector did not answer in time"))?
        })
    }
}

impl Drop for OtlpClient {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
