//! The simulator's own tests, over real sockets on 127.0.0.1 with reqwest as the client. Shared
//! fixtures live here: the running simulator, form posts, token fetching, and one RSA key and
//! certificate (generated once, RSA keygen being the slow part).

mod api;
mod clouds;
mod control;
mod encoding;
mod entra;
mod families;
mod hunting;

use std::sync::OnceLock;

use serde_json::Value;

use super::{RunningSim, SimConfig, Simulator};

pub(super) const CONTOSO: &str = "11111111-aaaa-4aaa-8aaa-000000000001";
pub(super) const FABRIKAM: &str = "11111111-aaaa-4aaa-8aaa-000000000002";
pub(super) const SCOPE: &str = "https://api.security.microsoft.com/.default";
pub(super) const MDE_SCOPE: &str = "https://api.securitycenter.microsoft.com/.default";
pub(super) const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

pub(super) async fn start() -> RunningSim {
    Simulator::start(SimConfig::demo()).await.unwrap()
}

pub(super) fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// POSTs a form; returns status, headers and the JSON body.
pub(super) async fn post_form(
    url: &str,
    pairs: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let resp = client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

/// A v2 client-secret token for `tenant` (for the Defender XDR API).
pub(super) async fn token(sim: &RunningSim, tenant: &str) -> String {
    token_for(sim, tenant, SCOPE).await
}

/// A v2 client-secret token for `tenant` and `scope`.
pub(super) async fn token_for(sim: &RunningSim, tenant: &str, scope: &str) -> String {
    let url = format!("{}/{tenant}/oauth2/v2.0/token", sim.base_url());
    let secret = sim.config().client_secret.clone();
    let client_id = sim.config().client_id.clone();
    let (status, _, body) = post_form(
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("scope", scope),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// The claims of a JWT, unverified.
pub(super) fn claims(token: &str) -> Value {
    super::jwt::parse(token).unwrap().claims
}

/// An RSA key (PKCS#8), its PKCS#1 public key and a self-signed certificate for it.
pub(super) struct AppCert {
    pub(super) key_pkcs8: Vec<u8>,
    pub(super) public_pkcs1: Vec<u8>,
    pub(super) cert_der: Vec<u8>,
}

pub(super) fn app_cert() -> &'static AppCert {
    static CERT: OnceLock<AppCert> = OnceLock::new();
    CERT.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let key_pkcs8 = key.to_pkcs8_der().unwrap().as_bytes().to_vec();
        let kp =
            rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["app".into()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        let ring_key = ring::signature::RsaKeyPair::from_pkcs8(&key_pkcs8).unwrap();
        AppCert {
            public_pkcs1: ring_key.public().as_ref().to_vec(),
            key_pkcs8,
            cert_der: cert.der().to_vec(),
        }
    })
}

/// Signs a client assertion with the fixture key (`PS256` or `RS256`).
pub(super) fn sign_assertion(alg: &str, header: Value, claims: &Value) -> String {
    use super::jwt::b64url;
    use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256};
    let mut header = header;
    header["alg"] = alg.into();
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let key = RsaKeyPair::from_pkcs8(&app_cert().key_pkcs8).unwrap();
    let mut sig = vec![0; key.public().modulus_len()];
    let padding: &dyn ring::signature::RsaEncoding = if alg == "PS256" {
        &RSA_PSS_SHA256
    } else {
        &RSA_PKCS1_SHA256
    };
    key.sign(
        padding,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", b64url(&sig))
}
