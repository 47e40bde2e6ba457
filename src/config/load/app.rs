//! The app's credential: a secret from the environment or a file, or a certificate and key.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{SecretBox, SecretString};

use super::Validator;
use crate::config::raw::{RawApp, RawCertificate, RawSecret};
use crate::config::{AppConfig, CertificateCredential, Credential, KeyFormat};

impl Validator<'_> {
    pub(super) fn app(&mut self, raw: RawApp) -> Option<AppConfig> {
        let client_id = match raw.client_id {
            None => {
                self.problem(
                    "app.client_id",
                    "is required: the application (client) id of the partner's Entra ID app",
                );
                None
            }
            Some(id) => self.guid("app.client_id", &id),
        };
        if raw.federated_token_file.is_some() {
            self.problem(
                "app.federated_token_file",
                "federated_token_file is not supported in this version; use client_secret or certificate",
            );
        }
        let credential = match (raw.client_secret, raw.certificate) {
            (Some(secret), None) => self
                .secret("app.client_secret", secret)
                .map(Credential::Secret),
            (None, Some(cert)) => self.certificate(cert).map(Credential::Certificate),
            (Some(_), Some(_)) => {
                self.problem(
                    "app.certificate",
                    "set either client_secret or certificate, not both",
                );
                None
            }
            (None, None) => {
                self.problem(
                    "app",
                    "no credential: set client_secret = { env = \"...\" } or { file = \"...\" }, \
                     or certificate = { cert = \"...\", key = \"...\" }",
                );
                None
            }
        };
        Some(AppConfig {
            client_id: client_id?,
            credential: credential?,
        })
    }

    /// A secret from `{ env = ... }` or `{ file = ... }`, never inline; problems are put on `key`.
    pub(super) fn secret(&mut self, key: &str, raw: RawSecret) -> Option<SecretString> {
        let value = match raw {
            RawSecret::Inline => Err(
                "secrets are never written inline: use { env = \"...\" } or { file = \"...\" }"
                    .to_owned(),
            ),
            RawSecret::Source {
                env: Some(_),
                file: Some(_),
            } => Err("set env or file, not both".to_owned()),
            RawSecret::Source {
                env: None,
                file: None,
            } => Err("needs env = \"NAME\" or file = \"PATH\"".to_owned()),
            RawSecret::Source {
                env: Some(name), ..
            } => match (self.env)(&name) {
                None => Err(format!("environment variable {name} is not set")),
                Some(value) if value.is_empty() => {
                    Err(format!("environment variable {name} is empty"))
                }
                Some(value) => Ok(value),
            },
            RawSecret::Source {
                file: Some(file), ..
            } => {
                let path = self.resolve(&file);
                match std::fs::read_to_string(&path) {
                    Err(e) => Err(format!("cannot read secret file {}: {e}", path.display())),
                    Ok(mut text) => {
                        // Files written by `echo` or editors end in a newline that is not part
                        // of the secret.
                        text.truncate(text.trim_end_matches(['\r', '\n']).len());
                        if text.is_empty() {
                            Err(format!("secret file {} is empty", path.display()))
                        } else {
                            self.check_secret_file_mode(key, &path);
                            Ok(text)
                        }
                    }
                }
            }
        };
        match value {
            Ok(value) => Some(SecretString::from(value)),
            Err(message) => {
                self.problem(key, message);
                None
            }
        }
    }

    /// Warns (does not fail) when a file holding a secret or private key, already read, can be
    /// read or written by users other than its owner.
    pub(super) fn check_secret_file_mode(&mut self, key: &str, path: &Path) {
        if let Some(mode) = loose_mode(path) {
            let how = if mode & 0o044 != 0 {
                "readable"
            } else {
                "writable"
            };
            self.warnings.push(format!(
                "{key}: {} is {how} by other users (mode {mode:04o}); chmod 600 it",
                path.display()
            ));
        }
    }

    fn certificate(&mut self, raw: RawCertificate) -> Option<CertificateCredential> {
        let cert = match raw.cert {
            None => {
                self.problem(
                    "app.certificate.cert",
                    "is required: the PEM certificate file",
                );
                None
            }
            Some(cert) => {
                let path = self.resolve(&cert);
                match first_certificate(&path) {
                    Ok(der) => Some((der, path)),
                    Err(message) => {
                        self.problem("app.certificate.cert", message);
                        None
                    }
                }
            }
        };
        let key = match raw.key {
            None => {
                self.problem(
                    "app.certificate.key",
                    "is required: the PEM private key file",
                );
                None
            }
            Some(key) => {
                let path = self.resolve(&key);
                match private_key(&path) {
                    Ok((der, format)) => {
                        self.check_secret_file_mode("app.certificate.key", &path);
                        Some((der, format, path))
                    }
                    Err(message) => {
                        self.problem("app.certificate.key", message);
                        None
                    }
                }
            }
        };
        let ((cert_der, cert_path), (key_der, key_format, key_path)) = (cert?, key?);
        Some(CertificateCredential {
            cert_der,
            key_der: Arc::new(key_der),
            key_format,
            cert_path,
            key_path,
        })
    }
}

fn first_certificate(path: &Path) -> Result<Vec<u8>, String> {
    let mut certs = CertificateDer::pem_file_iter(path).map_err(|e| pem_problem(path, &e))?;
    match certs.next() {
        Some(Ok(cert)) => Ok(cert.to_vec()),
        Some(Err(e)) => Err(pem_problem(path, &e)),
        None => Err(format!(
            "no PEM certificate (BEGIN CERTIFICATE) in {}",
            path.display()
        )),
    }
}

pub(super) fn count_certificates(path: &Path) -> Result<usize, String> {
    read_certificates(path).map(|certs| certs.len())
}

/// Every certificate of a PEM file; at least one.
pub(super) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| pem_problem(path, &e))? {
        certs.push(cert.map_err(|e| pem_problem(path, &e))?);
    }
    if certs.is_empty() {
        return Err(format!(
            "no PEM certificate (BEGIN CERTIFICATE) in {}",
            path.display()
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<(SecretBox<Vec<u8>>, KeyFormat), String> {
    let secret = |der: &[u8]| SecretBox::new(Box::new(der.to_vec()));
    match read_private_key(path)? {
        PrivateKeyDer::Pkcs8(key) => Ok((secret(key.secret_pkcs8_der()), KeyFormat::Pkcs8)),
        PrivateKeyDer::Pkcs1(key) => Ok((secret(key.secret_pkcs1_der()), KeyFormat::Pkcs1)),
        _ => Err(format!(
            "{} holds a key in a format other than PKCS#8 or PKCS#1; convert it with \
             `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pkcs8`",
            path.display()
        )),
    }
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file. Messages name the file, never
/// its content.
pub(super) fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    match PrivateKeyDer::from_pem_file(path) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(format!(
            "no unencrypted private key (BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or \
             BEGIN EC PRIVATE KEY) in {}",
            path.display()
        )),
        // Only the I/O error's text is shown: the others could quote the key file's content.
        Err(pem::Error::Io(e)) => Err(format!("cannot read {}: {e}", path.display())),
        Err(_) => Err(format!("{} is not a valid PEM key file", path.display())),
    }
}

/// The file's permission bits when group or others have any access to it (`mode & 0o077`).
#[cfg(unix)]
fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn loose_mode(_: &Path) -> Option<u32> {
    None
}

fn pem_problem(path: &Path, e: &pem::Error) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read {}: {e}", path.display()),
        other => format!("{} is not a valid PEM file: {other}", path.display()),
    }
}
