//! `defender-proxy certs dev --out DIR`: a throwaway CA, a server certificate for the loopback
//! names and a client certificate, so HTTPS and mTLS can be tried in a minute.
//!
//! Everything is generated fresh on the operator's machine (no private key ships with the
//! project), keys are written readable by the owner only, and existing files are never
//! overwritten: a second run must not silently replace a CA that clients already trust.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The client certificate's CN and DNS SAN: what `[[client]] cert_subject` names.
pub const DEV_CLIENT_NAME: &str = "dev-client";

/// Where [`write_dev_certs`] put each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCerts {
    /// `ca.pem`: trusted by clients (`curl --cacert`) and the `client_ca` of `[listen.tls]`.
    pub ca_cert: PathBuf,
    /// `ca-key.pem`: only needed to sign more certificates.
    pub ca_key: PathBuf,
    /// `server.pem`: `[listen.tls] cert`, for `localhost`, `127.0.0.1` and `::1`.
    pub server_cert: PathBuf,
    /// `server-key.pem`: `[listen.tls] key`.
    pub server_key: PathBuf,
    /// `client.pem`: the mTLS client certificate (`curl --cert`), named [`DEV_CLIENT_NAME`].
    pub client_cert: PathBuf,
    /// `client-key.pem`: its key (`curl --key`).
    pub client_key: PathBuf,
}

impl DevCerts {
    fn in_dir(out: &Path) -> Self {
        DevCerts {
            ca_cert: out.join("ca.pem"),
            ca_key: out.join("ca-key.pem"),
            server_cert: out.join("server.pem"),
            server_key: out.join("server-key.pem"),
            client_cert: out.join("client.pem"),
            client_key: out.join("client-key.pem"),
        }
    }

    fn all(&self) -> [&Path; 6] {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.server_cert,
            &self.server_key,
            &self.client_cert,
            &self.client_key,
        ]
    }
}

/// Why the dev certificates were not written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// One of the six files already exists (its path).
    #[error("{} already exists; not overwriting it (choose another --out or remove it)", .0.display())]
    Exists(PathBuf),
    /// The output directory could not be created.
    #[error("cannot create directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// rcgen failed to make a key or certificate.
    #[error("cannot generate the certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Generates the dev CA, server and client certificates (ECDSA P-256, valid for a year) and
/// writes them into `out` (created if missing). Refuses, before writing anything, if any of the
/// six files exists. Prints nothing; the caller reports the returned paths.
pub fn write_dev_certs(out: &Path) -> Result<DevCerts, CertsError> {
    let paths = DevCerts::in_dir(out);
    if let Some(existing) = paths
        .all()
        .into_iter()
        .find(|p| p.symlink_metadata().is_ok())
    {
        return Err(CertsError::Exists(existing.to_owned()));
    }

    let ca_key = KeyPair::generate()?;
    // A random suffix tells one dev CA from another in trust stores and error messages.
    let ca_name = format!("defender-proxy dev CA {:08x}", fastrand::u32(..));
    let mut ca_params = params(&ca_name, &[])?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key)?;

    let server_key = KeyPair::generate()?;
    let mut server_params = params("localhost", &["localhost", "127.0.0.1", "::1"])?;
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params.signed_by(&server_key, &ca, &ca_key)?;

    let client_key = KeyPair::generate()?;
    let mut client_params = params(DEV_CLIENT_NAME, &[DEV_CLIENT_NAME])?;
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key)?;

    std::fs::create_dir_all(out).map_err(|source| CertsError::CreateDir {
        path: out.to_owned(),
        source,
    })?;
    write_new(&paths.ca_cert, &ca.pem(), false)?;
    write_new(&paths.ca_key, &ca_key.serialize_pem(), true)?;
    write_new(&paths.server_cert, &server.pem(), false)?;
    write_new(&paths.server_key, &server_key.serialize_pem(), true)?;
    write_new(&paths.client_cert, &client.pem(), false)?;
    write_new(&paths.client_key, &client_key.serialize_pem(), true)?;
    Ok(paths)
}

/// Parameters for an end entity or CA named `cn`, valid from a day ago (clock skew) for a year.
fn params(cn: &str, sans: &[&str]) -> Result<CertificateParams, rcgen::Error> {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    params.distinguished_name = name;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    params.use_authority_key_identifier_extension = true;
    if !sans.is_empty() {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    Ok(params)
}

/// Writes `text` to a file that must not exist yet (checked again here, atomically, in case it
/// appeared since the first check); private keys get mode 0600 from their creation on.
fn write_new(path: &Path, text: &str, private: bool) -> Result<(), CertsError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if private { 0o600 } else { 0o644 });
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|source| match source.kind() {
        io::ErrorKind::AlreadyExists => CertsError::Exists(path.to_owned()),
        _ => CertsError::Write {
            path: path.to_owned(),
            source,
        },
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| CertsError::Write {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
#[path = "certs_tests.rs"]
mod tests;
