//! Tests of client identification and the tenant and method allowlists.

#![allow(clippy::unwrap_used)]

use super::*;
use http::HeaderValue;

fn hash(key: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    d.as_ref().try_into().unwrap()
}

fn key_client(
    name: &str,
    key: &str,
    tenants: TenantAllow,
    methods: Option<Vec<Method>>,
) -> ClientConfig {
    ClientConfig {
        name: name.into(),
        credential: ClientCredential::KeySha256(hash(key)),
        tenants,
        methods,
    }
}

fn clients() -> Clients {
    Clients::new(&[
        key_client(
            "grafana",
            "grafana-key",
            TenantAllow::Only(vec!["contoso".into()]),
            Some(vec![Method::GET]),
        ),
        key_client("sentinel", "sentinel-key", TenantAllow::All, None),
        ClientConfig {
            name: "agent".into(),
            credential: ClientCredential::CertSubject("Agent.SOC.example".into()),
            tenants: TenantAllow::Only(vec!["fabrikam".into()]),
            methods: None,
        },
    ])
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(*name, HeaderValue::from_str(value).unwrap());
    }
    h
}

fn name(r: Result<Option<Arc<Client>>, AuthError>) -> String {
    r.unwrap().unwrap().name.to_string()
}

#[test]
fn no_clients_configured_lets_everyone_in() {
    let none = Clients::new(&[]);
    assert!(none.is_empty());
    assert!(none.identify(&HeaderMap::new(), None).unwrap().is_none());
    assert!(!clients().is_empty());
}

#[test]
fn the_right_key_identifies_its_client_by_bearer_and_by_x_api_key() {
    let c = clients();
    let bearer = headers(&[("authorization", "Bearer sentinel-key")]);
    assert_eq!(name(c.identify(&bearer, None)), "sentinel");
    let lower = headers(&[("authorization", "bearer grafana-key")]);
    assert_eq!(name(c.identify(&lower, None)), "grafana");
    let api_key = headers(&[("x-api-key", "grafana-key")]);
    assert_eq!(name(c.identify(&api_key, None)), "grafana");
}

#[test]
fn x_api_key_wins_over_authorization() {
    let c = clients();
    let both = headers(&[
        ("authorization", "Bearer sentinel-key"),
        ("x-api-key", "grafana-key"),
    ]);
    assert_eq!(name(c.identify(&both, None)), "grafana");
    // A tool's own bearer token next to a good X-Api-Key does not matter...
    let tool = headers(&[
        ("authorization", "Bearer eyJ0eXAi"),
        ("x-api-key", "sentinel-key"),
    ]);
    assert_eq!(name(c.identify(&tool, None)), "sentinel");
    // ...and a good bearer key does not rescue a wrong X-Api-Key.
    let wrong = headers(&[
        ("authorization", "Bearer sentinel-key"),
        ("x-api-key", "nope"),
    ]);
    assert_eq!(c.identify(&wrong, None).unwrap_err(), AuthError::Invalid);
}

#[test]
fn a_wrong_key_is_invalid_and_nothing_is_missing() {
    let c = clients();
    for h in [
        headers(&[("authorization", "Bearer grafana-key2")]),
        headers(&[("x-api-key", "")]),
        headers(&[("authorization", "Bearer ")]),
        // The hash of a key is not a key.
        headers(&[("x-api-key", &key_sha256_hex("grafana-key"))]),
    ] {
        assert_eq!(
            c.identify(&h, None).unwrap_err(),
            AuthError::Invalid,
            "{h:?}"
        );
    }
    assert_eq!(
        c.identify(&HeaderMap::new(), None).unwrap_err(),
        AuthError::Missing
    );
}

#[test]
fn other_authorization_schemes_are_not_keys() {
    let c = clients();
    for value in [
        "Basic Z3JhZmFuYS1rZXk=",
        "grafana-key",
        "Bearer",
        "Bearergrafana-key",
    ] {
        let h = headers(&[("authorization", value)]);
        assert_eq!(
            c.identify(&h, None).unwrap_err(),
            AuthError::Missing,
            "{value}"
        );
    }
}

#[test]
fn a_certificate_name_identifies_its_client_case_insensitively() {
    let c = clients();
    let peer =
        PeerIdentity::from_names(["Agent Box".to_owned(), "AGENT.soc.example".to_owned()]).unwrap();
    assert_eq!(name(c.identify(&HeaderMap::new(), Some(&peer))), "agent");
    // The verified certificate comes first; a key header next to it is ignored.
    let h = headers(&[("x-api-key", "sentinel-key")]);
    assert_eq!(name(c.identify(&h, Some(&peer))), "agent");
}

#[test]
fn an_unknown_certificate_falls_back_to_the_key() {
    let c = clients();
    let stranger = PeerIdentity::from_names(["stranger".to_owned()]).unwrap();
    let h = headers(&[("x-api-key", "sentinel-key")]);
    assert_eq!(name(c.identify(&h, Some(&stranger))), "sentinel");
    assert_eq!(
        c.identify(&HeaderMap::new(), Some(&stranger)).unwrap_err(),
        AuthError::UnknownCertificate("stranger".into())
    );
}

#[test]
fn a_key_matching_the_last_client_is_found_and_the_first_too() {
    // The branch-free selection must pick the right index at either end.
    let configs: Vec<ClientConfig> = (0..5)
        .map(|i| {
            key_client(
                &format!("c{i}"),
                &format!("key-{i}"),
                TenantAllow::All,
                None,
            )
        })
        .collect();
    let c = Clients::new(&configs);
    for i in 0..5 {
        let h = headers(&[("x-api-key", &format!("key-{i}"))]);
        assert_eq!(name(c.identify(&h, None)), format!("c{i}"));
    }
}

#[test]
fn tenant_allowlist() {
    let c = clients();
    let grafana = c
        .identify(&headers(&[("x-api-key", "grafana-key")]), None)
        .unwrap()
        .unwrap();
    assert_eq!(grafana.may_use("contoso", &Method::GET), Ok(()));
    let err = grafana.may_use("fabrikam", &Method::GET).unwrap_err();
    assert_eq!(
        err.to_string(),
        "client 'grafana' may not use tenant 'fabrikam'"
    );
    let sentinel = c
        .identify(&headers(&[("x-api-key", "sentinel-key")]), None)
        .unwrap()
        .unwrap();
    assert_eq!(sentinel.may_use("anything", &Method::DELETE), Ok(()));
}

#[test]
fn method_allowlist_with_head_as_get() {
    let c = clients();
    let grafana = c
        .identify(&headers(&[("x-api-key", "grafana-key")]), None)
        .unwrap()
        .unwrap();
    assert_eq!(grafana.may_use("contoso", &Method::HEAD), Ok(()));
    let err = grafana.may_use("contoso", &Method::POST).unwrap_err();
    assert_eq!(err.to_string(), "client 'grafana' may not use POST");
    // The tenant is refused before the method is looked at.
    let err = grafana.may_use("fabrikam", &Method::POST).unwrap_err();
    assert!(matches!(err, Forbidden::Tenant { .. }));
    // HEAD does not open GET.
    let head_only = Clients::new(&[key_client(
        "h",
        "k",
        TenantAllow::All,
        Some(vec![Method::HEAD]),
    )]);
    let h = head_only
        .identify(&headers(&[("x-api-key", "k")]), None)
        .unwrap()
        .unwrap();
    assert!(h.may_use("t", &Method::GET).is_err());
}

#[test]
fn messages_never_carry_the_key() {
    let c = clients();
    let err = c
        .identify(&headers(&[("x-api-key", "secret-guess")]), None)
        .unwrap_err();
    assert!(!err.to_string().contains("secret-guess"));
    assert!(!format!("{c:?}").contains(&key_sha256_hex("grafana-key")));
    assert_eq!(
        AuthError::Missing.to_string(),
        "no API key or client certificate was presented"
    );
    assert_eq!(AuthError::Invalid.to_string(), "the API key is not valid");
}

#[test]
fn hash_key_round_trip() {
    let (key, hex) = hash_key();
    assert!(key.starts_with(KEY_PREFIX));
    // 32 bytes in base64url without padding are 43 characters.
    assert_eq!(key.len(), KEY_PREFIX.len() + 43);
    assert!(key[KEY_PREFIX.len()..]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(hex.len(), 64);
    assert_eq!(hex, key_sha256_hex(&key));
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    let c = Clients::new(&[ClientConfig {
        name: "new".into(),
        credential: ClientCredential::KeySha256(bytes),
        tenants: TenantAllow::All,
        methods: None,
    }]);
    let h = headers(&[("authorization", &format!("Bearer {key}"))]);
    assert_eq!(name(c.identify(&h, None)), "new");
    assert_ne!(hash_key().0, key);
}

#[test]
fn strip_credentials_removes_x_api_key_only() {
    let mut h = headers(&[("x-api-key", "k"), ("x-api-key", "k2"), ("accept", "*/*")]);
    strip_credentials(&mut h);
    assert!(h.get("x-api-key").is_none());
    assert!(h.get("accept").is_some());
}
