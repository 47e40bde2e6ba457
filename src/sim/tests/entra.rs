//! Token endpoint: grants, error codes, failure modes and certificate assertions.

use std::time::Duration;

use http::StatusCode;
use serde_json::{json, Value};

use super::*;
use crate::sim::jwt;
use crate::sim::{CredentialKind, TokenEndpoint};

fn secret_form<'a>(
    sim: &'a RunningSim,
    scope_key: &'a str,
    scope: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", &sim.config().client_id),
        (scope_key, scope),
        ("client_secret", &sim.config().client_secret),
    ]
}

fn error_code(body: &Value) -> u64 {
    body["error_codes"][0].as_u64().unwrap()
}

#[tokio::test]
async fn v2_secret_grant_issues_a_jwt_with_the_tenant_claims() {
    let sim = start().await;
    let url = sim.token_url(CONTOSO, TokenEndpoint::V2);
    let (status, headers, body) = post_form(&url, &secret_form(&sim, "scope", SCOPE)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store, no-cache");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert!(body.get("refresh_in").is_none());
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["tid"], CONTOSO);
    assert_eq!(c["aud"], "https://api.security.microsoft.com");
    // A v2 token: the authority it was requested at as issuer, the app as `azp`.
    assert_eq!(c["iss"], format!("{}/{CONTOSO}/v2.0", sim.base_url()));
    assert_eq!(c["azp"], sim.config().client_id);
    assert_eq!((&c["ver"], c.get("appid")), (&json!("2.0"), None));
    assert_eq!(c["roles"][0], "Incident.Read.All");
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        3599
    );
    assert!(c["uti"].as_str().is_some_and(|u| !u.is_empty()));
    let records = sim.token_requests();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.tenant.as_str(), r.version, r.credential),
        (CONTOSO, TokenEndpoint::V2, CredentialKind::Secret)
    );
    assert_eq!(
        (r.scope_or_resource.as_str(), r.status, r.error_code),
        (SCOPE, 200, None)
    );
    assert_eq!(sim.token_request_count(CONTOSO), 1);
    assert_eq!(sim.token_request_count(FABRIKAM), 0);
}

#[tokio::test]
async fn v1_answers_lifetimes_as_strings_with_the_resource() {
    let sim = start().await;
    let url = sim.token_url(FABRIKAM, TokenEndpoint::V1);
    let resource = "https://api.security.microsoft.com";
    let (status, _, body) = post_form(&url, &secret_form(&sim, "resource", resource)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], "3599");
    assert_eq!(body["ext_expires_in"], "3599");
    assert_eq!(body["resource"], resource);
    let exp: u64 = body["expires_on"].as_str().unwrap().parse().unwrap();
    let nbf: u64 = body["not_before"].as_str().unwrap().parse().unwrap();
    assert_eq!(exp - nbf, 3599);
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["tid"], FABRIKAM);
    // A v1 token: the issuer without `/v2.0`, the app as `appid`.
    assert_eq!(c["iss"], format!("{}/{FABRIKAM}/", sim.base_url()));
    assert_eq!(
        (&c["appid"], &c["appidacr"]),
        (&json!(sim.config().client_id), &json!("1"))
    );
    assert_eq!((&c["ver"], c.get("azp")), (&json!("1.0"), None));
    assert_eq!(sim.token_requests()[0].version, TokenEndpoint::V1);
}

#[tokio::test]
async fn credential_and_consent_errors_use_entra_codes() {
    let sim = start().await;
    let url = sim.token_url(CONTOSO, TokenEndpoint::V2);
    let mut form = secret_form(&sim, "scope", SCOPE);
    form[3].1 = "wrong";
    let (status, _, body) = post_form(&url, &form).await;
    assert_eq!(
        (status, body["error"].as_str(), error_code(&body)),
        (401, Some("invalid_client"), 7000215)
    );
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS7000215: "));
    for key in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body[key].is_string(), "{key} missing");
    }
    assert!(
        !body.to_string().contains("wrong"),
        "the secret is never echoed"
    );

    sim.set_consent(CONTOSO, false);
    let (status, _, body) = post_form(&url, &secret_form(&sim, "scope", SCOPE)).await;
    assert_eq!(
        (status, body["error"].as_str(), error_code(&body)),
        (400, Some("unauthorized_client"), 700016)
    );

    let mut form = secret_form(&sim, "scope", SCOPE);
    form[1].1 = "99999999-0000-0000-0000-000000000000";
    let url2 = sim.token_url(FABRIKAM, TokenEndpoint::V2);
    let (status, _, body) = post_form(&url2, &form).await;
    assert_eq!((status, error_code(&body)), (400, 700016));

    let unknown = sim.token_url("22222222-0000-0000-0000-000000000000", TokenEndpoint::V2);
    let (status, _, body) = post_form(&unknown, &secret_form(&sim, "scope", SCOPE)).await;
    assert_eq!(
        (status, body["error"].as_str(), error_code(&body)),
        (400, Some("invalid_request"), 90002)
    );

    let (status, _, body) = post_form(&url2, &[("client_id", "x")]).await;
    assert_eq!((status, error_code(&body)), (400, 900144));
    let (status, _, body) = post_form(&url2, &[("grant_type", "password")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, _, body) = post_form(
        &url2,
        &secret_form(&sim, "scope", "https://api.security.microsoft.com"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, _, body) = post_form(
        &url2,
        &secret_form(&sim, "scope", "https://example.com/.default"),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, 500011));

    let codes: Vec<Option<u32>> = sim.token_requests().iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        [7000215, 700016, 700016, 90002, 900144, 70003, 1002012, 500011].map(Some)
    );
}

#[tokio::test]
async fn failure_modes_count_down_and_overrides_apply() {
    let sim = start().await;
    let url = sim.token_url(CONTOSO, TokenEndpoint::V2);
    sim.fail_token_requests_with(CONTOSO, 2, StatusCode::SERVICE_UNAVAILABLE, Some(0));
    for _ in 0..2 {
        let (status, headers, body) = post_form(&url, &secret_form(&sim, "scope", SCOPE)).await;
        assert_eq!(
            (status, body["error"].as_str(), error_code(&body)),
            (503, Some("temporarily_unavailable"), 50000)
        );
        assert_eq!(headers["retry-after"], "0");
    }
    sim.set_tid_override(CONTOSO, Some("evil-tid".into()));
    sim.set_token_lifetime(Duration::from_secs(7200), Some(Duration::from_secs(3600)));
    let (status, _, body) = post_form(&url, &secret_form(&sim, "scope", SCOPE)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["expires_in"].as_u64(), body["refresh_in"].as_u64()),
        (Some(7200), Some(3600))
    );
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["tid"],
        "evil-tid"
    );
    sim.wait_token_requests(3).await;
    assert_eq!(sim.total_token_request_count(), 3);

    sim.fail_token_requests_with(FABRIKAM, 1, StatusCode::TOO_MANY_REQUESTS, Some(60));
    let url = sim.token_url(FABRIKAM, TokenEndpoint::V2);
    let (status, headers, body) = post_form(&url, &secret_form(&sim, "scope", SCOPE)).await;
    assert_eq!((status, error_code(&body)), (429, 90055));
    assert_eq!(headers["retry-after"], "60");
}

#[tokio::test(start_paused = true)]
async fn token_delay_holds_the_answer() {
    let sim = start().await;
    sim.set_token_delay(CONTOSO, Duration::from_secs(30));
    let url = sim.token_url(CONTOSO, TokenEndpoint::V2);
    let started = tokio::time::Instant::now();
    let form: Vec<(String, String)> = secret_form(&sim, "scope", SCOPE)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let request = tokio::spawn(async move {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        post_form(&url, &pairs).await.0
    });
    sim.wait_token_requests_started(CONTOSO, 1).await;
    assert_eq!(
        sim.token_request_count(CONTOSO),
        0,
        "arrived, not yet answered"
    );
    assert_eq!(request.await.unwrap(), 200);
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert_eq!(sim.token_request_count(CONTOSO), 1);
}

fn assertion_claims(sim: &RunningSim, aud: &str, jti: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let id = &sim.config().client_id;
    json!({"aud": aud, "iss": id, "sub": id, "jti": jti, "nbf": now, "iat": now, "exp": now + 600})
}

async fn post_assertion(sim: &RunningSim, url: &str, assertion: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", sim.config().client_id.as_str()),
        ("scope", SCOPE),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ];
    let (status, _, body) = post_form(url, &form).await;
    (status, body)
}

#[tokio::test]
async fn certificate_assertions_are_verified_and_replays_refused() {
    let sim = start().await;
    let cert = app_cert();
    let url = sim.token_url(CONTOSO, TokenEndpoint::V2);
    let header = json!({"typ": "JWT", "x5t#S256": jwt::thumbprint_s256(&cert.cert_der)});

    let good = sign_assertion(
        "PS256",
        header.clone(),
        &assertion_claims(&sim, &url, "jti-1"),
    );
    let (status, body) = post_assertion(&sim, &url, &good).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, 700027),
        "unregistered certificate"
    );

    sim.register_certificate(&cert.cert_der, &cert.public_pkcs1);
    let good = sign_assertion(
        "PS256",
        header.clone(),
        &assertion_claims(&sim, &url, "jti-2"),
    );
    let (status, body) = post_assertion(&sim, &url, &good).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["azpacr"],
        "2"
    );
    let (status, body) = post_assertion(&sim, &url, &good).await;
    assert_eq!(
        (status, body["error"].as_str(), error_code(&body)),
        (401, Some("invalid_client"), 50013),
        "replay"
    );

    let rs = sign_assertion(
        "RS256",
        header.clone(),
        &assertion_claims(&sim, &url, "jti-3"),
    );
    assert_eq!(post_assertion(&sim, &url, &rs).await.0, 200);

    let legacy = json!({"typ": "JWT", "x5t": jwt::thumbprint_sha1(&cert.cert_der)});
    let old = sign_assertion("RS256", legacy, &assertion_claims(&sim, &url, "jti-4"));
    assert_eq!(post_assertion(&sim, &url, &old).await.0, 200);

    let other_aud = sign_assertion(
        "PS256",
        header.clone(),
        &assertion_claims(&sim, "https://login.example/t/oauth2/v2.0/token", "jti-5"),
    );
    assert_eq!(
        error_code(&post_assertion(&sim, &url, &other_aud).await.1),
        50013
    );

    let mut stale = assertion_claims(&sim, &url, "jti-6");
    stale["exp"] = json!(stale["nbf"].as_u64().unwrap() - 1);
    let stale = sign_assertion("PS256", header.clone(), &stale);
    assert_eq!(
        error_code(&post_assertion(&sim, &url, &stale).await.1),
        700024
    );

    let (input, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{input}.{}", jwt::b64url(&[7u8; 256]));
    assert_eq!(
        error_code(&post_assertion(&sim, &url, &forged).await.1),
        700027
    );

    let credentials: Vec<CredentialKind> =
        sim.token_requests().iter().map(|r| r.credential).collect();
    assert!(credentials.iter().all(|c| *c == CredentialKind::Assertion));
}

/// An unsigned federated token, as a Kubernetes projected service account token looks to Entra
/// (the simulator trusts the issuer instead of checking signatures).
fn federated_token(iss: &str, sub: &str, aud: Value, exp: u64) -> String {
    let header = jwt::b64url(br#"{"alg":"RS256","kid":"k8s"}"#);
    let claims = json!({"iss": iss, "sub": sub, "aud": aud, "exp": exp, "iat": exp - 3600});
    let claims = jwt::b64url(claims.to_string().as_bytes());
    format!("{header}.{claims}.c2lnbmF0dXJl")
}

#[tokio::test]
async fn federated_assertions_are_matched_against_registered_federations() {
    const ISSUER: &str = "https://oidc.prod-aks.azure.com/abc/";
    const SUBJECT: &str = "system:serviceaccount:soc:defender-proxy";
    let sim = start().await;
    let url = sim.token_url(CONTOSO, TokenEndpoint::V2);
    let later = sim.shared.clock.unix_secs() + 3600;
    let exchange = json!("api://AzureADTokenExchange");
    let token = federated_token(ISSUER, SUBJECT, exchange.clone(), later);

    let (status, body) = post_assertion(&sim, &url, &token).await;
    assert_eq!((status, error_code(&body)), (401, 70021), "not registered");
    assert_eq!(body["error"], "invalid_client");

    sim.register_federation(ISSUER, SUBJECT);
    let (status, body) = post_assertion(&sim, &url, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["azpacr"],
        "2"
    );
    // The same projected token serves many requests until it rotates: no replay check.
    assert_eq!(post_assertion(&sim, &url, &token).await.0, 200);
    // Kubernetes writes `aud` as a list.
    let listed = federated_token(ISSUER, SUBJECT, json!([exchange.clone()]), later);
    assert_eq!(post_assertion(&sim, &url, &listed).await.0, 200);

    let other_sub = federated_token(ISSUER, "system:serviceaccount:x:y", exchange.clone(), later);
    assert_eq!(
        error_code(&post_assertion(&sim, &url, &other_sub).await.1),
        70021
    );
    let wrong_aud = federated_token(ISSUER, SUBJECT, json!("api://other"), later);
    assert_eq!(
        error_code(&post_assertion(&sim, &url, &wrong_aud).await.1),
        700212
    );
    let expired = federated_token(ISSUER, SUBJECT, exchange.clone(), later - 7200);
    assert_eq!(
        error_code(&post_assertion(&sim, &url, &expired).await.1),
        700024
    );

    let records = sim.token_requests();
    assert!(records
        .iter()
        .all(|r| r.credential == CredentialKind::Federated));
    assert_eq!(
        records[1].assertion_subject.as_deref(),
        Some(SUBJECT),
        "the subject is recorded, the assertion is not"
    );
    let recorded = serde_json::to_string(&records).unwrap();
    assert!(!recorded.contains(&token), "{recorded}");

    // The control endpoint registers federations too.
    let resp = client()
        .post(format!("{}/_sim/federations", sim.base_url()))
        .json(&json!({"issuer": ISSUER, "subject": "system:serviceaccount:x:y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(post_assertion(&sim, &url, &other_sub).await.0, 200);
}
