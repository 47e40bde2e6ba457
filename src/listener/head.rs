//! An HTTP/1 request head copied out of hyper's read buffer, so the buffer is reused while the
//! request is in flight.
//!
//! Its own file: a pure function with its own tests, called once per HTTP/1 request by the
//! connection's service (`connection.rs`).

use bytes::{Bytes, BytesMut};

/// hyper's HTTP/1 request head points into its connection's read buffer (the URI and the header
/// values are slices of it): while the request is in flight that buffer stays allocated, and
/// hyper's next read (it reads on, to notice a client going away) allocates another. Copying the
/// head's few hundred bytes out lets hyper reuse its buffer: 8 KiB less per request in flight.
pub(super) fn own_head<B>(request: &mut http::Request<B>) {
    let uri = request.uri();
    let origin_form = uri.scheme().is_none() && uri.authority().is_none();
    let path_len = match uri.path_and_query() {
        Some(pq) if origin_form => pq.as_str().len(),
        _ => 0,
    };
    let values_len: usize = request.headers().values().map(|v| v.len()).sum();
    let mut copy = BytesMut::with_capacity(path_len + values_len);
    if let Some(pq) = uri.path_and_query().filter(|_| origin_form) {
        copy.extend_from_slice(pq.as_str().as_bytes());
    }
    for value in request.headers().values() {
        copy.extend_from_slice(value.as_bytes());
    }
    let copy = copy.freeze();
    let owned_uri = if origin_form {
        http::uri::PathAndQuery::from_maybe_shared(copy.slice(..path_len))
            .ok()
            .and_then(|pq| {
                let mut parts = http::uri::Parts::default();
                parts.path_and_query = Some(pq);
                http::Uri::from_parts(parts).ok()
            })
    } else {
        // Absolute or authority form (rare): its own small allocation.
        http::Uri::from_maybe_shared(Bytes::from(uri.to_string())).ok()
    };
    if let Some(owned) = owned_uri {
        *request.uri_mut() = owned;
    }
    let mut at = path_len;
    for value in request.headers_mut().values_mut() {
        let end = at + value.len();
        if let Ok(mut owned) = http::HeaderValue::from_maybe_shared(copy.slice(at..end)) {
            owned.set_sensitive(value.is_sensitive());
            *value = owned;
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request whose URI and header values are slices of one buffer, as hyper parses them.
    fn parsed(target: &str, headers: &[(&'static str, &str)]) -> (http::Request<()>, Bytes) {
        let mut raw = target.as_bytes().to_vec();
        for (_, value) in headers {
            raw.extend_from_slice(value.as_bytes());
        }
        let raw = Bytes::from(raw);
        let mut request = http::Request::new(());
        *request.uri_mut() = http::Uri::from_maybe_shared(raw.slice(..target.len())).unwrap();
        let mut at = target.len();
        for (name, value) in headers {
            let slice = raw.slice(at..at + value.len());
            at += value.len();
            let value = http::HeaderValue::from_maybe_shared(slice).unwrap();
            request.headers_mut().append(*name, value);
        }
        (request, raw)
    }

    fn points_into(bytes: &[u8], buffer: &Bytes) -> bool {
        let range = buffer.as_ptr_range();
        range.contains(&bytes.as_ptr())
    }

    #[test]
    fn the_owned_head_is_equal_and_no_longer_points_into_the_read_buffer() {
        let (mut request, raw) = parsed(
            "/contoso/api/alerts?$top=10&$filter=severity%20eq%20'high'",
            &[
                ("host", "proxy.example"),
                ("authorization", "Bearer abc.def"),
                ("accept", "application/json"),
                ("accept", "text/plain"),
                ("x-empty", ""),
            ],
        );
        request
            .headers_mut()
            .get_mut("authorization")
            .unwrap()
            .set_sensitive(true);
        let before = (request.uri().clone(), request.headers().clone());
        assert!(points_into(request.uri().path().as_bytes(), &raw));

        own_head(&mut request);

        assert_eq!(request.uri(), &before.0);
        assert_eq!(request.headers(), &before.1);
        assert!(request.headers()["authorization"].is_sensitive());
        assert_eq!(request.headers().get_all("accept").iter().count(), 2);
        assert!(!points_into(request.uri().path().as_bytes(), &raw));
        for value in request.headers().values().filter(|v| !v.is_empty()) {
            assert!(!points_into(value.as_bytes(), &raw), "{value:?}");
        }
    }

    #[test]
    fn an_absolute_form_target_is_owned_too() {
        let (mut request, raw) = parsed("http://api.example:8080/a/b?c=d", &[("host", "x")]);
        let before = request.uri().clone();
        own_head(&mut request);
        assert_eq!(request.uri(), &before);
        assert!(!points_into(request.uri().path().as_bytes(), &raw));
    }
}
