//! Inbound authentication and authorisation: which `[[client]]` is calling, and whether it may
//! use a tenant and a method.
//!
//! How a request is identified, in order:
//! 1. A verified client certificate (mTLS) whose CN or a DNS SAN equals a client's
//!    `cert_subject` (case-insensitively). It comes first because the handshake proved it; a
//!    key header next to it is then ignored (and stripped before forwarding like any other), so
//!    a tool that sends its own `Authorization` for other reasons keeps working under mTLS.
//! 2. A key: `X-Api-Key: <key>`, or else `Authorization: Bearer <key>`. `X-Api-Key` wins when
//!    both are present because it can only mean this proxy, whereas a tool may put something
//!    else (say, its own Entra token) in `Authorization`. Another `Authorization` scheme is not
//!    a key. The key's SHA-256 is compared in constant time with every key client's hash, always
//!    all of them, so neither timing nor a map lookup tells how close a guess came.
//! 3. Nothing that identifies a client: 401.
//!
//! `HEAD` is allowed wherever `GET` is: it reads the same data, less the body.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use http::{HeaderMap, Method};
use ring::rand::SecureRandom as _;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::tls::PeerIdentity;
use crate::config::{ClientConfig, ClientCredential, TenantAllow};

/// Why a request was not identified: the proxy answers `401 Unauthorized` with this message,
/// which never contains the presented key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No key header and no client certificate that names a client.
    #[error("no API key or client certificate was presented")]
    Missing,
    /// A key was presented and matches no client.
    #[error("the API key is not valid")]
    Invalid,
    /// A verified client certificate was presented, no key, and no client has its name.
    #[error("the client certificate '{0}' is not a configured client")]
    UnknownCertificate(String),
}

/// Why an identified client may not do what it asked: `403 Forbidden` with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// The tenant is not in the client's `tenants`.
    #[error("client '{client}' may not use tenant '{tenant}'")]
    Tenant {
        /// The client's name.
        client: Arc<str>,
        /// The routed tenant's name.
        tenant: String,
    },
    /// The method is not in the client's `methods`.
    #[error("client '{client}' may not use {method}")]
    Method {
        /// The client's name.
        client: Arc<str>,
        /// The refused method.
        method: Method,
    },
}

/// One configured `[[client]]`, as the request path needs it.
pub struct Client {
    /// The client's name, for logs, the audit line and messages.
    pub name: Arc<str>,
    tenants: TenantAllow,
    methods: Option<Vec<Method>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("tenants", &self.tenants)
            .field("methods", &self.methods)
            .finish()
    }
}

impl Client {
    /// Whether this client may send `method` to the tenant named `tenant_name` (the routed
    /// tenant's `name`, not its id). The tenant is checked first, so a client learns nothing about
    /// its method rights for tenants it may not use.
    pub fn may_use(&self, tenant_name: &str, method: &Method) -> Result<(), Forbidden> {
        let tenant_ok = match &self.tenants {
            TenantAllow::All => true,
            TenantAllow::Only(names) => names.iter().any(|n| n == tenant_name),
        };
        if !tenant_ok {
            return Err(Forbidden::Tenant {
                client: Arc::clone(&self.name),
                tenant: tenant_name.to_owned(),
            });
        }
        let method_ok = match &self.methods {
            None => true,
            Some(allowed) => allowed
                .iter()
                .any(|m| m == method || (*method == Method::HEAD && *m == Method::GET)),
        };
        if !method_ok {
            return Err(Forbidden::Method {
                client: Arc::clone(&self.name),
                method: method.clone(),
            });
        }
        Ok(())
    }
}

/// All configured clients, ready to identify requests.
pub struct Clients {
    /// Key clients' SHA-256 hashes, index-aligned with `key_clients`.
    key_hashes: Vec<[u8; 32]>,
    key_clients: Vec<Arc<Client>>,
    /// `(lower-cased cert_subject, client)`.
    cert_clients: Vec<(String, Arc<Client>)>,
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hashes are not secrets, but nothing gains from printing them.
        f.debug_struct("Clients")
            .field("key_clients", &self.key_clients)
            .field("cert_clients", &self.cert_clients)
            .finish()
    }
}

impl Clients {
    /// Builds the lookup tables from the validated `[[client]]` entries.
    pub fn new(clients: &[ClientConfig]) -> Self {
        let mut out = Clients {
            key_hashes: Vec::new(),
            key_clients: Vec::new(),
            cert_clients: Vec::new(),
        };
        for cfg in clients {
            let client = Arc::new(Client {
                name: Arc::from(cfg.name.as_str()),
                tenants: cfg.tenants.clone(),
                methods: cfg.methods.clone(),
            });
            match &cfg.credential {
                ClientCredential::KeySha256(hash) => {
                    out.key_hashes.push(*hash);
                    out.key_clients.push(client);
                }
                ClientCredential::CertSubject(subject) => {
                    out.cert_clients.push((subject.to_lowercase(), client));
                }
            }
        }
        out
    }

    /// No `[[client]]` configured: inbound authentication is off.
    pub fn is_empty(&self) -> bool {
        self.key_clients.is_empty() && self.cert_clients.is_empty()
    }

    /// Who sent a request with these headers over a connection with this peer identity (see the
    /// module docs for the order). `Ok(None)` only when no client is configured: then everyone
    /// that can reach the listener may use every tenant.
    pub fn identify(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerIdentity>,
    ) -> Result<Option<Arc<Client>>, AuthError> {
        if self.is_empty() {
            return Ok(None);
        }
        if let Some(peer) = peer {
            let by_cert = self
                .cert_clients
                .iter()
                .find(|(subject, _)| peer.names().iter().any(|name| name == subject));
            if let Some((_, client)) = by_cert {
                return Ok(Some(Arc::clone(client)));
            }
        }
        match presented_key(headers) {
            Some(key) => self.by_key(key).map(Some).ok_or(AuthError::Invalid),
            None => Err(match peer {
                Some(peer) => AuthError::UnknownCertificate(peer.display().to_owned()),
                None => AuthError::Missing,
            }),
        }
    }

    /// The key client whose hash equals SHA-256(`key`). Every hash is compared, and the match is
    /// selected without a branch, so the time taken does not depend on which (if any) matched.
    fn by_key(&self, key: &[u8]) -> Option<Arc<Client>> {
        let digest = ring::digest::digest(&ring::digest::SHA256, key);
        let presented = digest.as_ref();
        // 0 = no match, i + 1 = key_clients[i]; client names are unique, so is the hash.
        let mut found = 0u32;
        for (i, hash) in self.key_hashes.iter().enumerate() {
            let candidate = u32::try_from(i + 1).unwrap_or(u32::MAX);
            found = u32::conditional_select(&found, &candidate, hash.as_slice().ct_eq(presented));
        }
        let index = usize::try_from(found).ok()?.checked_sub(1)?;
        self.key_clients.get(index).cloned()
    }
}

/// The key a request presents: `X-Api-Key`, else the token of `Authorization: Bearer`.
fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(value) = headers.get(X_API_KEY) {
        return Some(trim(value.as_bytes()));
    }
    let auth = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    // The scheme is case-insensitive (RFC 9110 11.1).
    let (scheme, rest) = auth.split_at_checked(7)?;
    if scheme.eq_ignore_ascii_case(b"bearer ") {
        Some(trim(rest))
    } else {
        None
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

const X_API_KEY: &str = "x-api-key";

/// Removes the client's key headers that this module reads and the proxy does not already strip
/// (`X-Api-Key`; `Authorization` is replaced by the proxy), so no key travels upstream.
pub fn strip_credentials(headers: &mut HeaderMap) {
    headers.remove(X_API_KEY);
}

/// Prefix of keys made by [`hash_key`], so a leaked key is recognisable in secret scanners.
pub const KEY_PREFIX: &str = "dpk_";

/// A new client key for `hash-key`: `("dpk_" + 32 random bytes in base64url without padding,
/// lower-case hex SHA-256 of that whole key string)`. The first goes to the client, the second
/// into `key_sha256`.
///
/// # Panics
/// If the operating system's random source fails. Only the `hash-key` command calls this, and it
/// must not print a key that is not random.
pub fn hash_key() -> (String, String) {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random number generator failed");
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = key_sha256_hex(&key);
    (key, hash)
}

/// Lower-case hex SHA-256 of `key`, the form `key_sha256` takes in the config.
pub fn key_sha256_hex(key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
