//! Server-side TLS for the client listener: the rustls config built from `[listen.tls]`, the
//! acceptor that lets a reload swap it, and the identity a verified client certificate names.
//!
//! With `client_ca`, rustls' webpki verifier refuses a client without a valid certificate during
//! the handshake, so no request from it is ever parsed. The certificate's names are read only
//! after that verification; nothing here decides what a name may do (that is [`super::auth`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use crate::config::ServerTlsConfig;

/// Why the listener's TLS config could not be built; every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    /// `cert` could not be read or is not PEM.
    #[error("cannot read certificate file {}: {source}", path.display())]
    ReadCert {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    /// `cert` holds no `CERTIFICATE` block.
    #[error("certificate file {} holds no certificate", path.display())]
    EmptyCert { path: PathBuf },
    /// `key` could not be read or holds no private key.
    #[error("cannot read private key file {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    /// `client_ca` could not be read or is not PEM.
    #[error("cannot read client CA file {}: {source}", path.display())]
    ReadClientCa {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    /// `client_ca` holds no certificate usable as a trust anchor.
    #[error("client CA file {} holds no usable CA certificate", path.display())]
    EmptyClientCa { path: PathBuf },
    /// rustls refused to build a client verifier from `client_ca`.
    #[error("client CA file {} cannot be used to verify clients: {source}", path.display())]
    ClientVerifier {
        path: PathBuf,
        #[source]
        source: VerifierBuilderError,
    },
    /// The crypto provider lacks TLS 1.2 or 1.3 (not with ring).
    #[error("the TLS provider does not support TLS 1.2 and 1.3: {0}")]
    Versions(#[source] rustls::Error),
    /// The key does not belong to the certificate, or either is unusable.
    #[error(
        "certificate {} and key {} do not make a usable server identity: {source}",
        cert.display(),
        key.display()
    )]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Builds the listener's rustls config from `[listen.tls]`: ring, TLS 1.2 and 1.3, ALPN `h2` then
/// `http/1.1`, and with `client_ca` a verifier that requires a client certificate chaining to it.
///
/// The files are read on every call, so calling it again on reload picks up rotated files.
pub fn server_config(cfg: &ServerTlsConfig) -> Result<Arc<rustls::ServerConfig>, ServerTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certs(&cfg.cert).map_err(|source| ServerTlsError::ReadCert {
        path: cfg.cert.clone(),
        source,
    })?;
    if chain.is_empty() {
        return Err(ServerTlsError::EmptyCert {
            path: cfg.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|source| ServerTlsError::ReadKey {
        path: cfg.key.clone(),
        source,
    })?;

    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(ServerTlsError::Versions)?;
    let builder = match &cfg.client_ca {
        Some(ca) => {
            let roots = client_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|source| ServerTlsError::ClientVerifier {
                    path: ca.clone(),
                    source,
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    // with_single_cert also checks that the key belongs to the certificate, so a half-rotated
    // pair is caught here (and a reload keeps the old config) rather than at the first handshake.
    let mut config =
        builder
            .with_single_cert(chain, key)
            .map_err(|source| ServerTlsError::Identity {
                cert: cfg.cert.clone(),
                key: cfg.key.clone(),
                source,
            })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, pem::Error> {
    CertificateDer::pem_file_iter(path)?.collect()
}

fn client_roots(path: &Path) -> Result<RootCertStore, ServerTlsError> {
    let certs = read_certs(path).map_err(|source| ServerTlsError::ReadClientCa {
        path: path.to_owned(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ServerTlsError::EmptyClientCa {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

/// Accepts TLS connections with the current config. A reload [`swap`](Self::swap)s in a new one:
/// handshakes after that use it, connections already open keep theirs.
pub struct TlsAcceptor {
    config: ArcSwap<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// An acceptor using `config` (from [`server_config`]).
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        TlsAcceptor {
            config: ArcSwap::new(config),
        }
    }

    /// Replaces the config for every later handshake, without touching open connections.
    pub fn swap(&self, new: Arc<rustls::ServerConfig>) {
        self.config.store(new);
    }

    /// Runs the server handshake on `io` (a `TcpStream` in the proxy, anything in tests). The
    /// caller bounds it with its handshake timeout. A client refused by the verifier (no
    /// certificate, or one from another CA) makes this an error.
    ///
    /// The identity is `Some` only when a client certificate was presented and verified.
    pub async fn accept<IO>(&self, io: IO) -> io::Result<(TlsStream<IO>, Option<PeerIdentity>)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.load_full());
        let stream = acceptor.accept(io).await?;
        // rustls only reports peer certificates that its verifier accepted (also on resumption,
        // where they come from the verified original session).
        let identity = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(<[_]>::first)
            .and_then(PeerIdentity::from_cert);
        Ok((stream, identity))
    }
}

/// Who a verified client certificate says the client is: its subject CN(s) then its DNS SANs,
/// lower-cased, without duplicates. `[[client]] cert_subject` is matched against any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    names: Vec<String>,
}

impl PeerIdentity {
    /// Reads the names of `cert`. It does not verify anything: call it only on a certificate the
    /// handshake verified. `None` when the certificate names nothing usable.
    pub(crate) fn from_cert(cert: &CertificateDer<'_>) -> Option<Self> {
        let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
        let dns = parsed.valid_dns_names().map(str::to_owned);
        Self::from_names(common_names(parsed.subject()).into_iter().chain(dns))
    }

    /// Lower-cases and deduplicates `names`; `None` when none is left.
    pub(crate) fn from_names(names: impl IntoIterator<Item = String>) -> Option<Self> {
        let mut out: Vec<String> = Vec::new();
        for name in names {
            let name = name.to_lowercase();
            if !name.is_empty() && !out.contains(&name) {
                out.push(name);
            }
        }
        (!out.is_empty()).then_some(PeerIdentity { names: out })
    }

    /// Every name: subject CNs first, then DNS SANs.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The name to show in logs: the first one (the CN when there is one).
    pub fn display(&self) -> &str {
        self.names.first().map_or("", String::as_str)
    }
}

/// OID 2.5.4.3 (commonName), DER content bytes.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];

/// The commonName values of a DER `Name` (content of the outer SEQUENCE, as webpki gives it).
/// A full X.509 parser for one attribute would be a heavy dependency; the certificate was already
/// parsed and verified by webpki, so this only walks RDN sets and gives up on anything odd.
fn common_names(subject: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rdns = subject;
    while let Some((0x31, mut set, rest)) = tlv(rdns) {
        rdns = rest;
        while let Some((0x30, attribute, next)) = tlv(set) {
            set = next;
            if let Some((0x06, oid, value)) = tlv(attribute) {
                if oid == OID_CN {
                    if let Some(name) = tlv(value).and_then(|(tag, v, _)| directory_string(tag, v))
                    {
                        out.push(name);
                    }
                }
            }
        }
    }
    out
}

/// One DER element: (tag, content, rest). Single-byte tags and lengths up to 4 bytes suffice
/// for names.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (len_bytes, rest) = rest.split_at_checked(n)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// A DirectoryString as text: UTF8String, PrintableString, IA5String, TeletexString (ASCII
/// only, as everyone uses it) and BMPString.
fn directory_string(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        0x0c => String::from_utf8(value.to_vec()).ok(),
        0x13 | 0x16 | 0x14 if value.is_ascii() => String::from_utf8(value.to_vec()).ok(),
        0x1e if value.len().is_multiple_of(2) => {
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cert_with(cn: Option<rcgen::DnValue>, sans: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example SOC");
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn identity_is_cn_then_dns_sans_lower_cased_and_deduplicated() {
        let cert = cert_with(
            Some(rcgen::DnValue::Utf8String("Grafana.SOC.example".into())),
            &["grafana.soc.example", "Alt.Example", "10.0.0.1"],
        );
        let id = PeerIdentity::from_cert(&cert).unwrap();
        assert_eq!(id.names(), ["grafana.soc.example", "alt.example"]);
        assert_eq!(id.display(), "grafana.soc.example");
    }

    #[test]
    fn reads_printable_and_bmp_common_names() {
        let printable = rcgen::DnValue::PrintableString("dev-client".try_into().unwrap());
        let id = PeerIdentity::from_cert(&cert_with(Some(printable), &[])).unwrap();
        assert_eq!(id.names(), ["dev-client"]);
        let bmp = rcgen::DnValue::BmpString("Zürich-Agent".try_into().unwrap());
        let id = PeerIdentity::from_cert(&cert_with(Some(bmp), &[])).unwrap();
        assert_eq!(id.names(), ["zürich-agent"]);
    }

    #[test]
    fn a_certificate_without_names_is_no_identity() {
        assert_eq!(PeerIdentity::from_cert(&cert_with(None, &[])), None);
        assert_eq!(
            PeerIdentity::from_cert(&CertificateDer::from(vec![1, 2])),
            None
        );
    }

    #[test]
    fn truncated_der_is_not_read_past_its_end() {
        assert_eq!(tlv(&[0x30, 0x05, 1, 2]), None);
        assert_eq!(tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(
            tlv(&[0x30, 0x81, 0x01, 7]),
            Some((0x30, &[7u8][..], &[][..]))
        );
        assert!(common_names(&[0x31, 0x03, 0x30, 0x09]).is_empty());
    }

    #[test]
    fn missing_files_are_named_in_the_error() {
        let cfg = ServerTlsConfig {
            cert: PathBuf::from("/nonexistent/server.pem"),
            key: PathBuf::from("/nonexistent/server-key.pem"),
            client_ca: None,
        };
        let err = server_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/server.pem"), "{err}");
    }
}
