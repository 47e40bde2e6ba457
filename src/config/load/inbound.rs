//! Who may call the proxy and what is recorded: `[[client]]`, `[audit]` (`[cors]` is in
//! `cors.rs`).

use std::collections::HashMap;

use http::Method;

use super::Validator;
use crate::config::raw::{RawAudit, RawClient, RawTenant};
use crate::config::{AuditTarget, ClientConfig, ClientCredential, TenantAllow};

/// What earlier `[[client]]` entries used, by the index of the first that did: names, key
/// hashes and (case-folded) certificate subjects must each be unique.
#[derive(Default)]
struct Seen {
    names: HashMap<String, usize>,
    keys: HashMap<[u8; 32], usize>,
    subjects: HashMap<String, usize>,
}

impl Validator<'_> {
    /// The `[[client]]` entries. `tenants` are the tenants as written (a tenant with its own
    /// problem does not cause a second one here); `client_ca`: `[listen.tls] client_ca` is set.
    pub(super) fn clients(
        &mut self,
        raw: Vec<RawClient>,
        tenants: &[RawTenant],
        client_ca: bool,
    ) -> Vec<ClientConfig> {
        let mut seen = Seen::default();
        let mut clients = Vec::new();
        for (i, client) in raw.into_iter().enumerate() {
            let prefix = format!("client[{i}]");
            let key = |name: &str| format!("{prefix}.{name}");
            let name = self.client_name(&key("name"), client.name, i, &mut seen);
            let credential = match (client.key_sha256, client.cert_subject) {
                (Some(_), Some(_)) => {
                    self.problem(
                        &key("cert_subject"),
                        "set key_sha256 or cert_subject, not both",
                    );
                    None
                }
                (None, None) => {
                    self.problem(
                        &prefix,
                        "no credential: set key_sha256 = \"...\" (the SHA-256 of the client's \
                         key, from `defender-proxy hash-key`) or cert_subject = \"...\" (its mTLS \
                         identity)",
                    );
                    None
                }
                (Some(hex), None) => self.client_key(&key("key_sha256"), &hex, i, &mut seen),
                (None, Some(subject)) => {
                    self.client_subject(&key("cert_subject"), subject, client_ca, i, &mut seen)
                }
            };
            let allowed = self.client_tenants(&key("tenants"), client.tenants, tenants);
            let methods = self.client_methods(&key("methods"), client.methods);
            if let (Some(name), Some(credential), Some(tenants), Some(methods)) =
                (name, credential, allowed, methods)
            {
                clients.push(ClientConfig {
                    name,
                    credential,
                    tenants,
                    methods,
                });
            }
        }
        clients
    }

    /// `name`: required, well-formed, not another client's; `i` is the client's index.
    fn client_name(
        &mut self,
        key: &str,
        raw: Option<String>,
        i: usize,
        seen: &mut Seen,
    ) -> Option<String> {
        let Some(name) = raw else {
            self.problem(key, "is required: the client's name, for logs");
            return None;
        };
        if let Some(message) = client_name_problem(&name) {
            self.problem(key, message);
            return None;
        }
        if let Some(first) = seen.names.get(&name) {
            self.problem(
                key,
                format!("`{name}` is already the name of client[{first}]"),
            );
        } else {
            seen.names.insert(name.clone(), i);
        }
        Some(name)
    }

    /// `key_sha256`: 64 hex digits, not another client's key.
    fn client_key(
        &mut self,
        key: &str,
        hex: &str,
        i: usize,
        seen: &mut Seen,
    ) -> Option<ClientCredential> {
        let Some(hash) = parse_sha256(hex) else {
            // Not echoed: an operator may have pasted the key itself here.
            self.problem(
                key,
                "must be 64 hex digits, the SHA-256 of the client's key (the value \
                 is not shown in case it is the key itself); `defender-proxy \
                 hash-key` makes a key and its hash",
            );
            return None;
        };
        if let Some(first) = seen.keys.get(&hash) {
            self.problem(
                key,
                format!(
                    "is the same key hash as client[{first}]'s: each client \
                     needs its own key"
                ),
            );
        } else {
            seen.keys.insert(hash, i);
        }
        Some(ClientCredential::KeySha256(hash))
    }

    /// `cert_subject`: a clean, non-empty name, only with mTLS, not another client's.
    fn client_subject(
        &mut self,
        k: &str,
        subject: String,
        client_ca: bool,
        i: usize,
        seen: &mut Seen,
    ) -> Option<ClientCredential> {
        if subject.trim().is_empty() {
            self.problem(k, "must not be empty");
            return None;
        }
        if subject.trim() != subject || subject.chars().any(char::is_control) {
            self.problem(
                k,
                "must not have leading or trailing spaces or control characters",
            );
            return None;
        }
        if !client_ca {
            self.problem(
                k,
                "needs [listen.tls] client_ca: a certificate subject is only known \
                 when clients present certificates (mTLS)",
            );
            return None;
        }
        // DNS names are case-insensitive: two spellings would be one identity.
        let folded = subject.to_ascii_lowercase();
        if let Some(first) = seen.subjects.get(&folded) {
            self.problem(
                k,
                format!("`{subject}` is already the cert_subject of client[{first}]"),
            );
        } else {
            seen.subjects.insert(folded, i);
        }
        Some(ClientCredential::CertSubject(subject))
    }

    /// `tenants = [...]`: names or ids of configured tenants (stored as names), or `["*"]`.
    fn client_tenants(
        &mut self,
        key: &str,
        raw: Option<Vec<String>>,
        tenants: &[RawTenant],
    ) -> Option<TenantAllow> {
        let Some(wanted) = raw else {
            self.problem(
                key,
                "is required: the tenants this client may use (names or ids), or [\"*\"] for all",
            );
            return None;
        };
        if wanted.is_empty() {
            self.problem(
                key,
                "must not be empty: name the tenants this client may use, or [\"*\"] for all",
            );
            return None;
        }
        if wanted.iter().any(|t| t == "*") {
            if wanted.len() > 1 {
                self.problem(
                    key,
                    "\"*\" (every tenant) must stand alone: tenants = [\"*\"]",
                );
                return None;
            }
            return Some(TenantAllow::All);
        }
        let mut names: Vec<String> = Vec::new();
        let mut ok = true;
        for (j, t) in wanted.iter().enumerate() {
            let found = tenants.iter().find(|tenant| {
                tenant.name.as_deref() == Some(t.as_str())
                    || tenant
                        .id
                        .as_deref()
                        .is_some_and(|id| id.eq_ignore_ascii_case(t))
            });
            match found.and_then(|tenant| tenant.name.clone()) {
                Some(name) => {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
                None => {
                    self.problem(
                        &format!("{key}[{j}]"),
                        format!("no tenant named `{t}` or with that id is configured"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(TenantAllow::Only(names))
    }

    /// `methods = [...]`: upper-case method tokens, duplicates dropped; `None` when not written.
    fn client_methods(
        &mut self,
        key: &str,
        raw: Option<Vec<String>>,
    ) -> Option<Option<Vec<Method>>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        if raw.is_empty() {
            self.problem(
                key,
                "must not be empty: leave methods out to allow every method",
            );
            return None;
        }
        let mut methods: Vec<Method> = Vec::new();
        let mut ok = true;
        for (j, m) in raw.iter().enumerate() {
            let k = format!("{key}[{j}]");
            match Method::from_bytes(m.as_bytes()) {
                Err(_) => {
                    self.problem(&k, format!("`{m}` is not an HTTP method"));
                    ok = false;
                }
                Ok(_) if m.bytes().any(|b| b.is_ascii_lowercase()) => {
                    self.problem(
                        &k,
                        format!(
                            "`{m}` must be upper-case (`{}`): HTTP methods are case-sensitive",
                            m.to_ascii_uppercase()
                        ),
                    );
                    ok = false;
                }
                Ok(method) => {
                    if !methods.contains(&method) {
                        methods.push(method);
                    }
                }
            }
        }
        ok.then_some(Some(methods))
    }

    /// `[audit]`: `file = PATH` (relative to the config file) or `"-"` for stderr.
    pub(super) fn audit(&mut self, raw: Option<RawAudit>) -> Option<Option<AuditTarget>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let Some(file) = raw.file else {
            self.problem(
                "audit.file",
                "is required: the file to append audit lines to, or \"-\" for stderr",
            );
            return None;
        };
        if file == "-" {
            return Some(Some(AuditTarget::Stderr));
        }
        if file.trim().is_empty() {
            self.problem("audit.file", "must not be empty (\"-\" is stderr)");
            return None;
        }
        let path = self.resolve(&file);
        if path.is_dir() {
            self.problem(
                "audit.file",
                format!("{} is a directory; name a file in it", path.display()),
            );
            return None;
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        if !dir.is_dir() {
            self.problem(
                "audit.file",
                format!(
                    "the directory {} does not exist; create it (the file itself is created \
                     when the proxy starts)",
                    dir.display()
                ),
            );
            return None;
        }
        Some(Some(AuditTarget::File(path)))
    }
}

/// Client names follow tenant names (`[a-z0-9-]`): they appear in logs, metrics and audit lines.
fn client_name_problem(name: &str) -> Option<String> {
    let problem = if name.is_empty() {
        "must not be empty".to_owned()
    } else if name.len() > 63 {
        "must be at most 63 characters".to_owned()
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        format!("`{name}` may contain only lower-case letters, digits and '-'")
    } else if name.starts_with('-') {
        format!("`{name}` must not start with '-'")
    } else {
        return None;
    };
    Some(problem)
}

/// 64 hex digits (either case) -> the 32 bytes.
pub(super) fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16);
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let value = digit(pair[0])? * 16 + digit(pair[1])?;
        *byte = u8::try_from(value).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod unit {
    use super::parse_sha256;

    #[test]
    fn sha256_hex() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let bytes = parse_sha256(hex).expect("valid");
        assert_eq!(bytes[0], 0x9f);
        assert_eq!(bytes[31], 0x08);
        assert_eq!(parse_sha256(&hex.to_uppercase()), Some(bytes));
        assert_eq!(parse_sha256(&hex[..62]), None);
        assert_eq!(parse_sha256(&format!("{}zz", &hex[..62])), None);
        assert_eq!(parse_sha256(&format!("{}é", &hex[..62])), None);
    }
}
