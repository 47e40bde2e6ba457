//! `[app]` as typed settings: the partner's Entra ID application and its credential (secret,
//! certificate or federated token file), secret material held in `secrecy` types.
//!
//! One file per config section (split out of `mod.rs`, which had grown past 500 lines).

use std::path::PathBuf;

use secrecy::{SecretBox, SecretString};

/// The partner's multi-tenant Entra ID application.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub client_id: String,
    pub credential: Credential,
}

/// How the app proves its identity to Entra ID. Secret material is already resolved (from env or
/// file) and held in `secrecy` types so it never reaches a `Debug` print.
#[derive(Debug, Clone)]
pub enum Credential {
    Secret(SecretString),
    Certificate(CertificateCredential),
    /// Workload identity federation: an external token (e.g. a Kubernetes projected service
    /// account token) presented as the client assertion.
    Federated(FederatedCredential),
}

/// `federated_token_file`, or `AZURE_FEDERATED_TOKEN_FILE` when `[app]` names no credential.
///
/// Only the path is held: the file rotates (the kubelet rewrites it well before the token in it
/// expires), so the token module reads it afresh for every token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedCredential {
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct CertificateCredential {
    /// DER of the app's certificate (first certificate of the PEM file); its SHA-256 is `x5t#S256`.
    pub cert_der: Vec<u8>,
    /// DER of the private key: PKCS#8, or PKCS#1 (`RSA PRIVATE KEY`) as [`KeyFormat`] says.
    pub key_der: std::sync::Arc<SecretBox<Vec<u8>>>,
    pub key_format: KeyFormat,
    /// Where the files came from, for messages.
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    Pkcs8,
    Pkcs1,
}
