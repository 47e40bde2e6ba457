//! `[advanced_hunting]`: `via`, `graph_api` (which must name an `[[api]]` unless `via` is
//! `legacy`) and `quota_retry_after`.

use super::Validator;

/// Whether `via = "graph" | "auto"` can be served. Until the translation is wired into the hot
/// path, a config asking for it is refused rather than silently forwarded to the legacy APIs.
const TRANSLATION_AVAILABLE: bool = false;
use crate::config::raw::RawHunting;
use crate::config::{ApiConfig, HuntingConfig, HuntingVia};

impl Validator<'_> {
    pub(super) fn hunting(&mut self, raw: Option<RawHunting>, apis: &[ApiConfig]) -> HuntingConfig {
        let defaults = HuntingConfig::default();
        let Some(raw) = raw else {
            return defaults;
        };
        let via = match raw.via.as_deref() {
            None | Some("legacy") => HuntingVia::Legacy,
            Some("graph") => HuntingVia::Graph,
            Some("auto") => HuntingVia::Auto,
            Some(other) => {
                self.problem(
                    "advanced_hunting.via",
                    format!("`{other}` is none of \"legacy\", \"graph\", \"auto\""),
                );
                HuntingVia::Legacy
            }
        };
        if via != HuntingVia::Legacy && !TRANSLATION_AVAILABLE {
            self.problem(
                "advanced_hunting.via",
                "only \"legacy\" is available in this version: the Graph translation of the \
                 hunting routes is being built (issue 13); legacy hunting is forwarded as before",
            );
        }
        let graph_api = raw.graph_api.unwrap_or(defaults.graph_api);
        if via != HuntingVia::Legacy && !apis.iter().any(|a| a.name == graph_api) {
            let names: Vec<&str> = apis.iter().map(|a| a.name.as_str()).collect();
            self.problem(
                "advanced_hunting.graph_api",
                format!(
                    "no [[api]] is named `{graph_api}` (the Microsoft Graph entry hunting goes \
                     through); configured: {names:?}"
                ),
            );
        }
        let quota_retry_after = self
            .duration(
                "advanced_hunting.quota_retry_after",
                raw.quota_retry_after,
                defaults.quota_retry_after,
            )
            .unwrap_or(defaults.quota_retry_after);
        HuntingConfig {
            via,
            graph_api,
            quota_retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{parse_str, HuntingVia};

    const BASE: &str = r#"
[app]
client_id = "11111111-2222-3333-4444-555555555555"
client_secret = { env = "SECRET" }

[[tenant]]
name = "contoso"
id = "22222222-2222-3333-4444-555555555555"
"#;
    const GRAPH: &str =
        "[[api]]\nname = \"graph\"\nprefix = \"/graph\"\nurl = \"https://graph.microsoft.com\"\n";

    fn parse(extra: &str) -> Result<crate::config::Config, crate::config::ConfigErrors> {
        parse_str(
            &format!("{BASE}\n{extra}"),
            Path::new("proxy.toml"),
            &|_| Some("s3cret".into()),
        )
    }

    #[test]
    fn legacy_by_default_and_read_when_written() {
        let hunting = parse("").unwrap().hunting;
        assert_eq!(hunting.via, HuntingVia::Legacy);
        assert_eq!(hunting.graph_api, "graph");
        assert_eq!(hunting.quota_retry_after, Duration::from_secs(15 * 60));
        let hunting = parse(&format!(
            "[advanced_hunting]\nvia = \"legacy\"\nquota_retry_after = \"5m\"\n{GRAPH}"
        ))
        .unwrap()
        .hunting;
        assert_eq!(hunting.via, HuntingVia::Legacy);
        assert_eq!(hunting.quota_retry_after, Duration::from_secs(300));
        // Not silently forwarded: refused until the translation is available.
        for via in ["graph", "auto"] {
            let errors =
                parse(&format!("[advanced_hunting]\nvia = \"{via}\"\n{GRAPH}")).unwrap_err();
            let p = errors
                .problems
                .iter()
                .find(|p| p.key == "advanced_hunting.via")
                .unwrap();
            assert!(p.message.contains("only \"legacy\""), "{}", p.message);
        }
    }

    #[test]
    fn a_missing_graph_api_is_named_unless_legacy() {
        let errors = parse("[advanced_hunting]\nvia = \"graph\"").unwrap_err();
        let p = errors
            .problems
            .iter()
            .find(|p| p.key == "advanced_hunting.graph_api")
            .unwrap();
        assert!(p.message.contains("`graph`"), "{}", p.message);
        assert!(parse("[advanced_hunting]\nvia = \"legacy\"\ngraph_api = \"nope\"").is_ok());
        let named = format!(
            "[advanced_hunting]\nvia = \"graph\"\ngraph_api = \"msgraph\"\n{}",
            GRAPH.replace("\"graph\"", "\"msgraph\"")
        );
        let errors = parse(&named).unwrap_err();
        assert!(!errors
            .problems
            .iter()
            .any(|p| p.key == "advanced_hunting.graph_api"));
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let errors = parse(&format!(
            "[advanced_hunting]\nvia = \"sometimes\"\nquota_retry_after = \"0s\"\n{GRAPH}"
        ))
        .unwrap_err();
        let keys: Vec<(&str, Option<usize>)> = errors
            .problems
            .iter()
            .map(|p| (p.key.as_str(), p.line))
            .collect();
        for key in ["advanced_hunting.via", "advanced_hunting.quota_retry_after"] {
            assert!(
                keys.iter().any(|(k, line)| *k == key && line.is_some()),
                "{key}: {keys:?}"
            );
        }
        let errors = parse("[advanced_hunting]\nnope = 1").unwrap_err();
        assert!(errors
            .problems
            .iter()
            .any(|p| p.key == "advanced_hunting.nope" && p.line.is_some()));
    }
}
