//! The API and Entra ID over TLS, as in production: rustls with the operator's extra CA file,
//! HTTP/2 by ALPN, and certificate verification that cannot be skipped.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use defender_proxy::sim::{SimConfig, Simulator};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::{error_code, Harness};

struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

/// A throwaway CA and a `localhost` server certificate it signed.
fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Pki {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

#[tokio::test]
async fn https_api_and_entra_with_extra_ca_speak_http2() {
    let pki = pki();
    let tls_sim = Simulator::start_tls(SimConfig::demo(), pki.server.clone())
        .await
        .unwrap();
    let dir = support::TempDir::new("tls-upstream");
    let ca_file = dir.path("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let base = tls_sim.base_url().to_owned();
    assert!(base.starts_with("https://localhost:"));
    let h = Harness::start_with(SimConfig::demo(), |c| {
        c.cloud.authority = base.clone();
        c.cloud.api = base.parse().unwrap();
        c.cloud.ca = Some(ca_file.clone());
    })
    .await;

    let r = h.get("/contoso/api/incidents?$top=3").await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["value"].as_array().unwrap().len(), 3);
    // The token came from the TLS simulator, and the API call used HTTP/2 by ALPN.
    assert_eq!(tls_sim.token_requests().len(), 1);
    let seen = tls_sim.api_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].version, http::Version::HTTP_2);
    assert_eq!(h.sim.api_request_count(), 0);
}

#[tokio::test]
async fn untrusted_api_certificate_is_502_and_untrusted_entra_is_503() {
    let pki = pki();
    let tls_sim = Simulator::start_tls(SimConfig::demo(), pki.server.clone())
        .await
        .unwrap();
    let base = tls_sim.base_url().to_owned();

    // Entra over plain loopback http (the harness's simulator), the API over TLS without the CA.
    let api_base = base.clone();
    let h = Harness::start_with(SimConfig::demo(), move |c| {
        c.cloud.api = api_base.parse().unwrap()
    })
    .await;
    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), "UpstreamUnavailable");
    assert_eq!(tls_sim.api_request_count(), 0);

    // Entra over TLS without the CA: no token, so nothing is sent.
    let h = Harness::start_with(SimConfig::demo(), move |c| c.cloud.authority = base.clone()).await;
    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), "TokenUnavailable");
    assert_eq!(tls_sim.token_requests().len(), 0);
    assert_eq!(h.sim.api_request_count(), 0);
}
