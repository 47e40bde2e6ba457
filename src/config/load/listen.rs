//! The client side of the proxy: `[listen]` (who may listen where, request hardening limits) and
//! `[listen.tls]` (HTTPS, and mTLS with `client_ca`).

use std::net::SocketAddr;
use std::path::Path;

use rustls::crypto::ring::default_provider;
use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::app::{count_certificates, read_certificates, read_private_key};
use super::{is_loopback_ip, Validator};
use crate::config::raw::{RawListen, RawServerTls};
use crate::config::{defaults, ConnectionOverflow, ListenConfig, ListenLimits, ServerTlsConfig};

/// Largest `max_header_bytes`: beyond this a header block is an attack, not a request.
const MAX_HEADER_BYTES_LIMIT: u64 = 1024 * 1024;

/// What authenticates clients besides `[listen]` itself.
#[derive(Clone, Copy)]
pub(super) struct InboundAuth {
    /// At least one `[[client]]` is written (valid or not: its own problems are reported apart).
    pub(super) clients: bool,
}

impl Validator<'_> {
    /// `[listen]` except `addr`, which the caller parsed (it is also checked against `admin.addr`).
    pub(super) fn listen(
        &mut self,
        raw: RawListen,
        addr: Option<SocketAddr>,
        auth: InboundAuth,
    ) -> Option<ListenConfig> {
        let allow_unauthenticated = raw.allow_unauthenticated.unwrap_or(false);
        let mtls = raw.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        if let Some(addr) = addr {
            // Off loopback, anyone who reaches the port could use every tenant's token unless
            // something identifies clients.
            if !is_loopback_ip(addr.ip()) && !auth.clients && !mtls && !allow_unauthenticated {
                self.problem(
                    "listen.addr",
                    format!(
                        "{addr} is not a loopback address and no inbound authentication is \
                         configured, so anyone who can reach it could call every tenant's API; \
                         listen on loopback, add [[client]] entries or a [listen.tls] client_ca, \
                         or set allow_unauthenticated = true in [listen] to accept that"
                    ),
                );
            }
        }
        let limits = self.listen_limits(&raw);
        let public_url = self.public_url(raw.public_url.clone());
        let shutdown_grace = self.duration(
            "listen.shutdown_grace",
            raw.shutdown_grace.clone(),
            defaults::SHUTDOWN_GRACE,
        );
        let tls = match raw.tls {
            None => Some(None),
            Some(tls) => self.server_tls("listen.tls", tls).map(Some),
        };
        Some(ListenConfig {
            addr: addr?,
            allow_unauthenticated,
            tls: tls?,
            limits: limits?,
            shutdown_grace: shutdown_grace?,
            public_url: public_url?,
        })
    }

    /// `listen.public_url`: an absolute http(s) URL without query or fragment; a path is kept
    /// (the proxy may be published under one), a trailing slash dropped.
    fn public_url(&mut self, value: Option<String>) -> Option<Option<String>> {
        let Some(value) = value else {
            return Some(None);
        };
        let ok = value
            .parse::<http::Uri>()
            .ok()
            .filter(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.authority().is_some()
                    && u.query().is_none()
            })
            .is_some()
            && !value.contains('#');
        if !ok {
            self.problem(
                "listen.public_url",
                format!("'{value}' is not an absolute http(s) URL without a query (e.g. https://defender.soc.example)"),
            );
            return None;
        }
        Some(Some(value.trim_end_matches('/').to_owned()))
    }

    fn listen_limits(&mut self, raw: &RawListen) -> Option<ListenLimits> {
        let d = ListenLimits::default();
        let u32_max = u64::from(u32::MAX);
        let max_header_bytes = self.bounded(
            "listen.max_header_bytes",
            raw.max_header_bytes,
            d.max_header_bytes as u64,
            1024,
            MAX_HEADER_BYTES_LIMIT,
        );
        let header_timeout = self.duration(
            "listen.header_timeout",
            raw.header_timeout.clone(),
            defaults::HEADER_TIMEOUT,
        );
        let idle_timeout = self.duration(
            "listen.idle_timeout",
            raw.idle_timeout.clone(),
            defaults::IDLE_TIMEOUT,
        );
        let max_connections = self.bounded(
            "listen.max_connections",
            raw.max_connections,
            d.max_connections as u64,
            1,
            u32_max,
        );
        let on_max_connections = match raw.on_max_connections.as_deref() {
            None => Some(d.on_max_connections),
            Some("queue") => Some(ConnectionOverflow::Queue),
            Some("refuse") => Some(ConnectionOverflow::Refuse),
            Some(other) => {
                self.problem(
                    "listen.on_max_connections",
                    format!("`{other}` is neither \"queue\" nor \"refuse\""),
                );
                None
            }
        };
        let max_body_bytes = match raw.max_body_bytes {
            None | Some(0) => Some(None),
            Some(n) => match u64::try_from(n) {
                Ok(n) => Some(Some(n)),
                Err(_) => {
                    self.problem(
                        "listen.max_body_bytes",
                        "must not be negative (0: no limit)",
                    );
                    None
                }
            },
        };
        let body_idle_timeout = self.duration(
            "listen.body_idle_timeout",
            raw.body_idle_timeout.clone(),
            defaults::BODY_IDLE_TIMEOUT,
        );
        let h2_streams = self.bounded(
            "listen.h2_max_concurrent_streams",
            raw.h2_max_concurrent_streams,
            u64::from(d.h2_max_concurrent_streams),
            1,
            u32_max,
        );
        let h2_header_list = self.bounded(
            "listen.h2_max_header_list_size",
            raw.h2_max_header_list_size,
            u64::from(d.h2_max_header_list_size),
            1024,
            u32_max,
        );
        // The bounds above make every conversion below lossless.
        Some(ListenLimits {
            max_header_bytes: usize::try_from(max_header_bytes?).ok()?,
            header_timeout: header_timeout?,
            idle_timeout: idle_timeout?,
            max_connections: usize::try_from(max_connections?).ok()?,
            on_max_connections: on_max_connections?,
            max_body_bytes: max_body_bytes?,
            body_idle_timeout: body_idle_timeout?,
            h2_max_concurrent_streams: u32::try_from(h2_streams?).ok()?,
            h2_max_header_list_size: u32::try_from(h2_header_list?).ok()?,
        })
    }

    /// An integer key within `min..=max`, or `default` when not written.
    fn bounded(
        &mut self,
        key: &str,
        value: Option<i64>,
        default: u64,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let Some(value) = value else {
            return Some(default);
        };
        match u64::try_from(value) {
            Ok(v) if v < min => self.problem(key, format!("must be at least {min}")),
            Err(_) => self.problem(key, format!("must be at least {min}")),
            Ok(v) if v > max => self.problem(key, format!("must be at most {max}")),
            Ok(v) => return Some(v),
        }
        None
    }

    /// `[listen.tls]`: the files must be usable now; they are read again when the listener's TLS
    /// config is built, so this is an early check, not the only one.
    /// `at`: the table (`listen.tls`, `onboarding.tls`).
    pub(super) fn server_tls(&mut self, at: &str, raw: RawServerTls) -> Option<ServerTlsConfig> {
        let key_of = |name: &str| format!("{at}.{name}");
        let cert = match raw.cert {
            None => {
                self.problem(
                    &key_of("cert"),
                    "is required: the server's PEM certificate chain",
                );
                None
            }
            Some(cert) => {
                let path = self.resolve_watched(&cert);
                match read_certificates(&path) {
                    Ok(chain) => Some((path, chain)),
                    Err(message) => {
                        self.problem(&key_of("cert"), message);
                        None
                    }
                }
            }
        };
        let key = match raw.key {
            None => {
                self.problem(&key_of("key"), "is required: the server's PEM private key");
                None
            }
            Some(key) => {
                let path = self.resolve_watched(&key);
                match read_private_key(&path) {
                    Ok(der) => {
                        self.check_secret_file_mode(&key_of("key"), &path);
                        Some((path, der))
                    }
                    Err(message) => {
                        self.problem(&key_of("key"), message);
                        None
                    }
                }
            }
        };
        let mut usable = true;
        if let (Some((cert_path, chain)), Some((key_path, der))) = (&cert, &key) {
            if let Err((key, message)) = key_fits_certificate(cert_path, chain, key_path, der) {
                self.problem(&key_of(key), message);
                usable = false;
            }
        }
        let client_ca = match raw.client_ca {
            None => Some(None),
            Some(ca) => {
                let path = self.resolve_watched(&ca);
                match count_certificates(&path) {
                    Ok(_) => Some(Some(path)),
                    Err(message) => {
                        self.problem(&key_of("client_ca"), message);
                        None
                    }
                }
            }
        };
        let (cert, key) = (cert?.0, key?.0);
        usable.then_some(ServerTlsConfig {
            cert,
            key,
            client_ca: client_ca?,
        })
    }
}

/// The key must be one rustls can sign with and belong to the first (end-entity) certificate.
/// Problems come with the key they belong on; messages name the files, never the key.
fn key_fits_certificate(
    cert_path: &Path,
    chain: &[CertificateDer<'static>],
    key_path: &Path,
    key: &PrivateKeyDer<'static>,
) -> Result<(), (&'static str, String)> {
    // The error names the key within its table (`key`, `cert`).
    let provider = default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|_| {
            (
                "key",
                format!(
                    "{} holds a key type the TLS stack cannot use (RSA, ECDSA P-256/P-384 or \
                     Ed25519 are)",
                    key_path.display()
                ),
            )
        })?;
    match CertifiedKey::new(chain.to_vec(), signing_key).keys_match() {
        Ok(()) | Err(TlsError::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(()),
        Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err((
            "key",
            format!(
                "{} is not the key of the first certificate in {}",
                key_path.display(),
                cert_path.display()
            ),
        )),
        Err(e) => Err((
            "cert",
            format!(
                "the first certificate in {} cannot be used: {e}",
                cert_path.display()
            ),
        )),
    }
}
