//! Apps and clouds: the apps the simulated Entra ID knows besides the main one
//! ([`SimConfig::client_id`]), which of them each tenant has consented to, and the clouds, each
//! served on a listener of its own with its own authority, API base and token audiences.
//!
//! - **Apps.** The main app takes its secret ([`SimConfig::client_secret`]), certificates
//!   registered at run time ([`super::Simulator::register_certificate`]) and federated
//!   credentials. Each [`SimApp`] takes its one [`SimCredential`]: a secret, or a certificate
//!   whose assertions are checked as the main app's are (see `assertion`), with `iss` = `sub` =
//!   its own client id. A token names the app it was issued to: `appid` (v1 tokens) or `azp` (v2).
//! - **Consent.** A tenant has consented to the main app only, unless [`SimConfig::consents`]
//!   lists the client ids it has consented to (then exactly those);
//!   [`super::Simulator::set_app_consent`] changes one at run time. Any other app gets Entra's
//!   AADSTS700016, as an unconsented tenant does.
//! - **Clouds.** The main listener is cloud [`PUBLIC_CLOUD`], whose audiences are
//!   [`SimConfig::api_audience`] and [`SimConfig::extra_audiences`]; each [`SimCloud`] is served on
//!   another listener ([`super::Simulator::serve_cloud`]; [`super::RunningSim`] binds one per
//!   cloud) with its own audiences, by default the US government ones ([`GOV_AUDIENCES`]). A
//!   listener is its cloud's authority and API base at once: tokens requested there name it as
//!   issuer (`iss` = `{base}/{tid}/`, v2 `{base}/{tid}/v2.0`), are only issued for its audiences,
//!   and only its tokens are accepted by its API (another cloud's token is a 401, as a real
//!   cloud refuses a token of another's authority). The API family of an audience follows its
//!   host in every cloud (`family`): `api-gov.securitycenter.microsoft.us` is Defender for
//!   Endpoint, `graph.microsoft.us` Graph, `api-gov.security.microsoft.us` Defender XDR.
//!
//! # How this differs from Entra ID
//! - One simulator is every cloud: tenants, apps, failure modes, rate-limit windows and records
//!   are shared. Every app is known in every cloud, and so is every tenant unless
//!   [`SimConfig::tenant_clouds`] homes it in one (then the others answer AADSTS90002, tenant
//!   not found, as a cloud that does not hold the tenant does).
//! - A token's `roles` are the tenant's whichever app asks (Entra grants per app).
//! - The token version follows the endpoint (v1 endpoint: v1 claims, v2: v2 claims); Entra picks
//!   it by the resource's `accessTokenAcceptedVersion`, and Microsoft's APIs get v1 tokens from
//!   both endpoints.
//! - Federated credentials belong to the main app only.

use super::family::Audience;
use super::{SimConfig, SimTenant, DEMO_ROLES};

/// The cloud of the main listener ([`super::Simulator::serve`]).
pub const PUBLIC_CLOUD: &str = "public";

/// The audiences of a [`SimCloud::gov`]: Defender XDR, Defender for Endpoint and Graph in the US
/// government clouds (GCC High; see the config's cloud presets).
pub const GOV_AUDIENCES: [&str; 3] = [
    "https://api-gov.security.microsoft.us",
    "https://api-gov.securitycenter.microsoft.us",
    "https://graph.microsoft.us",
];

/// An application besides the main one.
#[derive(Clone, PartialEq, Eq)]
pub struct SimApp {
    /// Short name (`[apps.NAME]` in `serve --dev`; the tokens' `app_displayname`).
    pub name: String,
    /// Its application (client) id.
    pub client_id: String,
    pub credential: SimCredential,
}

/// How a [`SimApp`] proves its identity.
#[derive(Clone, PartialEq, Eq)]
pub enum SimCredential {
    /// A client secret.
    Secret(String),
    /// A certificate: assertions naming its thumbprint (`x5t#S256` or `x5t`) are verified with
    /// the PKCS#1 `RSAPublicKey` DER.
    Certificate {
        cert_der: Vec<u8>,
        public_key_pkcs1_der: Vec<u8>,
    },
}

impl std::fmt::Debug for SimApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimApp")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("credential", &self.credential.kind())
            .finish()
    }
}

impl std::fmt::Debug for SimCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl SimCredential {
    /// `secret` or `certificate`, never the secret itself.
    pub fn kind(&self) -> &'static str {
        match self {
            SimCredential::Secret(_) => "secret",
            SimCredential::Certificate { .. } => "certificate",
        }
    }
}

/// A cloud besides [`PUBLIC_CLOUD`], served on a listener of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCloud {
    /// Its name: the `cloud` of the records of its requests.
    pub name: String,
    /// The resources its token endpoint issues tokens for and its API accepts.
    pub audiences: Vec<String>,
}

impl SimCloud {
    /// A US government cloud with [`GOV_AUDIENCES`].
    pub fn gov(name: &str) -> Self {
        SimCloud {
            name: name.to_owned(),
            audiences: GOV_AUDIENCES.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// An app as the token endpoint checks it: the main one or a [`SimApp`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppRef<'a> {
    pub(crate) name: &'a str,
    pub(crate) client_id: &'a str,
    /// Its secret; `None` for an app that authenticates with a certificate only.
    pub(crate) secret: Option<&'a str>,
    /// The main app (the one with federated credentials).
    pub(crate) main: bool,
}

impl SimConfig {
    /// The app whose client id is `client_id` (ASCII case-insensitive).
    pub(crate) fn app(&self, client_id: &str) -> Option<AppRef<'_>> {
        if client_id.eq_ignore_ascii_case(&self.client_id) {
            return Some(AppRef {
                name: "defender-proxy simulator",
                client_id: &self.client_id,
                secret: Some(&self.client_secret),
                main: true,
            });
        }
        self.apps
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
            .map(|a| AppRef {
                name: &a.name,
                client_id: &a.client_id,
                secret: match &a.credential {
                    SimCredential::Secret(secret) => Some(secret),
                    SimCredential::Certificate { .. } => None,
                },
                main: false,
            })
    }

    /// Whether `cloud` is [`PUBLIC_CLOUD`] or one of [`SimConfig::clouds`].
    pub(crate) fn has_cloud(&self, cloud: &str) -> bool {
        cloud == PUBLIC_CLOUD || self.clouds.iter().any(|c| c.name == cloud)
    }

    /// The audiences of `cloud` (none for a cloud it does not have).
    pub(crate) fn audiences<'a>(&'a self, cloud: &str) -> Box<dyn Iterator<Item = &'a str> + 'a> {
        if cloud == PUBLIC_CLOUD {
            return Box::new(
                std::iter::once(self.api_audience.as_str())
                    .chain(self.extra_audiences.iter().map(String::as_str)),
            );
        }
        let cloud = self.clouds.iter().find(|c| c.name == cloud);
        Box::new(
            cloud
                .into_iter()
                .flat_map(|c| c.audiences.iter().map(String::as_str)),
        )
    }

    /// The audience of `cloud` whose API family is `family` (by its host), if it has one.
    pub(crate) fn audience_of(&self, cloud: &str, family: Audience) -> Option<&str> {
        self.audiences(cloud).find(|a| Audience::of(a) == family)
    }

    /// Whether the tenant consented to the app unless told otherwise at run time.
    pub(crate) fn consented_by_default(&self, tenant_id: &str, client_id: &str) -> bool {
        let listed = self
            .consents
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(tenant_id));
        match listed {
            Some((_, apps)) => apps.iter().any(|a| a.eq_ignore_ascii_case(client_id)),
            None => client_id.eq_ignore_ascii_case(&self.client_id),
        }
    }

    /// Whether the tenant is known in `cloud` (see [`SimConfig::tenant_clouds`]).
    pub(crate) fn tenant_in_cloud(&self, tenant_id: &str, cloud: &str) -> bool {
        self.tenant_clouds
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(tenant_id))
            .is_none_or(|(_, home)| home == cloud)
    }

    /// The cloud the tenant is homed in ([`PUBLIC_CLOUD`] unless [`SimConfig::tenant_clouds`]
    /// says otherwise).
    pub fn cloud_of_tenant(&self, tenant_id: &str) -> &str {
        self.tenant_clouds
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(tenant_id))
            .map_or(PUBLIC_CLOUD, |(_, home)| home.as_str())
    }

    /// The one [`SimApp`] the tenant consented to when [`SimConfig::consents`] lists apps for it
    /// and not the main one: the app it gets its tokens as in `serve --dev`.
    pub fn own_app_of_tenant(&self, tenant_id: &str) -> Option<&SimApp> {
        if self.consented_by_default(tenant_id, &self.client_id) {
            return None;
        }
        self.apps
            .iter()
            .find(|a| self.consented_by_default(tenant_id, &a.client_id))
    }
}

/// The app of the third `serve --dev` tenant, a customer that brought its own app.
pub const DEV_OWN_APP: &str = "northwind-own";
/// The simulated US government cloud of `serve --dev`.
pub const DEV_GOV_CLOUD: &str = "gov";

impl SimConfig {
    /// The setup of `serve --dev`: the demo tenants `contoso` and `fabrikam` on the main app,
    /// `northwind` on its own app [`DEV_OWN_APP`] (a secret; consented to that app only), and
    /// `agency`, homed in the simulated US government cloud [`DEV_GOV_CLOUD`].
    pub fn dev() -> Self {
        let mut config = Self::demo();
        let tenant = |name: &str, id: &str| SimTenant {
            name: name.into(),
            id: id.into(),
            roles: DEMO_ROLES.iter().map(|r| r.to_string()).collect(),
        };
        let northwind = tenant("northwind", "11111111-aaaa-4aaa-8aaa-000000000003");
        let agency = tenant("agency", "11111111-aaaa-4aaa-8aaa-000000000004");
        let own = SimApp {
            name: DEV_OWN_APP.into(),
            client_id: "00000000-0000-0000-0000-00000000d3f1".into(),
            credential: SimCredential::Secret("dev-northwind-secret-not-for-production".into()),
        };
        config
            .consents
            .insert(northwind.id.clone(), vec![own.client_id.clone()]);
        config
            .tenant_clouds
            .insert(agency.id.clone(), DEV_GOV_CLOUD.into());
        config.apps.push(own);
        config.clouds.push(SimCloud::gov(DEV_GOV_CLOUD));
        config.tenants.extend([northwind, agency]);
        config
    }
}
