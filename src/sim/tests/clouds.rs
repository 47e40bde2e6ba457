//! Apps and clouds: tokens of more apps (secret or certificate) for the tenants that consented
//! to them, a second listener as a government cloud with its own authority, audiences and
//! issuer, and the records naming app, issuer, host and listener.

use serde_json::{json, Value};

use super::*;
use crate::sim::{
    jwt, CredentialKind, SimApp, SimCloud, SimCredential, TokenEndpoint, PUBLIC_CLOUD,
};

const OWN_ID: &str = "22222222-0000-4000-8000-00000000a001";
const OWN_SECRET: &str = "own-secret";
const CERT_ID: &str = "22222222-0000-4000-8000-00000000a002";
const GOV_XDR: &str = "https://api-gov.security.microsoft.us";
const GOV_MDE: &str = "https://api-gov.securitycenter.microsoft.us";
const GOV_GRAPH: &str = "https://graph.microsoft.us";

/// The demo plus an app with a secret (consented by fabrikam, as well as the main one), an app
/// with the fixture certificate (consented by contoso only), and the `gov` cloud.
fn config() -> SimConfig {
    let mut config = SimConfig::demo();
    config.apps.push(SimApp {
        name: "own".into(),
        client_id: OWN_ID.into(),
        credential: SimCredential::Secret(OWN_SECRET.into()),
    });
    config.apps.push(SimApp {
        name: "cert".into(),
        client_id: CERT_ID.into(),
        credential: SimCredential::Certificate {
            cert_der: app_cert().cert_der.clone(),
            public_key_pkcs1_der: app_cert().public_pkcs1.clone(),
        },
    });
    config.consents.insert(
        FABRIKAM.into(),
        vec![config.client_id.clone(), OWN_ID.into()],
    );
    config.consents.insert(CONTOSO.into(), vec![CERT_ID.into()]);
    config.clouds.push(SimCloud::gov("gov"));
    config
}

async fn secret_token(url: &str, client_id: &str, secret: &str, scope: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("scope", scope),
        ("client_secret", secret),
    ];
    let (status, _, body) = post_form(url, &form).await;
    (status, body)
}

async fn assertion_token(url: &str, client_id: &str) -> (u16, Value) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"typ": "JWT", "x5t#S256": jwt::thumbprint_s256(&app_cert().cert_der)});
    let claims = json!({"aud": url, "iss": client_id, "sub": client_id, "jti": support_uuid(),
        "nbf": now, "iat": now, "exp": now + 600});
    let assertion = sign_assertion("PS256", header, &claims);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("scope", SCOPE),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", &assertion),
    ];
    let (status, _, body) = post_form(url, &form).await;
    (status, body)
}

fn support_uuid() -> String {
    crate::sim::support::uuid()
}

fn code(body: &Value) -> u64 {
    body["error_codes"][0].as_u64().unwrap_or(0)
}

async fn get_status(url: &str, token: &str) -> u16 {
    client()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn each_app_gets_tokens_naming_it_where_its_tenant_consented() {
    let sim = Simulator::start(config()).await.unwrap();
    let main = sim.config().client_id.clone();
    let main_secret = sim.config().client_secret.clone();
    let fabrikam = sim.token_url(FABRIKAM, TokenEndpoint::V2);
    let contoso = sim.token_url(CONTOSO, TokenEndpoint::V2);

    // fabrikam consented to both the main app and `own`: each gets a token naming it.
    let (status, body) = secret_token(&fabrikam, OWN_ID, OWN_SECRET, SCOPE).await;
    assert_eq!(status, 200, "{body}");
    let own = claims(body["access_token"].as_str().unwrap());
    assert_eq!(
        (&own["azp"], &own["tid"]),
        (&json!(OWN_ID), &json!(FABRIKAM))
    );
    assert_eq!(own["app_displayname"], "own");
    let (status, body) = secret_token(&fabrikam, &main, &main_secret, SCOPE).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(claims(body["access_token"].as_str().unwrap())["azp"], main);
    // Each app's own secret only.
    let (status, body) = secret_token(&fabrikam, OWN_ID, &main_secret, SCOPE).await;
    assert_eq!((status, code(&body)), (401, 7000215), "{body}");

    // contoso lists only `cert`: the main app and `own` are not consented there.
    let (status, body) = secret_token(&contoso, &main, &main_secret, SCOPE).await;
    assert_eq!((status, code(&body)), (400, 700016), "{body}");
    let (status, body) = secret_token(&contoso, OWN_ID, OWN_SECRET, SCOPE).await;
    assert_eq!((status, code(&body)), (400, 700016), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains(OWN_ID));
    // `cert` signs with its certificate; that certificate is not the main app's.
    let (status, body) = assertion_token(&contoso, CERT_ID).await;
    assert_eq!(status, 200, "{body}");
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!((&c["azp"], &c["azpacr"]), (&json!(CERT_ID), &json!("2")));
    let (status, body) = secret_token(&contoso, CERT_ID, OWN_SECRET, SCOPE).await;
    assert_eq!((status, code(&body)), (401, 7000215), "{body}");
    let (status, body) = assertion_token(&fabrikam, &main).await;
    assert_eq!((status, code(&body)), (401, 700027), "{body}");

    // A rotated secret replaces the configured one.
    sim.set_app_secret(OWN_ID, "rotated");
    let (status, body) = secret_token(&fabrikam, OWN_ID, OWN_SECRET, SCOPE).await;
    assert_eq!((status, code(&body)), (401, 7000215), "{body}");
    assert_eq!(
        secret_token(&fabrikam, OWN_ID, "rotated", SCOPE).await.0,
        200
    );
    sim.set_app_secret(OWN_ID, OWN_SECRET);

    // Consent changes at run time, per app.
    sim.set_app_consent(CONTOSO, OWN_ID, true);
    assert_eq!(
        secret_token(&contoso, OWN_ID, OWN_SECRET, SCOPE).await.0,
        200
    );
    sim.set_app_consent(FABRIKAM, OWN_ID, false);
    assert_eq!(
        secret_token(&fabrikam, OWN_ID, OWN_SECRET, SCOPE).await.0,
        400
    );

    let records = sim.token_requests();
    let host = sim.base_url().trim_start_matches("http://").to_owned();
    assert!(records
        .iter()
        .all(|r| r.host == host && r.cloud == PUBLIC_CLOUD));
    let kinds: Vec<(&str, CredentialKind, u16)> = records
        .iter()
        .map(|r| (r.client_id.as_str(), r.credential, r.status))
        .collect();
    assert_eq!(kinds[0], (OWN_ID, CredentialKind::Secret, 200));
    assert_eq!(kinds[5], (CERT_ID, CredentialKind::Assertion, 200));
}

#[tokio::test]
async fn a_second_listener_is_a_cloud_with_its_own_authority_and_audiences() {
    let mut config = config();
    config.tenant_clouds.insert(CONTOSO.into(), "gov".into());
    let sim = Simulator::start(config).await.unwrap();
    let gov = sim.cloud_base_url("gov").unwrap().to_owned();
    assert_ne!(gov, sim.base_url());
    assert_eq!(
        sim.simulator().cloud_base_url("gov").as_deref(),
        Some(&*gov)
    );
    let main = sim.config().client_id.clone();
    let secret = sim.config().client_secret.clone();
    let at_gov = sim
        .cloud_token_url("gov", FABRIKAM, TokenEndpoint::V2)
        .unwrap();

    // The gov authority issues tokens for gov audiences only, naming itself as issuer.
    let scope = format!("{GOV_MDE}/.default");
    let (status, body) = secret_token(&at_gov, &main, &secret, &scope).await;
    assert_eq!(status, 200, "{body}");
    let mde = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&mde)["iss"], format!("{gov}/{FABRIKAM}/v2.0"));
    let (status, body) = secret_token(&at_gov, &main, &secret, SCOPE).await;
    assert_eq!((status, code(&body)), (400, 500011), "{body}");
    let public = token(&sim, FABRIKAM).await;
    // contoso is homed in gov: the public authority does not know it.
    let (status, body) = secret_token(
        &sim.token_url(CONTOSO, TokenEndpoint::V2),
        &main,
        &secret,
        SCOPE,
    )
    .await;
    assert_eq!((status, code(&body)), (400, 90002), "{body}");

    // Each API takes its own cloud's tokens; the family follows the audience's host.
    assert_eq!(get_status(&format!("{gov}/api/machines"), &mde).await, 200);
    assert_eq!(get_status(&format!("{gov}/api/incidents"), &mde).await, 401);
    assert_eq!(
        get_status(&format!("{}/api/machines", sim.base_url()), &mde).await,
        401
    );
    assert_eq!(
        get_status(&format!("{gov}/api/incidents"), &public).await,
        401
    );
    for (aud, path) in [
        (GOV_XDR, "/api/incidents"),
        (GOV_GRAPH, "/v1.0/security/incidents"),
    ] {
        let (status, body) =
            secret_token(&at_gov, &main, &secret, &format!("{aud}/.default")).await;
        assert_eq!(status, 200, "{body}");
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(
            get_status(&format!("{gov}{path}"), token).await,
            200,
            "{aud}"
        );
    }

    let api = sim.api_requests();
    let first = &api[0];
    assert_eq!((first.cloud.as_str(), first.status), ("gov", 200));
    assert_eq!(first.host, gov.trim_start_matches("http://"));
    assert_eq!(first.listener, sim.cloud_addr("gov").unwrap());
    assert_eq!(first.app_id.as_deref(), Some(main.as_str()));
    assert_eq!(first.aud.as_deref(), Some(GOV_MDE));
    assert_eq!(first.issuer, Some(format!("{gov}/{FABRIKAM}/v2.0")));
    // Refused tokens are recorded with what they said, on the listener they reached.
    let misdirected = &api[2];
    assert_eq!(
        (misdirected.cloud.as_str(), misdirected.status),
        (PUBLIC_CLOUD, 401)
    );
    assert_eq!(misdirected.issuer, first.issuer);
    let token_records = sim.token_requests();
    assert_eq!(token_records[0].cloud, "gov");
    assert_eq!(token_records[0].scope_or_resource, scope);
}

#[tokio::test]
async fn the_control_endpoint_shows_apps_and_clouds_and_sets_app_consent() {
    let sim = Simulator::start(config()).await.unwrap();
    let info: Value = client()
        .get(format!("{}/_sim", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info["apps"][0],
        json!({"name": "own", "client_id": OWN_ID, "credential": "secret"})
    );
    assert_eq!(info["apps"][1]["credential"], "certificate");
    assert!(!info.to_string().contains(OWN_SECRET));
    assert_eq!(info["clouds"][1]["name"], "gov");
    assert_eq!(
        info["clouds"][1]["base_url"],
        sim.cloud_base_url("gov").unwrap()
    );
    assert_eq!(info["clouds"][1]["audiences"][2], GOV_GRAPH);

    let url = format!("{}/_sim/tenants/{CONTOSO}", sim.base_url());
    let resp = client()
        .post(url)
        .body(json!({"app_consent": {OWN_ID: true}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let at = sim.token_url(CONTOSO, TokenEndpoint::V2);
    assert_eq!(secret_token(&at, OWN_ID, OWN_SECRET, SCOPE).await.0, 200);
    let requests: Value = client()
        .get(format!(
            "{}/_sim/requests",
            sim.cloud_base_url("gov").unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(requests["token_requests"][0]["client_id"], OWN_ID);
    assert_eq!(requests["token_requests"][0]["cloud"], PUBLIC_CLOUD);
}

#[tokio::test]
async fn an_unknown_cloud_cannot_be_served() {
    let sim = Simulator::new(SimConfig::demo());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = sim
        .serve_cloud("gov", listener, None, async {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn the_dev_setup_has_a_tenant_on_its_own_app_and_one_in_gov() {
    let dev = SimConfig::dev();
    assert_eq!(dev.tenants.len(), 4);
    let northwind = &dev.tenants[2];
    let agency = &dev.tenants[3];
    let own = dev.own_app_of_tenant(&northwind.id).unwrap();
    assert_eq!(own.name, crate::sim::DEV_OWN_APP);
    assert!(!dev.consented_by_default(&northwind.id, &dev.client_id));
    assert!(dev.own_app_of_tenant(&agency.id).is_none());
    assert_eq!(dev.cloud_of_tenant(&agency.id), crate::sim::DEV_GOV_CLOUD);
    assert_eq!(dev.cloud_of_tenant(&northwind.id), PUBLIC_CLOUD);
    // The demo itself stays as it was.
    let demo = SimConfig::demo();
    assert_eq!(demo.tenants.len(), 2);
    assert!(demo.apps.is_empty() && demo.clouds.is_empty());
}
