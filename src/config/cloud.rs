//! `[cloud]` as typed settings: the national cloud preset, Entra ID's authority, the default
//! API and its scope, the token endpoint version.
//!
//! One file per config section (split out of `mod.rs`, which had grown past 500 lines).

use std::path::PathBuf;

use super::defaults;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointVersion {
    /// `{authority}/{tenant}/oauth2/v2.0/token` with `scope`.
    V2,
    /// `{authority}/{tenant}/oauth2/token` with `resource` (the scope less `/.default`).
    V1,
}

/// `[cloud] cloud = ...`: the national cloud whose hosts are the defaults of `authority`, `api`
/// and `scope` (each still overridable; regional API hosts such as `eu.` are set with `api`).
///
/// | preset | login (`authority`) | Defender XDR API (`api`) | default `scope` |
/// |---|---|---|---|
/// | `public` | `login.microsoftonline.com` | `api.security.microsoft.com` | `https://api.security.microsoft.com/.default` |
/// | `gcc` | `login.microsoftonline.com` | `api-gcc.security.microsoft.us` | `https://api-gcc.security.microsoft.us/.default` |
/// | `gcc-high` | `login.microsoftonline.us` | `api-gov.security.microsoft.us` | `https://api-gov.security.microsoft.us/.default` |
/// | `dod` | `login.microsoftonline.us` | `api-gov.security.microsoft.us` | `https://api-gov.security.microsoft.us/.default` |
///
/// For reference, the same sources give the other APIs' hosts per cloud: Defender for Endpoint
/// `api.securitycenter.microsoft.com` / `api-gcc.securitycenter.microsoft.us` /
/// `api-gov.securitycenter.microsoft.us`, Graph `graph.microsoft.com` (public, GCC) /
/// `graph.microsoft.us` (GCC High) / `dod-graph.microsoft.us` (DoD).
///
/// Sources: Microsoft Defender XDR docs "Microsoft Defender XDR for US Government customers"
/// (defender-xdr/usgov), Defender for Endpoint docs "Microsoft Defender for Endpoint for US
/// Government customers" (defender-endpoint/gov), Microsoft Graph docs "National cloud
/// deployments" (graph deployments); collected in the design notes' defender-reference.md.
///
/// The gov-cloud scopes are *not* clearly documented: `{api}/.default` of the preset's API host is
/// the documented pattern of the public cloud carried over, which is why `scope` stays
/// configurable. The scope follows the preset's host, not an overridden `api`: a regional host
/// (`us.`, `eu.`, ...) serves the same resource, so its audience is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloudPreset {
    /// The commercial (worldwide) cloud: the default.
    #[default]
    Public,
    /// US Government Community Cloud (Entra ID in the public cloud, Defender in the US gov one).
    Gcc,
    /// US Government Community Cloud High.
    GccHigh,
    /// US Department of Defense.
    Dod,
}

impl CloudPreset {
    /// Every preset, in the order the config docs list them.
    pub const ALL: [CloudPreset; 4] = [
        CloudPreset::Public,
        CloudPreset::Gcc,
        CloudPreset::GccHigh,
        CloudPreset::Dod,
    ];

    /// The name written in the config file.
    pub fn name(self) -> &'static str {
        match self {
            CloudPreset::Public => "public",
            CloudPreset::Gcc => "gcc",
            CloudPreset::GccHigh => "gcc-high",
            CloudPreset::Dod => "dod",
        }
    }

    /// The preset named `name` (as written in the config file).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Entra ID's base URL in this cloud.
    pub fn authority(self) -> &'static str {
        match self {
            CloudPreset::Public | CloudPreset::Gcc => defaults::AUTHORITY,
            CloudPreset::GccHigh | CloudPreset::Dod => "https://login.microsoftonline.us",
        }
    }

    /// The Defender XDR API's base URL in this cloud.
    pub fn api(self) -> &'static str {
        match self {
            CloudPreset::Public => defaults::API,
            CloudPreset::Gcc => "https://api-gcc.security.microsoft.us",
            CloudPreset::GccHigh | CloudPreset::Dod => "https://api-gov.security.microsoft.us",
        }
    }

    /// The default OAuth scope of the Defender XDR API in this cloud (see the type's docs on why
    /// the gov ones are a best guess).
    pub fn scope(self) -> &'static str {
        match self {
            CloudPreset::Public => defaults::SCOPE,
            CloudPreset::Gcc => "https://api-gcc.security.microsoft.us/.default",
            CloudPreset::GccHigh | CloudPreset::Dod => {
                "https://api-gov.security.microsoft.us/.default"
            }
        }
    }
}

impl std::fmt::Display for CloudPreset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// `cloud = ...`: the preset whose hosts are the defaults below (`public` when not set).
    pub cloud: CloudPreset,
    /// Base URL of Entra ID, without a trailing slash, e.g. `https://login.microsoftonline.com`.
    pub authority: String,
    /// The default API's base URL (scheme + authority, no path), e.g. `https://api.security.microsoft.com`.
    pub api: http::Uri,
    /// OAuth scope of the default API, e.g. `https://api.security.microsoft.com/.default`.
    pub scope: String,
    pub token_endpoint: TokenEndpointVersion,
    /// Extra PEM trust roots (corporate TLS inspection), added to the webpki roots.
    pub ca: Option<PathBuf>,
}

impl CloudConfig {
    /// The token endpoint URL for a tenant, as the assertion's `aud` must name it.
    pub fn token_url(&self, tenant_id: &str) -> String {
        match self.token_endpoint {
            TokenEndpointVersion::V2 => {
                format!("{}/{}/oauth2/v2.0/token", self.authority, tenant_id)
            }
            TokenEndpointVersion::V1 => format!("{}/{}/oauth2/token", self.authority, tenant_id),
        }
    }

    /// The admin-consent link a customer's admin opens to consent to the app.
    pub fn consent_url(&self, tenant_id: &str, client_id: &str) -> String {
        format!(
            "{}/{}/adminconsent?client_id={}",
            self.authority, tenant_id, client_id
        )
    }

    /// The admin-consent link for a tenant not known yet (consent onboarding): any
    /// organisation's admin may open it, and Entra ID sends the browser to `redirect_uri` with
    /// the consenting tenant and `state`. `/.default` consents to every permission the app
    /// registration lists: application permissions can only be granted that way.
    pub fn onboarding_consent_url(
        &self,
        client_id: &str,
        redirect_uri: &str,
        state: &str,
    ) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", client_id)
            .append_pair("scope", &self.scope)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .finish();
        format!("{}/organizations/v2.0/adminconsent?{query}", self.authority)
    }
}
