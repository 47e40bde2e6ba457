//! Tenants with their own app or their own cloud (issue 14), checked from the simulator's
//! records: each token request carries its tenant's app (client id and credential) and goes to
//! its cloud's authority; each API request goes to its cloud's host with a token of its own app,
//! tenant, audience and issuer, also in 10,000 mixed concurrent requests; a reload that moves one
//! tenant to another app or cloud touches only that tenant's tokens, and a rotated secret none; `check` and `consent-url` name each
//! tenant's app and authority.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use defender_proxy::config::Windows;
use defender_proxy::sim::{
    ApiRequestRecord, CredentialKind, RunningSim, SimApp, SimCloud, SimConfig, SimCredential,
    SimTenant, TokenRequestRecord, DEMO_ROLES, PUBLIC_CLOUD,
};
use futures_util::StreamExt as _;
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use support::{within, Harness};

const BIN: &str = env!("CARGO_BIN_EXE_defender-proxy");

const OWN: &str = "own";
const OWN_ID: &str = "33333333-0000-4000-8000-00000000b001";
const OWN_SECRET: &str = "own-secret-not-for-production";
const GOV: &str = "gov";
const CONTOSO: &str = "11111111-aaaa-4aaa-8aaa-000000000001";
const FABRIKAM: &str = "11111111-aaaa-4aaa-8aaa-000000000002";
const NORTHWIND: &str = "11111111-aaaa-4aaa-8aaa-000000000003";
const AGENCY: &str = "11111111-aaaa-4aaa-8aaa-000000000004";
const TAILSPIN: &str = "11111111-aaaa-4aaa-8aaa-000000000005";

/// The three APIs of every tenant: the path under the tenant, the path the simulator sees, and
/// the audience in each cloud.
const APIS: [(&str, &str, &str, &str); 3] = [
    (
        "/api/incidents",
        "/api/incidents",
        "https://api.security.microsoft.com",
        "https://api-gov.security.microsoft.us",
    ),
    (
        "/mde/api/machines",
        "/api/machines",
        "https://api.securitycenter.microsoft.com",
        "https://api-gov.securitycenter.microsoft.us",
    ),
    (
        "/graph/v1.0/security/incidents",
        "/v1.0/security/incidents",
        "https://graph.microsoft.com",
        "https://graph.microsoft.us",
    ),
];

/// A tenant of a test: its name and id, whether it is on app `own` (consented to that app only)
/// and whether it is homed in cloud `gov`.
#[derive(Clone, Copy)]
struct Spec {
    name: &'static str,
    id: &'static str,
    own: bool,
    gov: bool,
}

const fn spec(name: &'static str, id: &'static str, own: bool, gov: bool) -> Spec {
    Spec { name, id, own, gov }
}

/// The demo simulator with exactly `tenants`, app `own` with `credential`, and cloud `gov`.
fn sim_config(tenants: &[Spec], credential: SimCredential) -> SimConfig {
    let mut config = SimConfig::demo();
    config.tenants = tenants
        .iter()
        .map(|t| SimTenant {
            name: t.name.into(),
            id: t.id.into(),
            roles: DEMO_ROLES.iter().map(|r| r.to_string()).collect(),
        })
        .collect();
    config.apps.push(SimApp {
        name: OWN.into(),
        client_id: OWN_ID.into(),
        credential,
    });
    config.clouds.push(SimCloud::gov(GOV));
    for t in tenants {
        if t.own {
            config.consents.insert(t.id.into(), vec![OWN_ID.into()]);
        }
        if t.gov {
            config.tenant_clouds.insert(t.id.into(), GOV.into());
        }
    }
    config
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "defender-proxy-clouds-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How `[apps.own]` authenticates in a config file.
enum OwnCredential {
    /// `client_secret = { file = ... }`.
    Secret(PathBuf),
    /// `certificate = { cert = ..., key = ... }`.
    Certificate(PathBuf, PathBuf),
}

/// A config file for `tenants` on the running simulator: `[app]` (its secret in `main_secret`),
/// `[apps.own]`, `[cloud]` and `[clouds.gov]` (preset `gcc-high`, the simulator's `gov`
/// listener as authority and API: its scope comes from the preset), and the `mde` and `graph`
/// `[[api]]`s with their `[api.clouds.gov]` endpoints.
fn config_text(
    sim: &RunningSim,
    main_secret: &Path,
    own: &OwnCredential,
    tenants: &[Spec],
) -> String {
    let base = sim.base_url();
    let gov = sim.cloud_base_url(GOV).unwrap();
    let own = match own {
        OwnCredential::Secret(path) => {
            format!("client_secret = {{ file = \"{}\" }}", path.display())
        }
        OwnCredential::Certificate(cert, key) => format!(
            "certificate = {{ cert = \"{}\", key = \"{}\" }}",
            cert.display(),
            key.display()
        ),
    };
    let mut text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [app]\nclient_id = \"{}\"\nclient_secret = {{ file = \"{}\" }}\n\
         [apps.{OWN}]\nclient_id = \"{OWN_ID}\"\n{own}\n\
         [cloud]\nauthority = \"{base}\"\napi = \"{base}\"\n\
         [clouds.{GOV}]\ncloud = \"gcc-high\"\nauthority = \"{gov}\"\napi = \"{gov}\"\n",
        sim.config().client_id,
        main_secret.display(),
    );
    for (name, (_, _, public, in_gov)) in ["mde", "graph"].iter().zip(&APIS[1..]) {
        text.push_str(&format!(
            "[[api]]\nname = \"{name}\"\nprefix = \"/{name}\"\nurl = \"{base}\"\n\
             scope = \"{public}/.default\"\n\
             [api.clouds.{GOV}]\nurl = \"{gov}\"\nscope = \"{in_gov}/.default\"\n"
        ));
    }
    text.push_str(&tenants_text(tenants));
    text
}

fn tenants_text(tenants: &[Spec]) -> String {
    let mut text = String::new();
    for t in tenants {
        text.push_str(&format!(
            "[[tenant]]\nname = \"{}\"\nid = \"{}\"\n",
            t.name, t.id
        ));
        if t.own {
            text.push_str(&format!("app = \"{OWN}\"\n"));
        }
        if t.gov {
            text.push_str(&format!("cloud = \"{GOV}\"\n"));
        }
    }
    text
}

/// An RSA key and a self-signed certificate for it: PEM files in `dir`, and the simulator's
/// credential that verifies its assertions.
fn certificate(dir: &Path) -> (PathBuf, PathBuf, SimCredential) {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let key_pair =
        rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["own-app".into()])
        .unwrap()
        .self_signed(&key_pair)
        .unwrap();
    let (cert_path, key_path) = (dir.join("own.pem"), dir.join("own-key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, pem.as_bytes()).unwrap();
    let credential = SimCredential::Certificate {
        cert_der: cert.der().to_vec(),
        public_key_pkcs1_der: key
            .to_public_key()
            .to_pkcs1_der()
            .unwrap()
            .as_bytes()
            .to_vec(),
    };
    (cert_path, key_path, credential)
}

fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, secret).unwrap();
    path
}

/// `host:port` of a base URL.
fn authority(base: &str) -> &str {
    base.trim_start_matches("http://")
}

fn tokens_of(sim: &RunningSim, tenant_id: &str) -> Vec<TokenRequestRecord> {
    sim.token_requests()
        .into_iter()
        .filter(|r| r.tenant == tenant_id)
        .collect()
}

fn api_of(sim: &RunningSim, tenant_id: &str) -> Vec<ApiRequestRecord> {
    sim.api_requests()
        .into_iter()
        .filter(|r| r.tid.as_deref() == Some(tenant_id))
        .collect()
}

/// GETs each API of each tenant once; every answer must be 200.
async fn get_every_api(h: &Harness, tenants: &[Spec]) {
    for t in tenants {
        for (path, ..) in APIS {
            let url = format!("/{}{path}?$top=1", t.name);
            let r = h.get(&url).await;
            assert_eq!(r.status(), 200, "{url}: {}", r.text().await.unwrap());
        }
    }
}

#[tokio::test]
async fn two_tenants_on_different_apps_ask_with_their_own_client_id_and_credential() {
    let dir = temp_dir("apps");
    let (cert, key, credential) = certificate(&dir);
    let tenants = [
        spec("contoso", CONTOSO, false, false),
        spec("northwind", NORTHWIND, true, false),
    ];
    let sim_config = sim_config(&tenants, credential);
    let main = sim_config.client_id.clone();
    let main_secret = secret_file(&dir, "main-secret", &sim_config.client_secret);
    let path = dir.join("proxy.toml");
    let h = Harness::start_file_in(sim_config, |sim| {
        let own = OwnCredential::Certificate(cert, key);
        std::fs::write(&path, config_text(sim, &main_secret, &own, &tenants)).unwrap();
        path.clone()
    })
    .await;
    get_every_api(&h, &tenants).await;

    // One token per tenant and API, each asked as the tenant's own app, with its credential.
    for (tenant, client_id, credential) in [
        (CONTOSO, main.as_str(), CredentialKind::Secret),
        (NORTHWIND, OWN_ID, CredentialKind::Assertion),
    ] {
        let tokens = tokens_of(&h.sim, tenant);
        assert_eq!(tokens.len(), 3, "{tokens:#?}");
        for t in &tokens {
            assert_eq!(
                (t.client_id.as_str(), t.credential, t.status),
                (client_id, credential, 200),
                "{t:#?}"
            );
        }
        let api = api_of(&h.sim, tenant);
        assert_eq!(api.len(), 3);
        for r in &api {
            assert_eq!(
                (r.app_id.as_deref(), r.status),
                (Some(client_id), 200),
                "{r:#?}"
            );
        }
    }
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_tenant_on_a_second_cloud_asks_its_authority_and_calls_its_hosts() {
    let dir = temp_dir("cloud");
    let tenants = [
        spec("contoso", CONTOSO, false, false),
        spec("agency", AGENCY, false, true),
    ];
    let sim_config = sim_config(&tenants, SimCredential::Secret(OWN_SECRET.into()));
    let main_secret = secret_file(&dir, "main-secret", &sim_config.client_secret);
    let own = OwnCredential::Secret(secret_file(&dir, "own-secret", OWN_SECRET));
    let path = dir.join("proxy.toml");
    let h = Harness::start_file_in(sim_config, |sim| {
        std::fs::write(&path, config_text(sim, &main_secret, &own, &tenants)).unwrap();
        path.clone()
    })
    .await;
    get_every_api(&h, &tenants).await;

    for (tenant, cloud) in [(CONTOSO, PUBLIC_CLOUD), (AGENCY, GOV)] {
        let base = h.sim.cloud_base_url(cloud).unwrap();
        let gov = cloud == GOV;
        let audience = |(_, _, public, in_gov): (&str, &str, &'static str, &'static str)| {
            if gov {
                in_gov
            } else {
                public
            }
        };
        // Its tokens come from its cloud's authority, for that cloud's audiences.
        let mut scopes: Vec<String> = tokens_of(&h.sim, tenant)
            .iter()
            .map(|t| {
                assert_eq!(
                    (t.cloud.as_str(), t.host.as_str(), t.status),
                    (cloud, authority(base), 200),
                    "{t:#?}"
                );
                t.scope_or_resource.clone()
            })
            .collect();
        scopes.sort();
        let mut expected: Vec<String> = APIS
            .iter()
            .map(|a| format!("{}/.default", audience(*a)))
            .collect();
        expected.sort();
        assert_eq!(scopes, expected);
        // Its requests go to its cloud's host, each API with its audience there.
        let api = api_of(&h.sim, tenant);
        assert_eq!(api.len(), 3);
        for (r, api) in api.iter().zip(APIS) {
            assert!(r.path_and_query.starts_with(api.1), "{r:#?}");
            assert_eq!(
                (r.cloud.as_str(), r.host.as_str(), r.status),
                (cloud, authority(base), 200)
            );
            assert_eq!(r.listener, h.sim.cloud_addr(cloud).unwrap());
            assert_eq!(r.aud.as_deref(), Some(audience(api)));
            assert_eq!(r.issuer, Some(format!("{base}/{tenant}/v2.0")));
        }
    }
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The tenant, app and cloud one of the 10,000 requests was sent for, by its `n`.
fn expected(tenants: &[Spec], n: usize) -> (Spec, (&str, &str, &str, &str)) {
    (
        tenants[n % tenants.len()],
        APIS[(n / tenants.len()) % APIS.len()],
    )
}

/// What is wrong with one API record of the mixed run, if anything.
fn misdirected(h: &Harness, tenants: &[Spec], r: &ApiRequestRecord) -> Option<String> {
    let n: usize = r
        .path_and_query
        .rsplit_once("n=")
        .and_then(|(_, n)| n.parse().ok())?;
    let (t, api) = expected(tenants, n);
    let cloud = if t.gov { GOV } else { PUBLIC_CLOUD };
    let base = h.sim.cloud_base_url(cloud).unwrap();
    let app = if t.own {
        OWN_ID
    } else {
        h.sim_config.client_id.as_str()
    };
    let aud = if t.gov { api.3 } else { api.2 };
    let issuer = format!("{base}/{}/v2.0", t.id);
    let ok = r.status == 200
        && r.path_and_query.starts_with(api.1)
        && r.cloud == cloud
        && r.host == authority(base)
        && r.tid.as_deref() == Some(t.id)
        && r.app_id.as_deref() == Some(app)
        && r.aud.as_deref() == Some(aud)
        && r.issuer.as_deref() == Some(issuer.as_str());
    (!ok).then(|| {
        format!(
            "n={n} for {} {}: got status {} path {} cloud {} host {} tid {:?} app {:?} aud {:?} iss {:?}",
            t.name, api.0, r.status, r.path_and_query, r.cloud, r.host, r.tid, r.app_id, r.aud, r.issuer
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_requests_never_cross_a_tenant_app_or_cloud() {
    const REQUESTS: usize = 10_000;
    let tenants = [
        spec("contoso", CONTOSO, false, false),
        spec("northwind", NORTHWIND, true, false),
        spec("agency", AGENCY, false, true),
        spec("tailspin", TAILSPIN, true, true),
    ];
    let mut sim_config = sim_config(&tenants, SimCredential::Secret(OWN_SECRET.into()));
    sim_config.enforce_limits = false;
    let h = Harness::start_clouds(sim_config, |c| {
        for route in &mut c.rate_limit.routes {
            route.windows = Windows {
                per_minute: None,
                per_hour: None,
                burst: None,
            };
        }
    })
    .await;
    // The config `dev_config_in` made: both apps, both clouds, every pair used once.
    let profiles: Vec<(Option<&str>, Option<&str>)> = h
        .config
        .tenants
        .iter()
        .map(|t| (t.app.as_deref(), t.cloud.as_deref()))
        .collect();
    assert_eq!(
        profiles,
        [
            (None, None),
            (Some(OWN), None),
            (None, Some(GOV)),
            (Some(OWN), Some(GOV))
        ]
    );

    let started = Instant::now();
    let statuses: Vec<u16> = within(Duration::from_secs(60), "10,000 requests", async {
        futures_util::stream::iter(0..REQUESTS)
            .map(|n| {
                let (t, api) = expected(&tenants, n);
                let url = h.url(&format!("/{}{}?$top=1&n={n}", t.name, api.0));
                let http = h.http.clone();
                async move {
                    http.get(url)
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16())
                }
            })
            .buffer_unordered(64)
            .collect()
            .await
    })
    .await;
    let elapsed = started.elapsed();
    eprintln!("{REQUESTS} mixed requests over 4 tenants, 2 apps, 2 clouds: {elapsed:?}");
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{:?}",
        statuses
            .iter()
            .filter(|s| **s != 200)
            .take(5)
            .collect::<Vec<_>>()
    );

    let records = h.sim.api_requests();
    assert_eq!(records.len(), REQUESTS);
    let wrong: Vec<String> = records
        .iter()
        .filter_map(|r| misdirected(&h, &tenants, r))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} misdirected, e.g. {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    let mut seen: Vec<&str> = records
        .iter()
        .map(|r| r.path_and_query.rsplit_once("n=").unwrap().1)
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), REQUESTS, "every request exactly once");
    // One token per tenant and API, each from the tenant's app at its cloud's authority.
    let tokens = h.sim.token_requests();
    assert_eq!(tokens.len(), tenants.len() * APIS.len(), "{tokens:#?}");
    for t in &tokens {
        let spec = tenants.iter().find(|s| s.id == t.tenant).unwrap();
        let app = if spec.own {
            OWN_ID
        } else {
            h.sim_config.client_id.as_str()
        };
        let cloud = if spec.gov { GOV } else { PUBLIC_CLOUD };
        assert_eq!(
            (t.client_id.as_str(), t.cloud.as_str(), t.status),
            (app, cloud, 200),
            "{t:#?}"
        );
    }
    h.stop().await;
}

/// Rewrites the config file and reloads it; the reload must succeed.
async fn rewrite_and_reload(h: &Harness, path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    within(Duration::from_secs(20), "the reload", h.reload())
        .await
        .expect("started from a file")
        .expect("the new config is applied");
}

/// GETs `/api/incidents` of each tenant; every answer must be 200.
async fn get_each(h: &Harness, tenants: &[Spec]) {
    for t in tenants {
        let r = h.get(&format!("/{}/api/incidents?$top=1", t.name)).await;
        assert_eq!(r.status(), 200, "{}", t.name);
    }
}

#[tokio::test]
async fn a_reload_moving_one_tenant_to_another_app_or_cloud_keeps_every_other_token() {
    let dir = temp_dir("reload");
    let mut tenants = [
        spec("contoso", CONTOSO, false, false),
        spec("fabrikam", FABRIKAM, false, false),
        spec("northwind", NORTHWIND, true, false),
        spec("agency", AGENCY, false, true),
    ];
    let sim_config = sim_config(&tenants, SimCredential::Secret(OWN_SECRET.into()));
    let main = sim_config.client_id.clone();
    let main_secret = secret_file(&dir, "main-secret", &sim_config.client_secret);
    let own_secret = secret_file(&dir, "own-secret", OWN_SECRET);
    let own = OwnCredential::Secret(own_secret.clone());
    let path = dir.join("proxy.toml");
    let text = |sim: &RunningSim, tenants: &[Spec]| config_text(sim, &main_secret, &own, tenants);
    let h = Harness::start_file_in(sim_config, |sim| {
        std::fs::write(&path, text(sim, &tenants)).unwrap();
        path.clone()
    })
    .await;
    // fabrikam's admin consents to app `own` too.
    h.sim.set_app_consent(FABRIKAM, OWN_ID, true);
    get_each(&h, &tenants).await;
    assert_eq!(h.sim.total_token_request_count(), 4);

    // fabrikam moves to `own`: one new token request, fabrikam's, as `own`.
    tenants[1].own = true;
    rewrite_and_reload(&h, &path, &text(&h.sim, &tenants)).await;
    get_each(&h, &tenants).await;
    let tokens = h.sim.token_requests();
    assert_eq!(tokens.len(), 5, "{tokens:#?}");
    assert_eq!(
        (tokens[4].tenant.as_str(), tokens[4].client_id.as_str()),
        (FABRIKAM, OWN_ID)
    );
    let api = h.sim.api_requests();
    let after: Vec<(Option<&str>, Option<&str>)> = api[4..]
        .iter()
        .map(|r| (r.tid.as_deref(), r.app_id.as_deref()))
        .collect();
    assert_eq!(
        after,
        [
            (Some(CONTOSO), Some(main.as_str())),
            (Some(FABRIKAM), Some(OWN_ID)),
            (Some(NORTHWIND), Some(OWN_ID)),
            (Some(AGENCY), Some(main.as_str())),
        ]
    );

    // `own`'s secret rotates (in Entra ID, then in its file): the tokens of both its tenants
    // stay, no token request at all.
    h.sim.set_app_secret(OWN_ID, "own-secret-rotated");
    std::fs::write(&own_secret, "own-secret-rotated").unwrap();
    rewrite_and_reload(&h, &path, &text(&h.sim, &tenants)).await;
    get_each(&h, &tenants).await;
    assert_eq!(h.sim.total_token_request_count(), 5);
    let api = h.sim.api_requests();
    assert_eq!(api.len(), 12);
    assert!(api.iter().all(|r| r.status == 200));
    // The next token of a tenant on it (its token revoked) is asked with the new secret, which
    // alone the simulator now accepts.
    h.sim.revoke_tokens(NORTHWIND);
    get_each(&h, &tenants[2..3]).await;
    let tokens = tokens_of(&h.sim, NORTHWIND);
    let last = tokens.last().unwrap();
    assert_eq!(
        (tokens.len(), last.client_id.as_str(), last.status),
        (2, OWN_ID, 200)
    );

    // contoso moves to the gov cloud: one new token request, contoso's, at the gov authority,
    // and its next request at the gov host; the others' tokens stay.
    let before = h.sim.total_token_request_count();
    tenants[0].gov = true;
    rewrite_and_reload(&h, &path, &text(&h.sim, &tenants)).await;
    get_each(&h, &tenants).await;
    let tokens = h.sim.token_requests();
    assert_eq!(tokens.len(), before + 1, "{tokens:#?}");
    let last = tokens.last().unwrap();
    assert_eq!((last.tenant.as_str(), last.cloud.as_str()), (CONTOSO, GOV));
    let contoso = api_of(&h.sim, CONTOSO);
    let moved = contoso.last().unwrap();
    assert_eq!((moved.cloud.as_str(), moved.status), (GOV, 200));
    assert_eq!(moved.aud.as_deref(), Some(APIS[0].3));
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the binary with `args --config config`: its exit code, stdout and stderr.
async fn run_bin(args: &[&str], config: &Path) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("AZURE_FEDERATED_TOKEN_FILE")
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn check_and_consent_url_name_each_tenants_own_app_and_authority() {
    let dir = temp_dir("check");
    let tenants = [
        spec("contoso", CONTOSO, false, false),
        spec("northwind", NORTHWIND, true, false),
        spec("agency", AGENCY, false, true),
    ];
    let sim_config = sim_config(&tenants, SimCredential::Secret(OWN_SECRET.into()));
    let sim = defender_proxy::sim::Simulator::start(sim_config)
        .await
        .unwrap();
    let main = sim.config().client_id.clone();
    let main_secret = secret_file(&dir, "main-secret", &sim.config().client_secret);
    let own = OwnCredential::Secret(secret_file(&dir, "own-secret", OWN_SECRET));
    let path = dir.join("proxy.toml");
    std::fs::write(&path, config_text(&sim, &main_secret, &own, &tenants)).unwrap();
    let (base, gov) = (
        sim.base_url().to_owned(),
        sim.cloud_base_url(GOV).unwrap().to_owned(),
    );
    let consent = |base: &str, tenant: &str, client: &str| {
        format!("{base}/{tenant}/adminconsent?client_id={client}")
    };

    let (code, text, err) = run_bin(&["consent-url"], &path).await;
    assert_eq!(code, Some(0), "{text}{err}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "contoso\t{}\tdefault\tdefault",
                consent(&base, CONTOSO, &main)
            ),
            format!(
                "northwind\t{}\t{OWN}\tdefault",
                consent(&base, NORTHWIND, OWN_ID)
            ),
            format!("agency\t{}\tdefault\t{GOV}", consent(&gov, AGENCY, &main)),
        ]
    );

    // northwind's admin withdrew consent to its own app; agency never consented to the main one.
    sim.set_app_consent(NORTHWIND, OWN_ID, false);
    sim.set_consent(AGENCY, false);
    let (code, text, err) = run_bin(&["check", "--json"], &path).await;
    assert_eq!(code, Some(1), "{text}{err}");
    let report: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}{err}"));
    let by_name = |name: &str| {
        report["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("contoso")["verdict"], "ok", "{report:#}");
    for (name, url) in [
        ("northwind", consent(&base, NORTHWIND, OWN_ID)),
        ("agency", consent(&gov, AGENCY, &main)),
    ] {
        let t = by_name(name);
        assert_eq!(
            (&t["verdict"], &t["aadsts"]),
            (&"fail".into(), &700016.into()),
            "{t:#}"
        );
        assert_eq!(t["consent_url"], url, "{t:#}");
    }
    // Each check asked as the tenant's app at its cloud's authority.
    for (tenant, client, cloud) in [
        (CONTOSO, main.as_str(), PUBLIC_CLOUD),
        (NORTHWIND, OWN_ID, PUBLIC_CLOUD),
        (AGENCY, main.as_str(), GOV),
    ] {
        let tokens = tokens_of(&sim, tenant);
        assert!(!tokens.is_empty());
        for t in tokens {
            assert_eq!(
                (t.client_id.as_str(), t.cloud.as_str()),
                (client, cloud),
                "{t:#?}"
            );
        }
    }
    let (_, text, _) = run_bin(&["check"], &path).await;
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_owned()
    };
    assert!(
        line("northwind").ends_with(&consent(&base, NORTHWIND, OWN_ID)),
        "{text}"
    );
    assert!(
        line("agency ").ends_with(&consent(&gov, AGENCY, &main)),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The reference map of [`expected`]: how many of the 10,000 requests each (tenant, API) gets.
#[test]
fn the_mixed_run_spreads_over_every_tenant_and_api() {
    let tenants = [
        spec("a", CONTOSO, false, false),
        spec("b", NORTHWIND, true, false),
        spec("c", AGENCY, false, true),
        spec("d", TAILSPIN, true, true),
    ];
    let mut counts: HashMap<(&str, &str), usize> = HashMap::new();
    for n in 0..10_000 {
        let (t, api) = expected(&tenants, n);
        *counts.entry((t.name, api.0)).or_default() += 1;
    }
    assert_eq!(counts.len(), 12);
    assert!(
        counts.values().all(|c| (833..=834).contains(c)),
        "{counts:?}"
    );
}
