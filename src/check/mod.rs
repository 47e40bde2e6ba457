//! `defender-proxy check`: for every configured tenant, one real token request, and what it says
//! about the tenant's setup.
//!
//! Per tenant: was a token issued (or which AADSTS error, what it means, and the admin-consent
//! link when consent is what's missing); does its `tid` name the tenant (the broker refuses a
//! token that doesn't, and that is reported); which application permissions (`roles`) it carries,
//! compared with what the configured API needs; and, when the config has the Graph `[[api]]`
//! that `[advanced_hunting] graph_api` names, whether Graph hunting is ready (see `hunting.rs`:
//! a second token, for Graph, requested at the same time as the first).
//!
//! Verdicts: `ok`; `WARN` when some needed permission is missing (some endpoints will answer 403,
//! others work: the operator decides, so the exit code stays 0); `FAIL` when no usable token
//! came back, or a token with no roles at all (Entra issues one when no application permission
//! was granted, and every API call would be a 403). With `via = "graph"`, a tenant whose Graph
//! hunting is not ready is at least `WARN`.
//!
//! Token requests go through [`TokenBroker::fetch_once`]: no cache, no retries, the same checks
//! as the proxy's own tokens. Tenants are checked concurrently, a few at a time, so an MSSP with
//! hundreds of tenants neither waits for each in turn nor floods Entra ID. Nothing secret is
//! reported: no token, only its claims `tid` and `roles`.

use std::fmt::Write as _;

use futures_util::stream::{self, StreamExt as _};
use serde::Serialize;
use tokio::time::Instant;

use crate::config::{Config, TenantConfig, DEFAULT_PROFILE};
use crate::token::{AccessToken, TokenBrokers, TokenError, TokenInitError};

mod failure;
mod hunting;
mod roles;

use failure::Failure;

pub use hunting::HuntingCheck;

/// Token requests in flight at once.
const CONCURRENCY: usize = 8;

/// The message for a token without any `roles` claim.
pub const NO_ROLES: &str = "the token has no roles: grant application permissions and re-consent";

/// How a tenant fared; ordered by severity (`Ok < Warn < Fail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
    /// The app its tokens are issued to and the cloud it lives in (config names, `default` for
    /// `[app]` and `[cloud]`).
    pub app: String,
    pub cloud: String,
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
    /// Graph hunting readiness, when the config has the Graph `[[api]]` hunting goes through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hunting: Option<HuntingCheck>,
}

/// Checks every tenant of `config` with a fresh token broker. Fails only when the broker cannot
/// be built (an unusable key or CA file), which is a configuration problem.
pub async fn run(config: &Config) -> Result<Vec<TenantCheck>, TokenInitError> {
    let brokers = TokenBrokers::new(config)?;
    Ok(run_with(&brokers, config).await)
}

/// Checks every tenant of `config` through its app's and cloud's broker of `brokers`, in the
/// config's order.
pub(crate) async fn run_with(brokers: &TokenBrokers, config: &Config) -> Vec<TenantCheck> {
    stream::iter(&config.tenants)
        .map(|tenant| check_tenant(brokers, config, tenant))
        .buffered(CONCURRENCY)
        .collect()
        .await
}

/// One tenant: its token for the configured API and, when hunting's Graph `[[api]]` is
/// configured, its Graph token, both requested at once (one request when the scopes are the same).
async fn check_tenant(
    brokers: &TokenBrokers,
    config: &Config,
    tenant: &TenantConfig,
) -> TenantCheck {
    let (app_name, app) = config.app_of(tenant);
    let (cloud_name, cloud) = config.cloud_of(tenant);
    let Some(broker) = brokers.of(app_name, cloud_name) else {
        // Never: the brokers were made from this config.
        let never = TokenError::Internal {
            tenant_id: tenant.id.clone(),
        };
        return judge_token(tenant, &cloud.scope, Err(never), String::new());
    };
    let scope = cloud.scope.as_str();
    let graph_scope = hunting::graph_scope(config, cloud_name);
    let graph_token = async {
        match graph_scope.filter(|graph| *graph != scope) {
            Some(graph) => Some(broker.fetch_once(&tenant.id, graph).await),
            None => None,
        }
    };
    let (token, graph_token) = tokio::join!(broker.fetch_once(&tenant.id, scope), graph_token);
    let consent_url = cloud.consent_url(&tenant.id, &app.client_id);
    let hunting = graph_scope.map(|_| {
        // The same scope: the main token is the Graph token.
        let graph = graph_token.as_ref().unwrap_or(&token);
        hunting::judge(config.hunting.via, graph, &tenant.id, &consent_url)
    });
    let mut check = judge_token(tenant, scope, token, consent_url);
    check.verdict = hunting::with_hunting(check.verdict, hunting.as_ref());
    check.hunting = hunting;
    check
}

/// The verdict on the tenant's token for `scope` (or on why there is none).
fn judge_token(
    tenant: &TenantConfig,
    scope: &str,
    token: Result<AccessToken, TokenError>,
    consent_url: String,
) -> TenantCheck {
    let mut check = TenantCheck {
        name: tenant.name.clone(),
        tenant_id: tenant.id.clone(),
        app: tenant
            .app
            .clone()
            .unwrap_or_else(|| DEFAULT_PROFILE.to_owned()),
        cloud: tenant
            .cloud
            .clone()
            .unwrap_or_else(|| DEFAULT_PROFILE.to_owned()),
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
        hunting: None,
    };
    let token = match token {
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
    check.missing_roles = roles::missing_roles(scope, &check.roles);
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

/// Fill in why no token came back (see [`Failure::of`]).
fn describe_failure(check: &mut TenantCheck, error: &TokenError) {
    let failure = Failure::of(error, &check.tenant_id);
    check.tid_ok = failure.tid_ok;
    check.tid = failure.tid;
    check.aadsts = failure.aadsts;
    check.meaning = failure.meaning;
    check.problem = failure.problem;
    check.consent_url = failure.consent_url;
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
///   hunting via auto: not ready: no Graph token: AADSTS700016: ...; consent: https://...
/// ```
///
/// A tenant with a hunting check (see [`hunting`]) has its line under the tenant's, indented.
pub fn render_text(checks: &[TenantCheck]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let mut line = format!("{:<width$}  {:<4}  ", c.name, c.verdict.label());
        // A tenant on its own app or cloud says which (the others are on [app] and [cloud]).
        if c.app != DEFAULT_PROFILE || c.cloud != DEFAULT_PROFILE {
            let _ = write!(line, "app {}, cloud {}  ", c.app, c.cloud);
        }
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
        if let Some(hunting) = &c.hunting {
            out.push_str(&hunting::render_line(hunting));
            out.push('\n');
        }
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
    use crate::config::HuntingVia;
    use crate::token::ErrorClass;

    fn base(name: &str) -> TenantCheck {
        TenantCheck {
            name: name.into(),
            tenant_id: "2222".into(),
            app: DEFAULT_PROFILE.into(),
            cloud: DEFAULT_PROFILE.into(),
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
            hunting: None,
        }
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
        let own = TenantCheck {
            app: "agency-app".into(),
            cloud: "gov".into(),
            ..base("agency")
        };
        assert_eq!(
            render_text(&[own]),
            "agency  ok    app agency-app, cloud gov  tid ok  roles: Incident.Read.All, AdvancedHunting.Read.All\n"
        );
    }

    #[test]
    fn a_hunting_check_adds_one_indented_line_and_a_json_object() {
        let ready = HuntingCheck {
            via: HuntingVia::Graph,
            ready: true,
            graph_token: true,
            role: true,
            problem: String::new(),
            consent_url: None,
        };
        let unready = HuntingCheck {
            via: HuntingVia::Auto,
            ready: false,
            role: false,
            problem: "the Graph token lacks ThreatHunting.Read.All: stays on the legacy API \
                      until consented"
                .into(),
            consent_url: Some("https://login/2222/adminconsent?client_id=1".into()),
            ..ready.clone()
        };
        let contoso = TenantCheck {
            hunting: Some(ready),
            ..base("contoso")
        };
        let acme = TenantCheck {
            hunting: Some(unready),
            ..base("acme")
        };
        let acme_json = acme.clone();
        let text = render_text(&[contoso, base("fabrikam"), acme]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "contoso   ok    tid ok  roles: Incident.Read.All, AdvancedHunting.Read.All",
                "  hunting via graph: ready",
                "fabrikam  ok    tid ok  roles: Incident.Read.All, AdvancedHunting.Read.All",
                "acme      ok    tid ok  roles: Incident.Read.All, AdvancedHunting.Read.All",
                "  hunting via auto: not ready: the Graph token lacks ThreatHunting.Read.All: \
                 stays on the legacy API until consented; \
                 consent: https://login/2222/adminconsent?client_id=1",
            ]
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_json(&[base("none"), acme_json])).unwrap();
        assert!(json["tenants"][0].get("hunting").is_none(), "{json:#}");
        let hunting = &json["tenants"][1]["hunting"];
        assert_eq!(
            (&hunting["via"], &hunting["ready"], &hunting["graph_token"]),
            (&"auto".into(), &false.into(), &true.into())
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
