//! Tests of the dev certificates through real rustls handshakes with the listener's config
//! (`tls::server_config`, `tls::TlsAcceptor`), over an in-memory duplex pipe.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::*;
use crate::config::ServerTlsConfig;
use crate::inbound::tls::{server_config, PeerIdentity, TlsAcceptor};

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "dp-certs-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ))
}

fn tls_config(certs: &DevCerts, mtls: bool) -> ServerTlsConfig {
    ServerTlsConfig {
        cert: certs.server_cert.clone(),
        key: certs.server_key.clone(),
        client_ca: mtls.then(|| certs.ca_cert.clone()),
    }
}

/// A client trusting `ca`, presenting `identity` (cert, key) when given, offering h2.
fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            builder
                .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
                .unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Runs both sides of a handshake; the server's outcome is what matters (in TLS 1.3 a client
/// may finish before the server refuses its certificate).
async fn handshake(
    acceptor: &TlsAcceptor,
    client: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> (
    std::io::Result<Option<PeerIdentity>>,
    std::io::Result<Vec<u8>>,
) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    // Both streams live until both sides are done: a client that hung up at once would make
    // the server's post-handshake writes (TLS 1.3 tickets) fail.
    let (server, client) = tokio::join!(
        acceptor.accept(server_io),
        connector.connect(name, client_io)
    );
    let alpn = client.map(|c| c.get_ref().1.alpn_protocol().unwrap_or_default().to_vec());
    (server.map(|(_, peer)| peer), alpn)
}

#[tokio::test]
async fn dev_certificates_make_a_working_mtls_pair() {
    let dir = temp_dir();
    let certs = write_dev_certs(&dir).unwrap();
    for path in certs.all() {
        assert!(
            path.starts_with(&dir) && path.is_file(),
            "{}",
            path.display()
        );
    }
    let acceptor = TlsAcceptor::new(server_config(&tls_config(&certs, true)).unwrap());
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        for server_name in ["localhost", "127.0.0.1", "::1"] {
            let client = client_config(
                &certs.ca_cert,
                Some((&certs.client_cert, &certs.client_key)),
                version,
            );
            let (server, alpn) = handshake(&acceptor, client, server_name).await;
            let peer = server.unwrap().unwrap();
            assert_eq!(peer.names(), [DEV_CLIENT_NAME]);
            assert_eq!(peer.display(), DEV_CLIENT_NAME);
            assert_eq!(alpn.unwrap(), b"h2");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn with_client_ca_a_client_without_a_certificate_is_refused() {
    let dir = temp_dir();
    let certs = write_dev_certs(&dir).unwrap();
    let acceptor = TlsAcceptor::new(server_config(&tls_config(&certs, true)).unwrap());
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let client = client_config(&certs.ca_cert, None, version);
        let (server, _) = handshake(&acceptor, client, "localhost").await;
        let err = server.unwrap_err().to_string();
        assert!(err.contains("no certificates"), "{version:?}: {err}");
    }
    // Without client_ca the same client is welcome and has no identity.
    let open = TlsAcceptor::new(server_config(&tls_config(&certs, false)).unwrap());
    let client = client_config(&certs.ca_cert, None, &rustls::version::TLS13);
    let (server, _) = handshake(&open, client, "localhost").await;
    assert_eq!(server.unwrap(), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let (dir, other_dir) = (temp_dir(), temp_dir());
    let certs = write_dev_certs(&dir).unwrap();
    let other = write_dev_certs(&other_dir).unwrap();
    let acceptor = TlsAcceptor::new(server_config(&tls_config(&certs, true)).unwrap());
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        // Trusts the right server, but presents a client certificate of another CA.
        let client = client_config(
            &certs.ca_cert,
            Some((&other.client_cert, &other.client_key)),
            version,
        );
        let (server, _) = handshake(&acceptor, client, "localhost").await;
        let err = server.unwrap_err().to_string();
        assert!(err.contains("UnknownIssuer"), "{version:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other_dir);
}

#[tokio::test]
async fn swapping_the_config_changes_later_handshakes() {
    let (dir, other_dir) = (temp_dir(), temp_dir());
    let certs = write_dev_certs(&dir).unwrap();
    let other = write_dev_certs(&other_dir).unwrap();
    let acceptor = TlsAcceptor::new(server_config(&tls_config(&certs, false)).unwrap());
    let trusts_first = || client_config(&certs.ca_cert, None, &rustls::version::TLS13);
    assert!(handshake(&acceptor, trusts_first(), "localhost")
        .await
        .1
        .is_ok());
    acceptor.swap(server_config(&tls_config(&other, false)).unwrap());
    assert!(handshake(&acceptor, trusts_first(), "localhost")
        .await
        .1
        .is_err());
    let trusts_other = client_config(&other.ca_cert, None, &rustls::version::TLS13);
    assert!(handshake(&acceptor, trusts_other, "localhost")
        .await
        .1
        .is_ok());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other_dir);
}

#[test]
fn existing_files_are_never_overwritten() {
    let dir = temp_dir();
    let first = write_dev_certs(&dir).unwrap();
    let before = std::fs::read(&first.ca_cert).unwrap();
    match write_dev_certs(&dir) {
        Err(CertsError::Exists(path)) => assert_eq!(path, first.ca_cert),
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(std::fs::read(&first.ca_cert).unwrap(), before);
    // Any one of the six is enough to refuse, and the message names it.
    let only_client_key = temp_dir();
    std::fs::create_dir_all(&only_client_key).unwrap();
    std::fs::write(only_client_key.join("client-key.pem"), "x").unwrap();
    let err = write_dev_certs(&only_client_key).unwrap_err();
    assert!(err.to_string().contains("client-key.pem"), "{err}");
    assert!(!only_client_key.join("ca.pem").exists());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&only_client_key);
}

#[cfg(unix)]
#[test]
fn private_keys_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let certs = write_dev_certs(&dir).unwrap();
    for key in [&certs.ca_key, &certs.server_key, &certs.client_key] {
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    let mode = std::fs::metadata(&certs.ca_cert)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077 & !0o044, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_files_parse_as_what_they_claim() {
    let dir = temp_dir();
    let certs = write_dev_certs(&dir).unwrap();
    for cert in [&certs.ca_cert, &certs.server_cert, &certs.client_cert] {
        assert_eq!(CertificateDer::pem_file_iter(cert).unwrap().count(), 1);
    }
    for key in [&certs.ca_key, &certs.server_key, &certs.client_key] {
        assert!(PrivateKeyDer::from_pem_file(key).is_ok());
    }
    let client = CertificateDer::from_pem_file(&certs.client_cert).unwrap();
    let id = PeerIdentity::from_cert(&client).unwrap();
    assert_eq!(id.names(), [DEV_CLIENT_NAME]);
    let _ = std::fs::remove_dir_all(&dir);
}
