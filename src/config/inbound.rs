//! `[[client]]`, `[cors]` and `[audit]` as typed settings: who may use the proxy, for which
//! tenants and methods, which browser origins, and where the audit log goes.
//!
//! One file per config section (split out of `mod.rs`, which had grown past 500 lines).

use std::path::PathBuf;
use std::time::Duration;

/// A `[[client]]`: who may use the proxy, for which tenants and methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub name: String,
    pub credential: ClientCredential,
    pub tenants: TenantAllow,
    /// `None`: every method.
    pub methods: Option<Vec<http::Method>>,
}

/// `Debug` shows a key hash by its first 8 hex digits only.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientCredential {
    /// SHA-256 of the client's key (`key_sha256`, hex in the file). Only the hash is ever held.
    KeySha256([u8; 32]),
    /// An mTLS identity: certificate CN or DNS SAN (`cert_subject`).
    CertSubject(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantAllow {
    /// `["*"]`.
    All,
    /// Tenant names (ids given in the file are resolved to names).
    Only(Vec<String>),
}

/// `[cors]`: browser dashboards. Nothing is allowed by default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CorsConfig {
    /// Exact origins (`https://dashboards.soc.example`); `*` is refused with credentials around.
    pub allowed_origins: Vec<String>,
    /// `max_age` of preflight answers.
    pub max_age: Duration,
}

/// `[audit]`: one JSON line per request, for "who read which customer's data, when".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    Stderr,
    File(PathBuf),
}

impl std::fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCredential::KeySha256(hash) => {
                f.write_str("KeySha256(")?;
                for byte in &hash[..4] {
                    write!(f, "{byte:02x}")?;
                }
                f.write_str("…)")
            }
            ClientCredential::CertSubject(subject) => {
                f.debug_tuple("CertSubject").field(subject).finish()
            }
        }
    }
}

impl TenantAllow {
    /// Whether the tenant named `name` (a name, as routing resolves it) may be used.
    pub fn allows(&self, name: &str) -> bool {
        match self {
            TenantAllow::All => true,
            TenantAllow::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

impl ClientConfig {
    /// Whether this client may send `method`.
    pub fn allows_method(&self, method: &http::Method) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.contains(method))
    }
}
