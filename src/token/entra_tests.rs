//! Tests of the token endpoint client: form bodies, answer parsing, and whole requests against a
//! one-route HTTP server on 127.0.0.1:0 standing in for Entra ID.

use super::*;
use crate::config::{Credential, UpstreamConfig};
use crate::token::{Prepared, TokenBroker};
use hyper::body::Incoming;
use std::collections::HashMap;
use std::sync::Mutex;

fn pairs(body: &SecretString) -> HashMap<String, String> {
    form_urlencoded::parse(body.expose_secret().as_bytes())
        .into_owned()
        .collect()
}

const SCOPE: &str = "https://api.security.microsoft.com/.default";

#[test]
fn v2_secret_form() {
    let auth = ClientAuth::Secret(SecretString::from("s3cr&t="));
    let form = pairs(&form_body(TokenEndpointVersion::V2, "1111", SCOPE, &auth));
    assert_eq!(form.len(), 4);
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], "1111");
    assert_eq!(form["scope"], SCOPE);
    assert_eq!(form["client_secret"], "s3cr&t=");
}

#[test]
fn v1_assertion_form() {
    let auth = ClientAuth::Assertion(SecretString::from("a.b.c"));
    let form = pairs(&form_body(TokenEndpointVersion::V1, "1111", SCOPE, &auth));
    assert_eq!(form.len(), 5);
    assert_eq!(form["resource"], "https://api.security.microsoft.com");
    assert_eq!(form["client_assertion_type"], ASSERTION_TYPE);
    assert_eq!(form["client_assertion"], "a.b.c");
    assert!(!form.contains_key("scope") && !form.contains_key("client_secret"));
}

#[test]
fn success_accepts_v1_strings_and_v2_numbers() {
    let v1 = br#"{"token_type":"Bearer","expires_in":"3599","expires_on":"1700003599","resource":"r","access_token":"x.y.z"}"#;
    let t = parse_success(v1).unwrap();
    assert_eq!(t.expires_in, Some(Duration::from_secs(3599)));
    assert_eq!(t.access_token.expose_secret(), "x.y.z");
    let v2 =
        br#"{"token_type":"Bearer","expires_in":86399,"refresh_in":43199,"access_token":"x.y.z"}"#;
    let t = parse_success(v2).unwrap();
    assert_eq!(
        (t.expires_in, t.refresh_in),
        (
            Some(Duration::from_secs(86399)),
            Some(Duration::from_secs(43199))
        )
    );
    assert!(matches!(
        parse_success(br#"{"token_type":"pop","access_token":"x"}"#),
        Err(InvalidResponse::TokenType)
    ));
    assert!(matches!(
        parse_success(b"<html>"),
        Err(InvalidResponse::Json(_))
    ));
}

#[test]
fn error_body_is_classified_with_consent_link() {
    let body = br#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier '1111' was not found","error_codes":[700016],"timestamp":"2024-01-01 00:00:00Z","trace_id":"t","correlation_id":"c"}"#;
    let e = parse_error(StatusCode::BAD_REQUEST, None, body, "2222", |t| {
        format!("https://login/{t}/adminconsent")
    });
    assert_eq!(e.aadsts(), Some(700016));
    assert_eq!(e.class(), ErrorClass::Consent);
    assert_eq!(e.consent_url(), Some("https://login/2222/adminconsent"));
    // The description's free text is not repeated to clients.
    assert!(!e.to_string().contains("was not found"));

    let body = br#"{"error":"odd <b>value</b>","error_codes":[]}"#;
    let e = parse_error(
        StatusCode::BAD_REQUEST,
        None,
        body,
        "2222",
        |_| unreachable!(),
    );
    assert!(matches!(e, TokenError::Entra { ref error, .. } if error == "oddbvalueb"));

    let body = br#"{"error":"invalid_client","error_codes":[7000222]}"#;
    let e = parse_error(
        StatusCode::UNAUTHORIZED,
        None,
        body,
        "2222",
        |_| unreachable!(),
    );
    assert_eq!((e.class(), e.consent_url()), (ErrorClass::Credential, None));

    let e = parse_error(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(Duration::from_secs(7)),
        b"<html/>",
        "2222",
        |_| unreachable!(),
    );
    assert!(matches!(e, TokenError::Status { status: 503, .. }));
    assert_eq!(
        (e.class(), e.retry_after()),
        (ErrorClass::Transient, Some(Duration::from_secs(7)))
    );
}

/// A one-route token endpoint on 127.0.0.1:0 that answers `(status, retry_after, body)` and
/// records each request's path and form.
async fn fake_entra(
    status: u16,
    body: &'static str,
) -> (String, Arc<Mutex<Vec<(String, HashMap<String, String>)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let log = log.clone();
                async move {
                    let path = req.uri().path().to_owned();
                    let bytes = req.into_body().collect().await.unwrap().to_bytes();
                    let form = form_urlencoded::parse(&bytes).into_owned().collect();
                    log.lock().unwrap().push((path, form));
                    http::Response::builder()
                        .status(status)
                        .header("retry-after", "3")
                        .body(Full::new(Bytes::from_static(body.as_bytes())))
                        .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
        }
    });
    (format!("http://{addr}"), seen)
}

fn broker(authority: &str, version: TokenEndpointVersion) -> TokenBroker {
    let app = crate::config::AppConfig {
        client_id: "11111111-1111-1111-1111-111111111111".into(),
        credential: Credential::Secret(SecretString::from("the-secret")),
    };
    let cloud = CloudConfig {
        cloud: crate::config::CloudPreset::Public,
        authority: authority.into(),
        api: http::Uri::from_static("https://api.security.microsoft.com"),
        scope: SCOPE.into(),
        token_endpoint: version,
        ca: None,
    };
    let upstream = UpstreamConfig {
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(5),
        ..UpstreamConfig::default()
    };
    TokenBroker::from_prepared(Prepared::new(&app, &cloud, &upstream).unwrap())
}

#[tokio::test]
async fn fetch_once_over_http_v1() {
    let jwt =
        "eyJhbGciOiJub25lIn0.eyJ0aWQiOiIyMjIyIiwicm9sZXMiOlsiSW5jaWRlbnQuUmVhZC5BbGwiXX0.c2lnWFla";
    let body = Box::leak(
        format!(r#"{{"token_type":"Bearer","expires_in":"3599","access_token":"{jwt}"}}"#)
            .into_boxed_str(),
    );
    let (authority, seen) = fake_entra(200, body).await;
    let token = broker(&authority, TokenEndpointVersion::V1)
        .fetch_once("2222", SCOPE)
        .await
        .unwrap();
    assert_eq!(token.tid(), "2222");
    assert_eq!(token.roles(), ["Incident.Read.All".to_string()]);
    assert_eq!(
        token.authorization().to_str().unwrap(),
        format!("Bearer {jwt}")
    );
    assert!(token.authorization().is_sensitive());
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, "/2222/oauth2/token");
    assert_eq!(seen[0].1["resource"], "https://api.security.microsoft.com");
    assert_eq!(seen[0].1["client_secret"], "the-secret");
}

#[tokio::test]
async fn fetch_once_over_http_consent_error() {
    let body = r#"{"error":"invalid_client","error_description":"AADSTS7000229: x","error_codes":[7000229]}"#;
    let (authority, seen) = fake_entra(400, body).await;
    let err = broker(&authority, TokenEndpointVersion::V2)
        .fetch_once("2222", SCOPE)
        .await
        .unwrap_err();
    assert_eq!(err.aadsts(), Some(7000229));
    let expected =
        format!("{authority}/2222/adminconsent?client_id=11111111-1111-1111-1111-111111111111");
    assert_eq!(err.consent_url(), Some(expected.as_str()));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(seen.lock().unwrap()[0].0, "/2222/oauth2/v2.0/token");
}

#[tokio::test]
async fn unreachable_endpoint_is_transient() {
    // Bind then drop: nothing listens there any more.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = broker(&format!("http://{addr}"), TokenEndpointVersion::V2)
        .fetch_once("2222", SCOPE)
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::Transport { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(!err.to_string().contains("the-secret"));
    // The cause goes to the log line (as a chain), not to clients.
    let chain = crate::error_chain::Chain(&err).to_string();
    assert!(chain.len() > err.to_string().len(), "{chain}");
}
