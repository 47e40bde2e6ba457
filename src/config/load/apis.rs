//! `[[api]]`: APIs besides `[cloud]`'s, each with its own prefix, URL, scope and limits.
//!
//! An API's limits become a route class keyed by its prefix, added after the
//! `[[rate_limit.route]]`s, so the limiter treats it like any other class. The default windows
//! come from the URL's host: a known API's documented limits ([`KnownApi`]), otherwise
//! `[rate_limit]`'s. `per_minute`, `per_hour` and `burst` in the `[[api]]` replace them one by
//! one. A `[[rate_limit.route]]` with exactly the API's prefix wins over the implicit class.

use http::Uri;

use super::api_clouds::CloudUse;
use super::ratelimit::{path_prefix_problem, GlobalLimits};
use super::Validator;
use crate::config::api::default_scope;
use crate::config::raw::{RawApi, RawTenant};
use crate::config::{ApiConfig, KnownApi, RouteLimit, Windows};

/// What an API's prefix is checked against: the prefixes of the APIs before it.
struct SeenPrefix {
    lower: String,
    written: String,
    index: usize,
}

impl Validator<'_> {
    /// The `[[api]]`s; each valid one's implicit route class is appended to `routes` (the
    /// `[[rate_limit.route]]`s, in file order), and its endpoint in every cloud profile a tenant
    /// uses is filled in (see [`Self::api_clouds`]).
    pub(super) fn apis(
        &mut self,
        raw: Vec<RawApi>,
        tenants: &[RawTenant],
        clouds: &CloudUse,
        global: &GlobalLimits,
        routes: &mut Vec<RouteLimit>,
    ) -> Vec<ApiConfig> {
        let mut names: Vec<(String, usize)> = Vec::new();
        let mut prefixes: Vec<SeenPrefix> = Vec::new();
        let mut implicit = Vec::new();
        let mut apis = Vec::new();
        for (i, api) in raw.into_iter().enumerate() {
            let at = format!("api[{i}]");
            let key = |name: &str| format!("{at}.{name}");
            let RawApi {
                name,
                prefix,
                url,
                scope,
                per_minute,
                per_hour,
                burst,
                clouds: raw_clouds,
            } = api;

            let name = self.api_name(&key("name"), name, &names);
            if let Some(name) = &name {
                names.push((name.clone(), i));
            }
            let prefix = self.api_prefix(&key("prefix"), prefix, &prefixes, tenants);
            if let Some(prefix) = &prefix {
                prefixes.push(SeenPrefix {
                    lower: prefix.to_ascii_lowercase(),
                    written: prefix.clone(),
                    index: i,
                });
            }
            let (url, scope) = self.url_and_scope(
                &at,
                url,
                scope,
                "is required: the API's base URL, like \
                 \"https://api.securitycenter.microsoft.com\"",
            );
            let known = url
                .as_ref()
                .and_then(|u| u.host())
                .and_then(KnownApi::of_host);
            let written = Written {
                per_minute,
                per_hour,
                burst,
            };
            let windows = self.api_windows(&at, known, global, written);
            if let Some(prefix) = &prefix {
                implicit.extend(self.api_route(&at, prefix, windows, written, routes));
            }
            let endpoint = url.as_ref().zip(scope.as_deref());
            let in_clouds = self.api_clouds(&at, raw_clouds, endpoint, clouds);
            if let (Some(name), Some(prefix), Some(url), Some(scope)) = (name, prefix, url, scope) {
                apis.push(ApiConfig {
                    name,
                    prefix,
                    url,
                    scope,
                    clouds: in_clouds,
                });
            }
        }
        routes.extend(implicit);
        apis
    }

    /// An API's (or an API's in a cloud profile) `url` and `scope`, whose keys are under `at`;
    /// `required` is the message of a missing `url`. The scope defaults to the URL's.
    pub(super) fn url_and_scope(
        &mut self,
        at: &str,
        url: Option<String>,
        scope: Option<String>,
        required: &str,
    ) -> (Option<Uri>, Option<String>) {
        let (url_key, scope_key) = (format!("{at}.url"), format!("{at}.scope"));
        let url = match url {
            None => {
                self.problem(&url_key, required);
                None
            }
            Some(url) => self.base_url(&url_key, &url),
        };
        let scope = match scope {
            Some(scope) if scope.trim().is_empty() => {
                self.problem(&scope_key, "must not be empty");
                None
            }
            Some(scope) => Some(scope.trim().to_owned()),
            None => url
                .as_ref()
                .and_then(|url| Some(default_scope(url.scheme_str()?, url.authority()?))),
        };
        (url, scope)
    }

    /// The implicit route class of the API at `at` with `prefix`, unless a
    /// `[[rate_limit.route]]` of `routes` has that very prefix (then a warning if the API wrote
    /// limits of its own, which that route overrides).
    fn api_route(
        &mut self,
        at: &str,
        prefix: &str,
        windows: Windows,
        written: Written,
        routes: &[RouteLimit],
    ) -> Option<RouteLimit> {
        let own = routes
            .iter()
            .position(|r| r.path_prefix.eq_ignore_ascii_case(prefix));
        match own {
            Some(r) if written.any() => self.warnings.push(format!(
                "{at}: its per_minute, per_hour and burst are not used: \
                 rate_limit.route[{r}] has the same path_prefix `{prefix}` and sets the \
                 limits of that class"
            )),
            Some(_) => {}
            None => {
                return Some(RouteLimit {
                    path_prefix: prefix.to_owned(),
                    windows,
                })
            }
        }
        None
    }

    fn api_name(
        &mut self,
        key: &str,
        name: Option<String>,
        seen: &[(String, usize)],
    ) -> Option<String> {
        let Some(name) = name else {
            self.problem(key, "is required: a short name like \"mde\" or \"graph\"");
            return None;
        };
        let problem = if name.is_empty() {
            Some("must not be empty".to_owned())
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            Some(format!(
                "`{name}` may contain only lower-case letters, digits and '-'"
            ))
        } else if name == "default" {
            Some("`default` is the name of [cloud]'s API: choose another".to_owned())
        } else {
            seen.iter()
                .find(|(other, _)| *other == name)
                .map(|(_, j)| format!("`{name}` is already the name of api[{j}]"))
        };
        match problem {
            Some(message) => {
                self.problem(key, message);
                None
            }
            None => Some(name),
        }
    }

    /// A prefix of whole segments that no other API's prefix contains or lies in, that takes no
    /// path of `[cloud]`'s API, and that cannot be read as a tenant.
    fn api_prefix(
        &mut self,
        key: &str,
        prefix: Option<String>,
        seen: &[SeenPrefix],
        tenants: &[RawTenant],
    ) -> Option<String> {
        let Some(prefix) = prefix else {
            self.problem(
                key,
                "is required: the path prefix that picks this API, like \"/mde\"",
            );
            return None;
        };
        let lower = prefix.to_ascii_lowercase();
        let first = lower.split('/').nth(1).unwrap_or_default();
        let problem = path_prefix_problem(
            &prefix,
            "`/` would take every path of [cloud]'s API: give this API a prefix of its own, \
             like \"/mde\"",
        )
        .or_else(|| {
            (first == "api").then(|| {
                format!(
                    "`{prefix}` would take paths of [cloud]'s API, which start with /api: give \
                     this API a prefix of its own, like \"/mde\""
                )
            })
        })
        .or_else(|| {
            // With `default_tenant`, `/contoso/...` would be both this API and tenant contoso.
            let tenant = tenants.iter().find(|t| {
                t.name.as_deref() == Some(first)
                    || t.id
                        .as_deref()
                        .is_some_and(|id| id.eq_ignore_ascii_case(first))
            })?;
            let tenant = tenant.name.as_deref().unwrap_or(first);
            Some(format!(
                "`{prefix}` starts with the tenant `{tenant}`: a path /{first}/... would name \
                 both that tenant and this API"
            ))
        })
        .or_else(|| {
            seen.iter().find_map(|other| {
                if other.lower == lower {
                    Some(format!(
                        "`{prefix}` is already the prefix of api[{}] (prefixes are compared \
                         ignoring case)",
                        other.index
                    ))
                } else if lower.starts_with(&format!("{}/", other.lower)) {
                    Some(format!(
                        "`{prefix}` lies under `{}`, the prefix of api[{}]: its paths would \
                         belong to both APIs",
                        other.written, other.index
                    ))
                } else if other.lower.starts_with(&format!("{lower}/")) {
                    Some(format!(
                        "`{prefix}` contains `{}`, the prefix of api[{}]: those paths would \
                         belong to both APIs",
                        other.written, other.index
                    ))
                } else {
                    None
                }
            })
        });
        match problem {
            Some(message) => {
                self.problem(key, message);
                None
            }
            None => Some(prefix),
        }
    }

    /// The API's windows: `known`'s documented limits or `[rate_limit]`'s, with the keys the
    /// `[[api]]` wrote laid over them.
    fn api_windows(
        &mut self,
        at: &str,
        known: Option<KnownApi>,
        global: &GlobalLimits,
        written: Written,
    ) -> Windows {
        let key = |name: &str| format!("{at}.{name}");
        let (mut windows, from) = match known {
            Some(api @ KnownApi::DefenderForEndpoint) => {
                (api.windows(), "Defender for Endpoint's default")
            }
            Some(api @ KnownApi::GraphSecurity) => (api.windows(), "Graph's default"),
            None => (global.policy.windows, "from [rate_limit]"),
        };
        let before = self.problems.len();
        if let Some(w) = written
            .per_minute
            .and_then(|v| self.window(&key("per_minute"), v))
        {
            windows.per_minute = w;
        }
        if let Some(w) = written
            .per_hour
            .and_then(|v| self.window(&key("per_hour"), v))
        {
            windows.per_hour = w;
        }
        if let Some(b) = written.burst.and_then(|v| self.burst(&key("burst"), v)) {
            windows.burst = Some(b);
        }
        // A conflict made only of inherited values was reported on `[rate_limit]`.
        let inherited_ok = known.is_some() || global.valid;
        if self.problems.len() == before && inherited_ok {
            if let (Some(burst), Some(per_minute)) = (windows.burst, windows.per_minute) {
                if burst > per_minute {
                    if written.burst.is_some() {
                        let from = if written.per_minute.is_some() {
                            String::new()
                        } else {
                            format!(", {from}")
                        };
                        self.problem(
                            &key("burst"),
                            format!("{burst} is more than per_minute ({per_minute}{from})"),
                        );
                    } else if written.per_minute.is_some() {
                        self.problem(
                            &key("per_minute"),
                            format!("{per_minute} is less than burst ({burst}, from [rate_limit])"),
                        );
                    }
                }
            }
        }
        windows
    }
}

/// The limit keys an `[[api]]` wrote.
#[derive(Clone, Copy)]
struct Written {
    per_minute: Option<i64>,
    per_hour: Option<i64>,
    burst: Option<i64>,
}

impl Written {
    fn any(self) -> bool {
        self.per_minute.is_some() || self.per_hour.is_some() || self.burst.is_some()
    }
}
