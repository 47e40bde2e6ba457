//! `defender-proxy check`: for every configured tenant, one real token request, and what it says
//! about the tenant's setup.
//!
//! Per tenant: was a token issued (or which AADSTS error, what it means, and the admin-consent
//! link when consent is what's missing); does its `tid` name the tenant (the broker refuses a
//! token that doesn't, and that is reported); which application permissions (`roles`) it carries,
//! compared with what the configured API needs.
//!
//! Verdicts: `ok`; `WARN` when some needed permission is missing (some endpoints will answer 403,
//! others work: the operator decides, so the exit code stays 0); `FAIL` when no usable token
//! came back, or a token with no roles at all (Entra issues one when no application permission
//! was granted, and every API call would be a 403).
//!
//! Token requests go through [`TokenBroker::fetch_once`]: no cache, no retries, the same checks
//! as the proxy's own tokens. Tenants are checked concurrently, a few at a time, so an MSSP with
//! hundreds of tenants neither waits for each in turn nor floods Entra ID. Nothing secret is
//! reported: no token, only its claims `tid` and `roles`.

use std::error::Error as _;

use futures_util::stream::{self, StreamExt as _};
use serde::Serialize;
use tokio::time::Instant;

use crate::config::{Config, TenantConfig};
use crate::token::{aadsts_meaning, ErrorClass, TokenBroker, TokenError, TokenInitError};

/// Token requests in flight at once.
const CONCURRENCY: usize = 8;

/// The message for a token without any `roles` claim.
pub const NO_ROLES: &str = "the token has no roles: grant application permissions and re-consent";

/// How a tenant fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// A token with the tenant's `tid` and every role the API needs.
    Ok,
    /// A usable token that lacks some role the API needs: some calls will be refused.
    Warn,
    /// No usable token, or one without any role.
    Fail,
}

impl Verdict {
    /// As printed in the text report: failures stand out.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// The result for one tenant; serialised as is by `check --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantCheck {
    /// The tenant's configured name.
    pub name: String,
    /// The tenant's configured id.
    pub tenant_id: String,
    pub verdict: Verdict,
    /// Whether a token came back whose `tid` is the tenant's id; `None` when no token was issued.
    pub tid_ok: Option<bool>,
    /// The `tid` the token named instead, when it did not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// The token's application permissions (`roles` claim), as issued.
    pub roles: Vec<String>,
    /// Permissions the API needs that the token lacks; alternatives are joined by ` or `.
    pub missing_roles: Vec<String>,
    /// The token's remaining lifetime in seconds, when one was issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
    /// The most specific AADSTS code of a failed token request.
    pub aadsts: Option<u32>,
    /// What that code means, when known.
    pub meaning: Option<String>,
    /// The tenant's admin-consent link, when consent is missing (also with no roles: granting
    /// permissions takes a new consent).
    pub consent_url: Option<String>,
    /// One line on what is wrong (empty for `ok`).
    pub problem: String,
}

/// The permissions an API needs: each entry is satisfied by any one of its roles.
type RoleNeeds = &'static [&'static [&'static str]];

/// Defender XDR (`api.security.microsoft.com` and its gov twins): incidents and advanced hunting.
const XDR_ROLES: RoleNeeds = &[
    &["Incident.Read.All", "Incident.ReadWrite.All"],
    &["AdvancedHunting.Read.All"],
];
/// Defender for Endpoint (`api.securitycenter.microsoft.com`): machines, alerts, advanced queries.
const MDE_ROLES: RoleNeeds = &[
    &["Machine.Read.All", "Machine.ReadWrite.All"],
    &["Alert.Read.All", "Alert.ReadWrite.All"],
    &["AdvancedQuery.Read.All"],
];
/// Microsoft Graph security: incidents and hunting.
const GRAPH_ROLES: RoleNeeds = &[
    &[
        "SecurityIncident.Read.All",
        "SecurityIncident.ReadWrite.All",
    ],
    &["ThreatHunting.Read.All"],
];

/// What the API behind `scope` needs, told by the resource's host (gov clouds included).
fn role_needs(scope: &str) -> RoleNeeds {
    let resource = scope.trim_start_matches("https://").to_ascii_lowercase();
    let host = resource.split('/').next().unwrap_or_default();
    if host.contains(".securitycenter.") {
        MDE_ROLES
    } else if host.contains("graph.microsoft") {
        GRAPH_ROLES
    } else {
        XDR_ROLES
    }
}

/// Checks every tenant of `config` with a fresh token broker. Fails only when the broker cannot
/// be built (an unusable key or CA file), which is a configuration problem.
pub async fn run(config: &Config) -> Result<Vec<TenantCheck>, TokenInitError> {
    let broker = TokenBroker::new(&config.app, &config.cloud, &config.upstream)?;
    Ok(run_with(&broker, config).await)
}

/// Checks every tenant of `config` through `broker`, in the config's order.
pub async fn run_with(broker: &TokenBroker, config: &Config) -> Vec<TenantCheck> {
    stream::iter(&config.tenants)
        .map(|tenant| check_tenant(broker, config, tenant))
        .buffered(CONCURRENCY)
        .collect()
        .await
}

async fn check_tenant(broker: &TokenBroker, config: &Config, tenant: &TenantConfig) -> TenantCheck {
    let mut check = TenantCheck {
        name: tenant.name.clone(),
        tenant_id: tenant.id.clone(),
        verdict: Verdict::Fail,
        tid_ok: None,
        tid: None,
        roles: Vec::new(),
        missing_roles: Vec::new(),
        expires_in_secs: None,
        aadsts: None,
        meaning: None,
        consent_url: None,
        problem: String::new(),
    };
    let consent_url = config.cloud.consent_url(&tenant.id, &config.app.client_id);
    let token = match broker.fetch_once(&tenant.id, &config.cloud.scope).await {
        Ok(token) => token,
        Err(error) => {
            describe_failure(&mut check, &error);
            return check;
        }
    };
    check.tid_ok = Some(true);
    check.roles = token.roles().to_vec();
    check.expires_in_secs = Some(
        token
            .expires_at()
            .saturating_duration_since(Instant::now())
            .as_secs(),
    );
    check.missing_roles = role_needs(&config.cloud.scope)
        .iter()
        .filter(|any_of| !any_of.iter().any(|r| check.roles.iter().any(|g| g == r)))
        .map(|any_of| any_of.join(" or "))
        .collect();
    if check.roles.is_empty() {
        check.problem = NO_ROLES.to_owned();
        check.consent_url = Some(consent_url);
    } else if check.missing_roles.is_empty() {
        check.verdict = Verdict::Ok;
    } else {
        check.verdict = Verdict::Warn;
        check.problem = format!(
            "missing: {} (calls that need it answer 403; grant it and re-consent)",
            check.missing_roles.join(", ")
        );
        check.consent_url = Some(consent_url);
    }
    check
}

/// Fill in why no token came back: the AADSTS code and its meaning, the consent link for
/// consent errors, a `tid` mismatch, or the error's own (secret-free) description and causes.
fn describe_failure(check: &mut TenantCheck, error: &TokenError) {
    match error {
        TokenError::TenantMismatch { got, .. } => {
            check.tid_ok = Some(false);
            check.tid = Some(got.clone());
            check.problem = if got.is_empty() {
                "tid mismatch: the token has no tid claim; not used".to_owned()
            } else {
                format!("tid mismatch: the token names tenant {got}; not used")
            };
        }
        TokenError::Entra {
            error: oauth_error,
            codes,
            status,
            ..
        } => {
            check.aadsts = codes.first().copied();
            check.meaning = check.aadsts.and_then(aadsts_meaning).map(str::to_owned);
            check.problem = match (check.aadsts, &check.meaning) {
                (Some(code), Some(meaning)) => format!("AADSTS{code}: {meaning}"),
                (Some(code), None) => format!("AADSTS{code}: {oauth_error}"),
                (None, _) => format!("HTTP {status} from the token endpoint: {oauth_error}"),
            };
            if error.class() == ErrorClass::Transient {
                check.problem.push_str(" (temporary: try again)");
            }
            check.consent_url = error.consent_url().map(str::to_owned);
        }
        _ => {
            // The causes (connection refused, DNS, TLS) are what an operator needs here; they
            // come from the HTTP stack and hold nothing secret.
            let text = error.to_string();
            // The line already names the tenant.
            let prefix = format!("token request for tenant {} failed: ", check.tenant_id);
            let mut problem = text.strip_prefix(&prefix).unwrap_or(&text).to_owned();
            let mut source = error.source();
            while let Some(cause) = source {
                problem.push_str(": ");
                problem.push_str(&cause.to_string());
                source = cause.source();
            }
            check.problem = problem;
        }
    }
}

/// Whether every tenant passed (`ok` or `WARN`): `check`'s exit code 0.
pub fn all_passed(checks: &[TenantCheck]) -> bool {
    checks.iter().all(|c| c.verdict != Verdict::Fail)
}

/// One line per tenant, names aligned:
///
/// ```text
/// contoso   ok    tid ok  roles: Incident.Read.All, AdvancedHunting.Read.All
/// fabrikam  FAIL  AADSTS700016: the app is not consented in this tenant, ...; consent: https://...
/// ```
pub fn render_text(checks: &[TenantCheck]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let mut line = format!("{:<width$}  {:<4}  ", c.name, c.verdict.label());
        if c.tid_ok == Some(true) {
            line.push_str("tid ok  ");
            if c.roles.is_empty() {
                line.push_str(&c.problem);
            } else {
                line.push_str("roles: ");
                line.push_str(&c.roles.join(", "));
                if !c.problem.is_empty() {
                    line.push_str("; ");
                    line.push_str(&c.problem);
                }
            }
        } else {
            line.push_str(&c.problem);
        }
        if let Some(url) = &c.consent_url {
            line.push_str("; consent: ");
            line.push_str(url);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `check --json`: `{"ok": bool, "tenants": [TenantCheck, ...]}`, pretty-printed, fields in
/// declaration order (name first) for people reading it too.
pub fn render_json(checks: &[TenantCheck]) -> String {
    #[derive(Serialize)]
    struct Report<'a> {
        ok: bool,
        tenants: &'a [TenantCheck],
    }
    let report = Report {
        ok: all_passed(checks),
        tenants: checks,
    };
    // Plain strings, numbers and lists: serialising them cannot fail.
    serde_json::to_string_pretty(&report).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn base(name: &str) -> TenantCheck {
        TenantCheck {
            name: name.into(),
            tenant_id: "2222".into(),
            verdict: Verdict::Ok,
            tid_ok: Some(true),
            tid: None,
            roles: vec![
                "Incident.Read.All".into(),
                "AdvancedHunting.Read.All".into(),
            ],
            missing_roles: vec![],
            expires_in_secs: Some(3599),
            aadsts: None,
            meaning: None,
            consent_url: None,
            problem: String::new(),
        }
    }

    #[test]
    fn role_needs_follow_the_api_of_the_scope() {
        assert_eq!(
            role_needs("https://api.security.microsoft.com/.default"),
            XDR_ROLES
        );
        assert_eq!(
            role_needs("https://api-gov.security.microsoft.us/.default"),
            XDR_ROLES
        );
        assert_eq!(
            role_needs("https://api-gcc.securitycenter.microsoft.us/.default"),
            MDE_ROLES
        );
        assert_eq!(
            role_needs("https://graph.microsoft.com/.default"),
            GRAPH_ROLES
        );
    }

    #[test]
    fn text_report_has_one_aligned_line_per_tenant() {
        let ok = base("contoso");
        let fail = TenantCheck {
            verdict: Verdict::Fail,
            tid_ok: None,
            roles: vec![],
            aadsts: Some(700016),
            problem: "AADSTS700016: the app is not consented".into(),
            consent_url: Some("https://login/x/adminconsent?client_id=1".into()),
            ..base("fabrikam-long")
        };
        let warn = TenantCheck {
            verdict: Verdict::Warn,
            roles: vec!["Incident.Read.All".into()],
            missing_roles: vec!["AdvancedHunting.Read.All".into()],
            problem: "missing: AdvancedHunting.Read.All".into(),
            ..base("acme")
        };
        let text = render_text(&[ok, fail, warn]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "contoso        ok    tid ok  roles: Incident.Read.All, AdvancedHunting.Read.All",
                "fabrikam-long  FAIL  AADSTS700016: the app is not consented; consent: https://login/x/adminconsent?client_id=1",
                "acme           WARN  tid ok  roles: Incident.Read.All; missing: AdvancedHunting.Read.All",
            ]
        );
    }

    #[test]
    fn warnings_pass_failures_do_not() {
        let warn = TenantCheck {
            verdict: Verdict::Warn,
            ..base("a")
        };
        assert!(all_passed(&[base("a"), warn.clone()]));
        let fail = TenantCheck {
            verdict: Verdict::Fail,
            ..base("b")
        };
        assert!(!all_passed(&[warn, fail.clone()]));
        let json: serde_json::Value = serde_json::from_str(&render_json(&[fail])).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["tenants"][0]["verdict"], "fail");
        assert!(json["tenants"][0].get("tid").is_none());
    }

    #[test]
    fn entra_failures_carry_code_meaning_and_consent_link() {
        let mut check = base("f");
        let url = "https://login.microsoftonline.com/2222/adminconsent?client_id=1111";
        describe_failure(
            &mut check,
            &TokenError::Entra {
                tenant_id: "2222".into(),
                status: 400,
                error: "unauthorized_client".into(),
                codes: vec![700016],
                class: ErrorClass::Consent,
                consent_url: Some(url.into()),
                retry_after: None,
            },
        );
        assert_eq!(check.aadsts, Some(700016));
        assert!(check
            .problem
            .starts_with("AADSTS700016: the app is not consented"));
        assert_eq!(check.consent_url.as_deref(), Some(url));

        let mut check = base("g");
        describe_failure(
            &mut check,
            &TokenError::TenantMismatch {
                expected: "2222".into(),
                got: "3333".into(),
            },
        );
        assert_eq!(
            (check.tid_ok, check.tid.as_deref()),
            (Some(false), Some("3333"))
        );
        assert!(check.problem.contains("tid mismatch"), "{}", check.problem);
    }
}
