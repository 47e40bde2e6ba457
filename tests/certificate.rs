//! Certificate credentials: the proxy signs a client assertion that the simulator verifies with
//! the app certificate's public key (no client secret involved).

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use defender_proxy::config::{CertificateCredential, Credential, KeyFormat};
use defender_proxy::sim::{CredentialKind, SimConfig};
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use secrecy::SecretBox;
use support::Harness;

struct AppCert {
    cert_der: Vec<u8>,
    key_pkcs8_der: Vec<u8>,
    public_pkcs1_der: Vec<u8>,
}

fn app_certificate() -> AppCert {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let key_pair =
        rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["defender-proxy-test-app".into()])
        .unwrap()
        .self_signed(&key_pair)
        .unwrap();
    AppCert {
        cert_der: cert.der().to_vec(),
        key_pkcs8_der: key.to_pkcs8_der().unwrap().as_bytes().to_vec(),
        public_pkcs1_der: key
            .to_public_key()
            .to_pkcs1_der()
            .unwrap()
            .as_bytes()
            .to_vec(),
    }
}

#[tokio::test]
async fn certificate_assertion_is_accepted_and_used() {
    let app = app_certificate();
    let cert_der = app.cert_der.clone();
    let key = app.key_pkcs8_der.clone();
    let h = Harness::start_with(SimConfig::demo(), move |c| {
        c.app.credential = Credential::Certificate(CertificateCredential {
            cert_der,
            key_der: Arc::new(SecretBox::new(Box::new(key))),
            key_format: KeyFormat::Pkcs8,
            cert_path: "app.pem".into(),
            key_path: "app-key.pem".into(),
        });
    })
    .await;
    h.sim
        .register_certificate(&app.cert_der, &app.public_pkcs1_der);

    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 200);
    let r = h.get("/fabrikam/api/incidents").await;
    assert_eq!(r.status(), 200);
    let token_requests = h.sim.token_requests();
    assert_eq!(token_requests.len(), 2);
    assert!(token_requests
        .iter()
        .all(|t| t.credential == CredentialKind::Assertion));
}

#[tokio::test]
async fn assertion_from_an_unregistered_certificate_is_refused() {
    let app = app_certificate();
    let key = app.key_pkcs8_der.clone();
    let cert_der = app.cert_der.clone();
    let h = Harness::start_with(SimConfig::demo(), move |c| {
        c.app.credential = Credential::Certificate(CertificateCredential {
            cert_der,
            key_der: Arc::new(SecretBox::new(Box::new(key))),
            key_format: KeyFormat::Pkcs8,
            cert_path: "app.pem".into(),
            key_path: "app-key.pem".into(),
        });
    })
    .await;
    // Nothing registered: Entra cannot verify the assertion.
    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AADSTS700027"),
        "{body}"
    );
    assert_eq!(h.sim.api_request_count(), 0);
}
