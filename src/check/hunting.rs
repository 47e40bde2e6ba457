//! Whether a tenant is ready for advanced hunting through Microsoft Graph (`runHuntingQuery`):
//! a Graph token was issued for it, and it carries `ThreatHunting.Read.All`.
//!
//! Checked whenever the config has the `[[api]]` that `[advanced_hunting] graph_api` names, for
//! every `via`: operators plan the migration before they switch. Only `via = "graph"` makes an
//! unready tenant a `WARN` (its hunting calls will fail); with `auto` (it stays on the legacy API
//! until consented) and `legacy` readiness is information.

use serde::{Serialize, Serializer};

use super::{Failure, Verdict};
use crate::config::{Config, HuntingVia};
use crate::token::{AccessToken, TokenError};

/// The application permission Graph's `runHuntingQuery` requires.
pub(crate) const THREAT_HUNTING_ROLE: &str = "ThreatHunting.Read.All";

/// A tenant's readiness for Graph hunting; in [`super::TenantCheck::hunting`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HuntingCheck {
    /// `[advanced_hunting] via`: `"legacy"`, `"graph"` or `"auto"`.
    #[serde(serialize_with = "serialize_via")]
    pub via: HuntingVia,
    /// A Graph token was issued and carries `ThreatHunting.Read.All`.
    pub ready: bool,
    /// A Graph token was issued (with the tenant's `tid`).
    pub graph_token: bool,
    /// That token carries `ThreatHunting.Read.All`.
    pub role: bool,
    /// What is missing and what it means for this `via` (empty when ready).
    pub problem: String,
    /// The tenant's admin-consent link, when consent is what's missing.
    pub consent_url: Option<String>,
}

/// `via` as written in the config.
pub(crate) fn via_name(via: HuntingVia) -> &'static str {
    match via {
        HuntingVia::Legacy => "legacy",
        HuntingVia::Graph => "graph",
        HuntingVia::Auto => "auto",
    }
}

fn serialize_via<S: Serializer>(via: &HuntingVia, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(via_name(*via))
}

/// The scope of the `[[api]]` hunting goes through in cloud profile `cloud`, when the config
/// has it.
pub(crate) fn graph_scope<'a>(config: &'a Config, cloud: &str) -> Option<&'a str> {
    config
        .apis
        .iter()
        .find(|api| api.name == config.hunting.graph_api)
        .and_then(|api| api.endpoint(Some(cloud)))
        .map(|(_, scope)| scope)
}

/// What not being ready means, by `via`.
fn consequence(via: HuntingVia) -> &'static str {
    match via {
        HuntingVia::Graph => "legacy hunting requests answer 403 through Graph",
        HuntingVia::Auto => "stays on the legacy API until consented",
        HuntingVia::Legacy => {
            "grant it before switching `via`; the legacy hunting APIs stop answering on 2027-02-01"
        }
    }
}

/// Judges the tenant's Graph token (or why there is none). `consent_url` is the tenant's
/// admin-consent link, given when the token lacks the role.
pub(crate) fn judge(
    via: HuntingVia,
    token: &Result<AccessToken, TokenError>,
    tenant_id: &str,
    consent_url: &str,
) -> HuntingCheck {
    let mut check = HuntingCheck {
        via,
        ready: false,
        graph_token: false,
        role: false,
        problem: String::new(),
        consent_url: None,
    };
    match token {
        Err(error) => {
            let failure = Failure::of(error, tenant_id);
            let then = match via {
                HuntingVia::Graph => "hunting requests through Graph fail",
                HuntingVia::Auto => "stays on the legacy API",
                HuntingVia::Legacy => "the legacy hunting APIs stop answering on 2027-02-01",
            };
            check.problem = format!("no Graph token: {}; {then}", failure.problem);
            check.consent_url = failure.consent_url;
        }
        Ok(token) => {
            check.graph_token = true;
            check.role = token.roles().iter().any(|r| r == THREAT_HUNTING_ROLE);
            check.ready = check.role;
            if !check.role {
                check.problem = format!(
                    "the Graph token lacks {THREAT_HUNTING_ROLE}: {}",
                    consequence(via)
                );
                check.consent_url = Some(consent_url.to_owned());
            }
        }
    }
    check
}

/// The tenant's verdict with its hunting readiness taken in: at least `WARN` when hunting goes
/// through Graph and isn't ready there; unchanged otherwise.
pub(crate) fn with_hunting(verdict: Verdict, hunting: Option<&HuntingCheck>) -> Verdict {
    match hunting {
        Some(h) if h.via == HuntingVia::Graph && !h.ready => verdict.max(Verdict::Warn),
        _ => verdict,
    }
}

/// The report's line under the tenant: `  hunting via graph: ready`, or
/// `  hunting via auto: not ready: <problem>; consent: <url>`.
pub(crate) fn render_line(h: &HuntingCheck) -> String {
    let mut line = format!("  hunting via {}: ", via_name(h.via));
    if h.ready {
        line.push_str("ready");
    } else {
        line.push_str("not ready: ");
        line.push_str(&h.problem);
    }
    if let Some(url) = &h.consent_url {
        line.push_str("; consent: ");
        line.push_str(url);
    }
    line
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::token::ErrorClass;

    const URL: &str = "https://login/2222/adminconsent?client_id=1";

    fn unready(via: HuntingVia) -> HuntingCheck {
        HuntingCheck {
            via,
            ready: false,
            graph_token: true,
            role: false,
            problem: format!(
                "the Graph token lacks {THREAT_HUNTING_ROLE}: {}",
                consequence(via)
            ),
            consent_url: Some(URL.into()),
        }
    }

    #[test]
    fn only_graph_hunting_that_is_not_ready_warns() {
        for verdict in [Verdict::Ok, Verdict::Warn, Verdict::Fail] {
            assert_eq!(with_hunting(verdict, None), verdict);
            for via in [HuntingVia::Legacy, HuntingVia::Auto] {
                assert_eq!(with_hunting(verdict, Some(&unready(via))), verdict);
            }
            let ready = HuntingCheck {
                ready: true,
                role: true,
                problem: String::new(),
                consent_url: None,
                ..unready(HuntingVia::Graph)
            };
            assert_eq!(with_hunting(verdict, Some(&ready)), verdict);
        }
        let graph = unready(HuntingVia::Graph);
        assert_eq!(with_hunting(Verdict::Ok, Some(&graph)), Verdict::Warn);
        assert_eq!(with_hunting(Verdict::Warn, Some(&graph)), Verdict::Warn);
        assert_eq!(with_hunting(Verdict::Fail, Some(&graph)), Verdict::Fail);
    }

    #[test]
    fn the_line_says_ready_or_what_is_missing_with_the_consent_link() {
        let ready = HuntingCheck {
            ready: true,
            role: true,
            problem: String::new(),
            consent_url: None,
            ..unready(HuntingVia::Graph)
        };
        assert_eq!(render_line(&ready), "  hunting via graph: ready");
        assert_eq!(
            render_line(&unready(HuntingVia::Auto)),
            format!(
                "  hunting via auto: not ready: the Graph token lacks ThreatHunting.Read.All: \
                 stays on the legacy API until consented; consent: {URL}"
            )
        );
        assert!(render_line(&unready(HuntingVia::Legacy)).contains("2027-02-01"));
        let json = serde_json::to_value(unready(HuntingVia::Graph)).unwrap();
        assert_eq!(json["via"], "graph");
        assert_eq!(json["ready"], false);
        assert_eq!(json["consent_url"], URL);
    }

    #[test]
    fn a_failed_graph_token_names_its_aadsts_code_and_consent_link() {
        let error = TokenError::Entra {
            tenant_id: "2222".into(),
            status: 400,
            error: "unauthorized_client".into(),
            codes: vec![700016],
            class: ErrorClass::Consent,
            consent_url: Some(URL.into()),
            retry_after: None,
        };
        let check = judge(HuntingVia::Graph, &Err(error), "2222", "unused");
        assert!(!check.ready && !check.graph_token && !check.role);
        assert!(
            check
                .problem
                .starts_with("no Graph token: AADSTS700016: the app is not consented"),
            "{}",
            check.problem
        );
        assert!(check
            .problem
            .ends_with("hunting requests through Graph fail"));
        assert_eq!(check.consent_url.as_deref(), Some(URL));
    }
}
