//! Request -> tenant and upstream path.
//!
//! The route table is an immutable snapshot (swapped whole on reload), so the hot path resolves a
//! tenant with one hash lookup and no lock. The path is checked before any routing decision, so
//! no spelling of a path can change tenant or climb out of the API root upstream.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use http::header::HeaderName;
use http::{HeaderMap, Method, Uri, Version};

use crate::tenant::Tenant;

/// A path the proxy refuses to forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path contains a '.' or '..' segment (also percent-encoded)")]
    DotSegment,
    #[error("the path contains an empty segment ('//')")]
    EmptySegment,
    #[error("the path contains a backslash (also percent-encoded)")]
    Backslash,
    #[error("the path contains a percent-encoded '/' or NUL")]
    EncodedSeparator,
    #[error("the path percent-encodes a character that needs no encoding (a letter, digit, '-', '.', '_' or '~')")]
    EncodedUnreserved,
}

/// A request the proxy refuses to handle at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("CONNECT is not supported: this is a reverse proxy, not a forward proxy")]
    Connect,
    #[error("absolute-form request targets are not supported: this is a reverse proxy, not a forward proxy")]
    AbsoluteForm,
    #[error("the tenant header is not valid text")]
    TenantHeaderEncoding,
    #[error("the tenant header names more than one tenant (several header lines or a list): a request has one tenant")]
    SeveralTenants,
    #[error(
        "the request body ended early: the client closed the connection or sent a broken body"
    )]
    BodyRead,
    #[error("an HTTP/1.1 request must have a Host header")]
    MissingHost,
    #[error("the request has more than one Host header")]
    SeveralHosts,
    #[error("the request has both Content-Length and Transfer-Encoding, or several Content-Lengths: its length is ambiguous")]
    AmbiguousLength,
    /// A legacy advanced-hunting request the proxy answers through Graph, whose body it can't
    /// translate (why, in words).
    #[error("advanced hunting: {0}")]
    HuntingQuery(&'static str),
}

/// Why a request has no route: the path or request is refused, or it names no tenant this
/// proxy knows. `ProxyError` converts it into its answer (400 or 404), so routing stays apart
/// from the error responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("no tenant named '{0}' is configured")]
    UnknownTenant(String),
    #[error(
        "no tenant in the request: prefix the path with a tenant name or id, or set the {0} header"
    )]
    NoTenant(HeaderName),
}

/// Tenant lookup by name or id, plus the header and default-tenant rules.
#[derive(Debug)]
pub struct RouteTable {
    /// foldhash: one lookup per request, keyed by client input, so seeded but cheaper than SipHash.
    by_key: HashMap<Box<str>, Arc<Tenant>, foldhash::fast::RandomState>,
    header: HeaderName,
    default: Option<Arc<Tenant>>,
}

/// Where a request goes: its tenant and the path-and-query to send upstream.
#[derive(Debug)]
pub struct Route<'a> {
    pub tenant: Arc<Tenant>,
    /// Path and query exactly as received, less the tenant prefix when one was used.
    pub upstream_path: Cow<'a, str>,
    /// The tenant segment as the client wrote it, when the tenant came from the path (paging
    /// links must keep it); `None` for the header and the default tenant.
    pub prefix: Option<&'a str>,
}

impl RouteTable {
    pub fn new(tenants: Vec<Arc<Tenant>>, header: HeaderName, default: Option<&str>) -> Self {
        let mut by_key = HashMap::with_capacity_and_hasher(tenants.len() * 2, Default::default());
        for tenant in tenants {
            by_key.insert(Box::from(&*tenant.name), tenant.clone());
            by_key.insert(Box::from(&*tenant.id), tenant);
        }
        let default = default.and_then(|name| by_key.get(name).cloned());
        RouteTable {
            by_key,
            header,
            default,
        }
    }

    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        // Each tenant is in the map twice (name and id); yield it once, under its name.
        self.by_key
            .iter()
            .filter(|(k, t)| k.as_ref() == t.name.as_ref())
            .map(|(_, t)| t)
    }

    /// Name or id (ids compared case-insensitively).
    pub fn lookup(&self, key: &str) -> Option<&Arc<Tenant>> {
        if let Some(t) = self.by_key.get(key) {
            return Some(t);
        }
        if key.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.by_key.get(key.to_ascii_lowercase().as_str());
        }
        None
    }

    /// Routing rules 1-4 of the interface: header, path prefix, default tenant, else 404.
    pub fn resolve<'a>(&self, uri: &'a Uri, headers: &HeaderMap) -> Result<Route<'a>, RouteError> {
        let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let path = uri.path();
        check_path(path)?;

        let mut values = headers.get_all(&self.header).iter();
        if let Some(value) = values.next() {
            // A gateway in front may set the header from its own authentication: a second line
            // (any spelling of the name), or a list, from the client must not get a say.
            if values.next().is_some() {
                return Err(RequestError::SeveralTenants.into());
            }
            let key = value
                .to_str()
                .map_err(|_| RequestError::TenantHeaderEncoding)?
                .trim();
            if key.contains(',') {
                return Err(RequestError::SeveralTenants.into());
            }
            let tenant = self
                .lookup(key)
                .ok_or_else(|| RouteError::UnknownTenant(key.to_owned()))?;
            return Ok(Route {
                tenant: tenant.clone(),
                upstream_path: Cow::Borrowed(path_and_query),
                prefix: None,
            });
        }

        let first = first_segment(path);
        if let Some(tenant) = self.lookup(first) {
            let rest = &path_and_query[1 + first.len()..];
            let upstream_path = if rest.is_empty() {
                Cow::Borrowed("/")
            } else if rest.starts_with('?') {
                // `/contoso?x`: the API root, query kept. Rare, so the allocation is fine.
                Cow::Owned(format!("/{rest}"))
            } else {
                Cow::Borrowed(rest)
            };
            return Ok(Route {
                tenant: tenant.clone(),
                upstream_path,
                prefix: Some(first),
            });
        }

        if let Some(tenant) = &self.default {
            return Ok(Route {
                tenant: tenant.clone(),
                upstream_path: Cow::Borrowed(path_and_query),
                prefix: None,
            });
        }
        if first.is_empty() {
            return Err(RouteError::NoTenant(self.header.clone()));
        }
        Err(RouteError::UnknownTenant(first.to_owned()))
    }
}

/// The host the client named, checked: HTTP/1.1 requires exactly one `Host` (RFC 9112 §3.2),
/// HTTP/1.0 may send none, HTTP/2 names it in the URI (`:authority`). Two `Host`s are refused
/// in every version: the hops behind could each believe another.
pub(crate) fn request_host<'a>(
    headers: &'a HeaderMap,
    uri: &'a Uri,
    version: Version,
) -> Result<Option<&'a str>, RequestError> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(RequestError::SeveralHosts);
    }
    if host.is_none() && version == Version::HTTP_11 {
        return Err(RequestError::MissingHost);
    }
    Ok(host
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str())))
}

/// Refuse what a reverse proxy must not handle: CONNECT, and absolute-form targets
/// (`GET http://host/ HTTP/1.1`). HTTP/2 always carries scheme and authority, so only
/// HTTP/1.x targets are judged by their form.
/// Request smuggling guard: a length given twice (or two ways) may be read differently by the
/// next hop, so such requests are refused rather than normalised.
pub(crate) fn check_length(headers: &HeaderMap) -> Result<(), RequestError> {
    let lengths = headers.get_all(http::header::CONTENT_LENGTH).iter().count();
    if lengths > 1 || (lengths == 1 && headers.contains_key(http::header::TRANSFER_ENCODING)) {
        return Err(RequestError::AmbiguousLength);
    }
    Ok(())
}

/// Bytes of the header block as received (names, values and their separators).
pub(crate) fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

pub(crate) fn check_request(
    method: &Method,
    uri: &Uri,
    version: Version,
) -> Result<(), RequestError> {
    if method == Method::CONNECT {
        return Err(RequestError::Connect);
    }
    if version < Version::HTTP_2 && (uri.scheme().is_some() || uri.authority().is_some()) {
        return Err(RequestError::AbsoluteForm);
    }
    Ok(())
}

/// The path checks: no `.`/`..` segments (also `%2e`), no `//`, no backslash (also `%5c`), no
/// encoded `/` or NUL. Upstreams and intermediaries decode these differently; refusing them is
/// the only way to be sure a path means the same thing on both sides.
pub(crate) fn check_path(path: &str) -> Result<(), PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    if path.contains('\\') {
        return Err(PathError::Backslash);
    }
    if contains_escape(path, b"5c") {
        return Err(PathError::Backslash);
    }
    if contains_escape(path, b"2f") || contains_escape(path, b"00") {
        return Err(PathError::EncodedSeparator);
    }
    if rest.is_empty() {
        return Ok(());
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() {
            // A trailing slash (`/api/incidents/`) is an empty last segment and harmless.
            if segments.peek().is_none() {
                break;
            }
            return Err(PathError::EmptySegment);
        }
        if is_dot_segment(segment) {
            return Err(PathError::DotSegment);
        }
    }
    // `%61dvancedhunting` is `advancedhunting` to the API but not to a prefix match: refusing
    // needless escapes keeps route classes (and later allowlists) from being dodged.
    if encodes_unreserved(path) {
        return Err(PathError::EncodedUnreserved);
    }
    Ok(())
}

/// A `%XX` escape of an RFC 3986 unreserved character.
fn encodes_unreserved(path: &str) -> bool {
    let hex = |b: u8| (b as char).to_digit(16);
    path.as_bytes().windows(3).any(|w| {
        if w[0] != b'%' {
            return false;
        }
        let (Some(hi), Some(lo)) = (hex(w[1]), hex(w[2])) else {
            return false;
        };
        let c = (hi * 16 + lo) as u8;
        c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
    })
}

fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or("")
}

/// `%XY` with the two hex digits given in lower case, matched case-insensitively.
fn contains_escape(path: &str, hex: &[u8; 2]) -> bool {
    path.as_bytes().windows(3).any(|w| {
        w[0] == b'%' && w[1].to_ascii_lowercase() == hex[0] && w[2].to_ascii_lowercase() == hex[1]
    })
}

/// `.` or `..`, each dot possibly written `%2e`/`%2E`.
fn is_dot_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let mut i = 0;
    let mut dots = 0;
    while i < bytes.len() {
        if bytes[i] == b'.' {
            i += 1;
        } else if bytes.len() - i >= 3
            && bytes[i] == b'%'
            && bytes[i + 1] == b'2'
            && bytes[i + 2].eq_ignore_ascii_case(&b'e')
        {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_refused_in_every_spelling() {
        for p in [
            "/a/../b",
            "/a/./b",
            "/..",
            "/a/%2e%2e/b",
            "/a/%2E./b",
            "/a/.%2e",
            "/%2e/x",
            "/a/..",
        ] {
            assert_eq!(check_path(p), Err(PathError::DotSegment), "{p}");
        }
        for p in [
            "/a/...b",
            "/a/.well-known",
            "/a/b.c",
            "/api/incidents",
            "/",
            "/a/b/",
        ] {
            assert_eq!(check_path(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn separators_refused() {
        assert_eq!(check_path("/a//b"), Err(PathError::EmptySegment));
        assert_eq!(check_path("//a"), Err(PathError::EmptySegment));
        assert_eq!(check_path("/a\\b"), Err(PathError::Backslash));
        assert_eq!(check_path("/a%5Cb"), Err(PathError::Backslash));
        assert_eq!(check_path("/a%2fb"), Err(PathError::EncodedSeparator));
        assert_eq!(check_path("/a%00"), Err(PathError::EncodedSeparator));
        assert_eq!(check_path("*"), Err(PathError::NotAbsolute));
        assert_eq!(
            check_path("/api/%61dvancedhunting/run"),
            Err(PathError::EncodedUnreserved)
        );
        assert_eq!(
            check_path("/api/x%2Ejson"),
            Err(PathError::EncodedUnreserved)
        );
        assert_eq!(check_path("/api/x%7e"), Err(PathError::EncodedUnreserved));
        // Escapes that are needed stay allowed.
        assert_eq!(check_path("/api/a%20b/%3F/%25"), Ok(()));
    }

    #[test]
    fn connect_and_absolute_form_refused() {
        let abs: Uri = "http://evil.example/api".parse().unwrap();
        assert_eq!(
            check_request(&Method::GET, &abs, Version::HTTP_11),
            Err(RequestError::AbsoluteForm)
        );
        let origin: Uri = "/api".parse().unwrap();
        assert_eq!(
            check_request(&Method::GET, &origin, Version::HTTP_11),
            Ok(())
        );
        let auth: Uri = "evil.example:443".parse().unwrap();
        assert_eq!(
            check_request(&Method::CONNECT, &auth, Version::HTTP_11),
            Err(RequestError::Connect)
        );
        assert_eq!(check_request(&Method::GET, &abs, Version::HTTP_2), Ok(()));
    }
}
