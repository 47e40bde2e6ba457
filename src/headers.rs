//! Header hygiene, as pure functions over a `HeaderMap`: hop-by-hop stripping (a static list
//! plus whatever `Connection` names), client credentials out, upstream credential in, request ids.

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

/// `X-Request-Id`: taken from the client, else generated; sent upstream and back.
pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Hop-by-hop headers (RFC 9110 7.6.1, plus the legacy `Proxy-*` and `Keep-Alive`).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// A header meant for this hop only: the static list, `Upgrade`, and any `Proxy-*` (meant for a
/// proxy, i.e. us, never for the API).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::UPGRADE || name.as_str().starts_with("proxy-")
}

/// Remove hop-by-hop headers and every header the `Connection` header names. One pass over the
/// names finds them; most requests carry none (nothing is looked up or allocated), and most
/// responses only `Connection: keep-alive` (one removal).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut found = false;
    let mut only_connection = true;
    for name in headers.keys().filter(|k| is_hop_by_hop(k)) {
        found = true;
        only_connection &= name == header::CONNECTION;
    }
    if !found {
        return;
    }
    let names_others = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|token| {
            let token = token.trim_ascii();
            !token.eq_ignore_ascii_case(b"keep-alive") && !token.eq_ignore_ascii_case(b"close")
        })
    });
    // `keep-alive` would name a `Keep-Alive` header, which `only_connection` says is absent.
    if only_connection && !names_others {
        headers.remove(header::CONNECTION);
        return;
    }
    // Collect the names first: they must be removed after `Connection` itself is read.
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_hop_by_hop(k))
        .cloned()
        .collect();
    for value in headers.get_all(header::CONNECTION) {
        if let Ok(text) = value.to_str() {
            for token in text.split(',') {
                if let Ok(name) = HeaderName::from_bytes(token.trim().as_bytes()) {
                    doomed.push(name);
                }
            }
        }
    }
    for name in doomed {
        headers.remove(name);
    }
}

/// Prepare the client's request headers for the API: hop-by-hop out, the client's own
/// credentials and the tenant header out, `Host` out (the client sets the API's from the URI),
/// then the tenant's token and the request id in.
pub(crate) fn prepare_upstream(
    headers: &mut HeaderMap,
    tenant_header: &HeaderName,
    authorization: &HeaderValue,
    request_id: &HeaderValue,
) {
    strip_hop_by_hop(headers);
    headers.remove(tenant_header);
    headers.remove(header::HOST);
    // `insert` replaces every value the client sent.
    let mut auth = authorization.clone();
    auth.set_sensitive(true);
    headers.insert(header::AUTHORIZATION, auth);
    headers.insert(REQUEST_ID.clone(), request_id.clone());
}

/// Prepare the API's response headers for the client.
pub(crate) fn prepare_downstream(headers: &mut HeaderMap, request_id: &HeaderValue) {
    strip_hop_by_hop(headers);
    headers.insert(REQUEST_ID.clone(), request_id.clone());
}

/// The client's request id when it sent a sane one, else a new random one.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(value) = headers.get(&REQUEST_ID) {
        let ok = !value.is_empty()
            && value.len() <= 128
            && value.as_bytes().iter().all(|b| b.is_ascii_graphic());
        if ok {
            return value.clone();
        }
    }
    new_request_id()
}

/// 32 lower-case hex digits (128 random bits), formatted on the stack.
pub(crate) fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = fastrand::u128(..);
    let mut buf = [0u8; 32];
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = HEX[((n >> (4 * (31 - i))) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("proxy-foo", "1"),
            ("accept", "application/json"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn a_plain_keep_alive_or_close_connection_header_goes_alone() {
        for value in ["keep-alive", "Keep-Alive", "close", "keep-alive, close"] {
            let mut h = map(&[
                ("connection", value),
                ("content-type", "x"),
                ("close", "kept"),
            ]);
            strip_hop_by_hop(&mut h);
            assert!(!h.contains_key("connection"), "{value}");
            assert_eq!(h.len(), 2, "{value}: {h:?}");
        }
        // With a Keep-Alive header present, `keep-alive` names it: it goes too.
        let mut h = map(&[("connection", "keep-alive"), ("keep-alive", "timeout=5")]);
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
        // Any other token still names a header to remove.
        let mut h = map(&[
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("a", "b"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
    }

    #[test]
    fn upstream_gets_token_not_client_credentials() {
        let tenant_header = HeaderName::from_static("x-defender-tenant");
        let mut h = map(&[
            ("authorization", "Bearer client-key"),
            ("x-defender-tenant", "contoso"),
            ("host", "localhost:8080"),
            ("accept", "*/*"),
        ]);
        let token = HeaderValue::from_static("Bearer tenant-token");
        let rid = HeaderValue::from_static("abc");
        prepare_upstream(&mut h, &tenant_header, &token, &rid);
        assert_eq!(h["authorization"], "Bearer tenant-token");
        assert!(h["authorization"].is_sensitive());
        assert!(!h.contains_key("x-defender-tenant"));
        assert!(!h.contains_key("host"));
        assert_eq!(h["x-request-id"], "abc");
        assert_eq!(h.get_all("authorization").iter().count(), 1);
    }

    #[test]
    fn request_id_kept_or_generated() {
        let h = map(&[("x-request-id", "client-123")]);
        assert_eq!(request_id(&h), "client-123");
        let generated = request_id(&HeaderMap::new());
        assert_eq!(generated.len(), 32);
        assert_ne!(generated, new_request_id());
        let bad = map(&[("x-request-id", "has space")]);
        assert_ne!(request_id(&bad), "has space");
    }
}
