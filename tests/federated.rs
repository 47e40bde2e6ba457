//! Workload identity federation: the proxy presents the content of a projected token file as its
//! client assertion, reads the file again for every token request (it rotates), and turns an
//! unusable file into a `503 TokenUnavailable` that names the file, without calling Entra ID or
//! the API. Also end to end through the binary with the Azure SDKs' environment variables.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use defender_proxy::config::{Credential, FederatedCredential};
use defender_proxy::sim::{CredentialKind, SimConfig, Simulator};
use support::{error_code, Harness, ProxyProcess, CONTOSO};

const ISSUER: &str = "https://oidc.prod-aks.azure.com/00000000-0000-0000-0000-000000000000/";
const FIRST: &str = "system:serviceaccount:soc:defender-proxy";
const SECOND: &str = "system:serviceaccount:soc:defender-proxy-rotated";

/// A projected service account token as Kubernetes writes it (unsigned here: the simulator
/// trusts the issuer), valid for an hour.
fn projected_token(subject: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k8s"}"#);
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": ["api://AzureADTokenExchange"],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{claims}.c2lnbmF0dXJl")
}

fn federated(path: &Path) -> Credential {
    Credential::Federated(FederatedCredential {
        path: path.to_path_buf(),
    })
}

#[tokio::test]
async fn the_token_file_is_the_assertion_and_is_read_again_for_the_next_token() {
    let dir = support::TempDir::new("rotate");
    let file = dir.join("azure-identity-token");
    // Kubelet writes no trailing newline; a hand-made file has one, which is not sent.
    std::fs::write(&file, format!("{}\n", projected_token(FIRST))).unwrap();
    let credential = federated(&file);
    let h = Harness::start_with(SimConfig::demo(), move |c| c.app.credential = credential).await;
    h.sim.register_federation(ISSUER, FIRST);
    h.sim.register_federation(ISSUER, SECOND);
    let contoso = h.tenant_id(CONTOSO);

    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 200);

    // The kubelet rotates the file; the current token keeps working until it is refused.
    std::fs::write(&file, projected_token(SECOND)).unwrap();
    h.sim.revoke_tokens(&contoso);
    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 200, "a fresh token replaced the revoked one");

    let requests: Vec<_> = h
        .sim
        .token_requests()
        .into_iter()
        .filter(|t| t.tenant == contoso)
        .collect();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(requests
        .iter()
        .all(|t| t.credential == CredentialKind::Federated && t.status == 200));
    assert_eq!(requests[0].assertion_subject.as_deref(), Some(FIRST));
    assert_eq!(
        requests[1].assertion_subject.as_deref(),
        Some(SECOND),
        "the second token request carries the rewritten file"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_missing_token_file_is_a_503_naming_it_and_nothing_is_sent() {
    let dir = support::TempDir::new("missing");
    let file = dir.join("not-projected-yet");
    let credential = federated(&file);
    let h = Harness::start_with(SimConfig::demo(), move |c| c.app.credential = credential).await;
    h.sim.register_federation(ISSUER, FIRST);

    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), "TokenUnavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("federated token file") && message.contains("not-projected-yet"),
        "{message}"
    );
    assert_eq!(
        h.sim.total_token_request_count(),
        0,
        "Entra ID was not asked"
    );
    assert_eq!(h.sim.api_request_count(), 0, "nothing was forwarded");

    // An empty file (say, written non-atomically) is the same kind of credential error.
    std::fs::write(&file, "").unwrap();
    let r = h.get("/fabrikam/api/incidents").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is empty"),
        "{body}"
    );
    assert_eq!(h.sim.total_token_request_count(), 0);
    h.stop().await;
}

#[tokio::test]
async fn an_unknown_workload_is_refused_by_entra_and_its_token_never_shown() {
    let dir = support::TempDir::new("unknown");
    let file = dir.join("token");
    let token = projected_token("system:serviceaccount:other:app");
    std::fs::write(&file, &token).unwrap();
    let credential = federated(&file);
    let h = Harness::start_with(SimConfig::demo(), move |c| c.app.credential = credential).await;
    h.sim.register_federation(ISSUER, FIRST);

    let r = h.get("/contoso/api/incidents").await;
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    assert!(text.contains("AADSTS70021"), "{text}");
    let payload = token.split('.').nth(1).unwrap();
    assert!(!text.contains(payload), "{text}");
    assert_eq!(h.sim.api_request_count(), 0);
    h.stop().await;
}

#[tokio::test]
async fn the_binary_takes_workload_identity_from_the_azure_environment() {
    let sim = Simulator::start(SimConfig::demo()).await.unwrap();
    sim.register_federation(ISSUER, FIRST);
    let dir = support::TempDir::new("env");
    let file = dir.join("azure-identity-token");
    std::fs::write(&file, projected_token(FIRST)).unwrap();
    let contoso = sim.config().tenants[0].id.clone();
    // No client id and no credential in [app]: both come from the environment, as the AKS
    // workload identity webhook injects them.
    let config = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[app]\n\
         [cloud]\nauthority = \"{base}\"\napi = \"{base}\"\n\
         [[tenant]]\nname = \"contoso\"\nid = \"{contoso}\"\n",
        base = sim.base_url()
    );
    let client_id = sim.config().client_id.clone();
    let file_env = file.display().to_string();
    let proxy = ProxyProcess::spawn(
        &config,
        &[
            ("AZURE_CLIENT_ID", client_id.as_str()),
            ("AZURE_FEDERATED_TOKEN_FILE", file_env.as_str()),
        ],
    )
    .await;

    let r = reqwest::get(proxy.url("/contoso/api/incidents"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let requests = sim.token_requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(
        (
            requests[0].credential,
            requests[0].client_id.as_str(),
            requests[0].assertion_subject.as_deref()
        ),
        (CredentialKind::Federated, client_id.as_str(), Some(FIRST))
    );
    let log = proxy.log.lock().unwrap().join("\n");
    assert!(!log.contains(&projected_token(FIRST)[..40]), "{log}");
}
