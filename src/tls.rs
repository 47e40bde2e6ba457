//! Outbound TLS: one rustls client configuration (webpki roots plus the operator's optional extra
//! CA file) shared by the API forwarder and the Entra ID token client, so both trust the same
//! roots and speak the same ALPN.

use std::path::Path;
use std::sync::Arc;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::config::UpstreamConfig;

/// Why the outbound TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA file {path}: {source}")]
    ReadCa {
        path: String,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("CA file {path} holds no usable certificate")]
    EmptyCa { path: String },
}

/// The rustls client config: webpki roots, plus every certificate in each file of `cas`.
pub(crate) fn client_config(cas: &[&Path]) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for &path in cas {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|source| TlsError::ReadCa {
                path: path.display().to_string(),
                source,
            })?;
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsError::EmptyCa {
                path: path.display().to_string(),
            });
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A connector for `https://` (HTTP/1.1 or HTTP/2 by ALPN) and, for loopback tests and the
/// simulator, plain `http://` (the config only allows that for loopback hosts).
pub(crate) fn https_connector(
    tls: rustls::ClientConfig,
    upstream: &UpstreamConfig,
) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(upstream.connect_timeout));
    HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http)
}
