//! The app's identity: its client id, and exactly one credential: a secret from the environment
//! or a file, a certificate and key, or a workload identity token file.
//!
//! Workload identity follows the Azure SDKs' environment contract (`AZURE_CLIENT_ID`,
//! `AZURE_FEDERATED_TOKEN_FILE`, injected by the AKS workload identity webhook), so a sidecar can
//! run with an `[app]` section that names nothing but what the file doesn't get from the Pod.
//!
//! `[app]` and every `[apps.NAME]` go through the same [`Validator::app`], with every key and rule
//! (secret sources, file modes, watched files), problems on their own keys (`apps.NAME.client_id`).
//! Only `[app]` takes the environment's `AZURE_CLIENT_ID` and `AZURE_FEDERATED_TOKEN_FILE`: they
//! describe the Pod's own identity, and a named app (a customer's own, say) is never that, so it
//! must write its client id and credential.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{SecretBox, SecretString};

use super::{is_guid, Validator};
use crate::config::raw::{RawApp, RawCertificate, RawSecret};
use crate::config::{AppConfig, CertificateCredential, Credential, FederatedCredential, KeyFormat};

/// The app's client id, as the Azure SDKs and the workload identity webhook name it.
const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
/// The projected service account token, as the Azure SDKs and the webhook name it.
const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";

/// Whose app a section describes, which decides whether the environment may fill in for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AppSection {
    /// `[app]`: the partner's own app, which the workload identity environment
    /// (`AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`) describes when the file leaves it out.
    Default,
    /// `[apps.NAME]`: typically a customer's own app. The environment describes the Pod's
    /// identity, never a customer's app, so such a table must say its client id and credential.
    Named,
}

/// An app's client id and credential, each `None` when it has a problem (reported).
pub(super) struct AppParts {
    pub(super) client_id: Option<String>,
    pub(super) credential: Option<Credential>,
}

impl AppParts {
    pub(super) fn config(self) -> Option<AppConfig> {
        Some(AppConfig {
            client_id: self.client_id?,
            credential: self.credential?,
        })
    }
}

impl Validator<'_> {
    /// `[app]` or an `[apps.NAME]` (at `at`: `app`, `apps.NAME`); problems are put on its keys.
    pub(super) fn app(&mut self, at: &str, raw: RawApp, section: AppSection) -> AppParts {
        let client_id = self.client_id(at, raw.client_id, section);
        let RawApp {
            client_secret,
            certificate,
            federated_token_file,
            ..
        } = raw;
        let given: Vec<&str> = [
            client_secret.as_ref().map(|_| "client_secret"),
            certificate.as_ref().map(|_| "certificate"),
            federated_token_file
                .as_ref()
                .map(|_| "federated_token_file"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let key = |name: &str| format!("{at}.{name}");
        let credential =
            if let Some((last, rest)) = given.split_last().filter(|(_, r)| !r.is_empty()) {
                // On the last one given: the key an operator most likely just added.
                let found = match rest {
                    [one] => format!("both {one} and {last}"),
                    _ => format!("{} and {last}", rest.join(", ")),
                };
                self.problem(
                    &key(last),
                    format!(
                        "set only one of client_secret, certificate or federated_token_file \
                     (found {found})"
                    ),
                );
                None
            } else if let Some(secret) = client_secret {
                self.secret(&key("client_secret"), secret)
                    .map(Credential::Secret)
            } else if let Some(cert) = certificate {
                self.certificate(at, cert).map(Credential::Certificate)
            } else if let Some(file) = federated_token_file {
                self.federated(&key("federated_token_file"), &file, None)
                    .map(Credential::Federated)
            } else {
                self.credential_from_env(at, section)
            };
        AppParts {
            client_id,
            credential,
        }
    }

    /// `client_id`, or for `[app]` `AZURE_CLIENT_ID` as the Azure SDKs read it (a workload
    /// identity webhook injects the app's id there).
    fn client_id(&mut self, at: &str, id: Option<String>, section: AppSection) -> Option<String> {
        let key = format!("{at}.client_id");
        if let Some(id) = id {
            return self.guid(&key, &id);
        }
        let message = match (section, self.env_var(AZURE_CLIENT_ID)) {
            (AppSection::Named, _) => {
                "is required: the application (client) id of this Entra ID app".to_owned()
            }
            (AppSection::Default, Some(id)) if is_guid(&id) => {
                return Some(id.to_ascii_lowercase())
            }
            (AppSection::Default, Some(id)) => format!(
                "not set, and {AZURE_CLIENT_ID} = `{id}` is not a GUID like \
                 11111111-2222-3333-4444-555555555555"
            ),
            (AppSection::Default, None) => format!(
                "is required: the application (client) id of the partner's Entra ID app (or set \
                 {AZURE_CLIENT_ID})"
            ),
        };
        self.problem(&key, message);
        None
    }

    /// The credential of an app whose table names none: for `[app]` `AZURE_FEDERATED_TOKEN_FILE`
    /// (only then: an explicit one always wins over what a workload identity webhook put in the
    /// environment), otherwise a problem on the table.
    fn credential_from_env(&mut self, at: &str, section: AppSection) -> Option<Credential> {
        const SET_ONE: &str = "no credential: set client_secret = { env = \"...\" } or \
             { file = \"...\" }, certificate = { cert = \"...\", key = \"...\" }, or \
             federated_token_file";
        let message = match section {
            AppSection::Default => match self.env_var(AZURE_FEDERATED_TOKEN_FILE) {
                Some(file) => {
                    return self
                        .federated(at, &file, Some(AZURE_FEDERATED_TOKEN_FILE))
                        .map(Credential::Federated)
                }
                None => format!(
                    "{SET_ONE} (or run with {AZURE_FEDERATED_TOKEN_FILE} set, as workload \
                     identity does)"
                ),
            },
            AppSection::Named => format!(
                "{SET_ONE} ({AZURE_FEDERATED_TOKEN_FILE} from the environment is [app]'s only)"
            ),
        };
        self.problem(at, message);
        None
    }

    /// An environment variable that is set and not empty (the Azure SDKs treat empty as unset).
    fn env_var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }

    /// A workload identity token file: the path is kept, the content is not (it rotates and is
    /// read for every token request). The file must be readable and non-empty now, so a typo
    /// fails at start rather than at the first request. `from_env` names the variable the path
    /// came from, for messages.
    fn federated(
        &mut self,
        key: &str,
        file: &str,
        from_env: Option<&str>,
    ) -> Option<FederatedCredential> {
        let origin = from_env
            .map(|var| format!(" (from {var})"))
            .unwrap_or_default();
        if file.trim().is_empty() {
            self.problem(
                key,
                "must not be empty: the path of the federated token file",
            );
            return None;
        }
        // A path from the environment is the process's business, not relative to the config.
        let path = match from_env {
            Some(_) => PathBuf::from(file),
            None => self.resolve(file),
        };
        // The content is never put in a message: it is a bearer credential.
        match std::fs::read_to_string(&path) {
            Err(e) => {
                self.problem(
                    key,
                    format!(
                        "cannot read federated token file {}{origin}: {e}",
                        path.display()
                    ),
                );
                None
            }
            Ok(text) if text.trim().is_empty() => {
                self.problem(
                    key,
                    format!("federated token file {}{origin} is empty", path.display()),
                );
                None
            }
            Ok(_) => Some(FederatedCredential { path }),
        }
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
                let path = self.resolve_watched(&file);
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

    fn certificate(&mut self, at: &str, raw: RawCertificate) -> Option<CertificateCredential> {
        let (cert_key, key_key) = (
            format!("{at}.certificate.cert"),
            format!("{at}.certificate.key"),
        );
        let cert = match raw.cert {
            None => {
                self.problem(&cert_key, "is required: the PEM certificate file");
                None
            }
            Some(cert) => {
                let path = self.resolve_watched(&cert);
                match first_certificate(&path) {
                    Ok(der) => Some((der, path)),
                    Err(message) => {
                        self.problem(&cert_key, message);
                        None
                    }
                }
            }
        };
        let key = match raw.key {
            None => {
                self.problem(&key_key, "is required: the PEM private key file");
                None
            }
            Some(key) => {
                let path = self.resolve_watched(&key);
                match private_key(&path) {
                    Ok((der, format)) => {
                        self.check_secret_file_mode(&key_key, &path);
                        Some((der, format, path))
                    }
                    Err(message) => {
                        self.problem(&key_key, message);
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
