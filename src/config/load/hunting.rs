//! `[advanced_hunting]`: `via`, `graph_api` (which must name an `[[api]]` unless `via` is
//! `legacy`) and `quota_retry_after`.

use super::Validator;
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
    use std::time::Duration;

    use crate::config::load::tests::{ok, problems, with};
    use crate::config::HuntingVia;

    const GRAPH: &str =
        "[[api]]\nname = \"graph\"\nprefix = \"/graph\"\nurl = \"https://graph.microsoft.com\"\n";

    /// The problems of `[advanced_hunting]` + `body` (+ `extra`), as (key, has a line).
    fn keys(body: &str, extra: &str) -> Vec<(String, bool)> {
        problems(&with(&format!("[advanced_hunting]\n{body}\n{extra}")))
            .into_iter()
            .map(|p| (p.key, p.line.is_some()))
            .collect()
    }

    #[test]
    fn legacy_by_default_and_read_when_written() {
        let hunting = ok(&with("")).hunting;
        assert_eq!(hunting.via, HuntingVia::Legacy);
        assert_eq!(hunting.graph_api, "graph");
        assert_eq!(hunting.quota_retry_after, Duration::from_secs(15 * 60));
        let hunting = ok(&with(&format!(
            "[advanced_hunting]\nvia = \"legacy\"\nquota_retry_after = \"5m\"\n{GRAPH}"
        )))
        .hunting;
        assert_eq!(hunting.via, HuntingVia::Legacy);
        assert_eq!(hunting.quota_retry_after, Duration::from_secs(300));
    }

    #[test]
    fn graph_and_auto_are_taken_with_a_graph_api() {
        for (text, via) in [("graph", HuntingVia::Graph), ("auto", HuntingVia::Auto)] {
            let config = ok(&with(&format!(
                "[advanced_hunting]\nvia = \"{text}\"\n{GRAPH}"
            )));
            assert_eq!(config.hunting.via, via);
        }
    }

    #[test]
    fn a_missing_graph_api_is_named_unless_legacy() {
        let problems = problems(&with("[advanced_hunting]\nvia = \"graph\""));
        let p = problems
            .iter()
            .find(|p| p.key == "advanced_hunting.graph_api")
            .expect("graph_api named");
        assert!(p.message.contains("`graph`"), "{}", p.message);
        ok(&with(
            "[advanced_hunting]\nvia = \"legacy\"\ngraph_api = \"nope\"",
        ));
        let renamed = GRAPH.replace("\"graph\"", "\"msgraph\"");
        let config = ok(&with(&format!(
            "[advanced_hunting]\nvia = \"graph\"\ngraph_api = \"msgraph\"\n{renamed}"
        )));
        assert_eq!(config.hunting.graph_api, "msgraph");
    }

    #[test]
    fn through_graph_hunting_gets_graphs_own_class_unless_one_is_written() {
        let path = "/graph/v1.0/security/runHuntingQuery";
        let class = |text: &str| {
            ok(&with(text))
                .rate_limit
                .routes
                .into_iter()
                .filter(|r| r.path_prefix.eq_ignore_ascii_case(path))
                .map(|r| r.windows.per_minute.map(|n| n.get()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            class(&format!("[advanced_hunting]\nvia = \"graph\"\n{GRAPH}")),
            [Some(45)]
        );
        assert_eq!(
            class(&format!("[advanced_hunting]\nvia = \"auto\"\n{GRAPH}")),
            [Some(45)]
        );
        assert_eq!(
            class(&format!("[advanced_hunting]\nvia = \"legacy\"\n{GRAPH}")),
            []
        );
        let written = format!(
            "[advanced_hunting]\nvia = \"graph\"\n[[rate_limit.route]]\npath_prefix = \"{path}\"\nper_minute = 30\n{GRAPH}"
        );
        assert_eq!(class(&written), [Some(30)]);
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let found = keys("via = \"sometimes\"\nquota_retry_after = \"0s\"", GRAPH);
        for key in ["advanced_hunting.via", "advanced_hunting.quota_retry_after"] {
            assert!(found.contains(&(key.to_owned(), true)), "{key}: {found:?}");
        }
        assert!(keys("nope = 1", "").contains(&("advanced_hunting.nope".to_owned(), true)));
    }
}
