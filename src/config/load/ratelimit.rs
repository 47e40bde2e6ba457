//! `[rate_limit]`, `[[rate_limit.route]]` and each tenant's `rate_limit = { ... }`.
//!
//! Policies are layered: built-in defaults <- `[rate_limit]` <- the tenant's keys. Each layer's
//! keys are checked on their own (types, ranges, names), then the merged policy is checked as a
//! whole (`burst` within `per_minute`, a usable `max_wait` in queue mode); a conflict there is put
//! on the key this layer wrote, so a tenant is told about its own line rather than the global one.

use std::collections::HashMap;
use std::num::NonZeroU32;

use super::Validator;
use crate::config::raw::{RawLimitPolicy, RawRateLimit, RawRouteLimit};
use crate::config::{
    LimitBackend, LimitMode, LimitPolicy, OnBackendError, RateLimitConfig, RedisBackendConfig,
    RouteLimit, Windows,
};

/// The `[rate_limit]` layer as the tenants see it: its merged policy, and whether every one of
/// its keys was valid (if not, a tenant's merged policy is not checked as a whole: a conflict
/// there could be an echo of the global problem already reported).
pub(super) struct GlobalLimits {
    pub(super) policy: LimitPolicy,
    pub(super) valid: bool,
}

/// Which policy keys a layer wrote itself.
#[derive(Clone, Copy)]
struct Written {
    per_minute: bool,
    burst: bool,
    mode: bool,
    max_wait: bool,
}

impl Validator<'_> {
    /// `[rate_limit]`. Always returns a config (with fallbacks where a key was bad): the caller
    /// only uses it when no problem was found.
    pub(super) fn rate_limit(&mut self, mut raw: RawRateLimit) -> (RateLimitConfig, GlobalLimits) {
        let policy = raw.take_policy();
        let (defaults, valid) = self.layer(
            "rate_limit",
            &LimitPolicy::default(),
            "the built-in default",
            true,
            policy,
        );
        let routes = self.routes(std::mem::take(&mut raw.routes));
        let backend = self.backend(raw);
        let global = GlobalLimits {
            policy: defaults.clone(),
            valid,
        };
        (
            RateLimitConfig {
                defaults,
                routes,
                backend,
            },
            global,
        )
    }

    /// A tenant's policy: its `rate_limit` keys (at `prefix`, e.g. `tenant[0].rate_limit`) laid
    /// over `[rate_limit]`.
    pub(super) fn tenant_limits(
        &mut self,
        prefix: &str,
        global: &GlobalLimits,
        raw: Option<RawLimitPolicy>,
    ) -> LimitPolicy {
        match raw {
            None => global.policy.clone(),
            Some(raw) => {
                self.layer(prefix, &global.policy, "[rate_limit]", global.valid, raw)
                    .0
            }
        }
    }

    /// Lays `raw` over `base`; `inherited` names where `base` came from, for messages. Returns the
    /// merged policy and whether this layer (and `base`) was entirely valid.
    fn layer(
        &mut self,
        prefix: &str,
        base: &LimitPolicy,
        inherited: &str,
        base_valid: bool,
        raw: RawLimitPolicy,
    ) -> (LimitPolicy, bool) {
        let before = self.problems.len();
        let key = |name: &str| format!("{prefix}.{name}");
        let written = Written {
            per_minute: raw.per_minute.is_some(),
            burst: raw.burst.is_some(),
            mode: raw.mode.is_some(),
            max_wait: raw.max_wait.is_some(),
        };
        let mut policy = base.clone();
        if let Some(window) = raw
            .per_minute
            .and_then(|v| self.window(&key("per_minute"), v))
        {
            policy.windows.per_minute = window;
        }
        if let Some(window) = raw.per_hour.and_then(|v| self.window(&key("per_hour"), v)) {
            policy.windows.per_hour = window;
        }
        if let Some(burst) = raw.burst.and_then(|v| self.burst(&key("burst"), v)) {
            policy.windows.burst = Some(burst);
        }
        if let Some(mode) = raw.mode {
            match mode.as_str() {
                "queue" => policy.mode = LimitMode::Queue,
                "reject" => policy.mode = LimitMode::Reject,
                other => self.problem(
                    &key("mode"),
                    format!("`{other}` is neither \"queue\" nor \"reject\""),
                ),
            }
        }
        if let Some(wait) = raw.max_wait {
            match humantime::parse_duration(&wait) {
                Ok(wait) => policy.max_wait = wait,
                Err(e) => self.problem(
                    &key("max_wait"),
                    format!("`{wait}` is not a duration like \"30s\" or \"2m\": {e}"),
                ),
            }
        }
        if let Some(queue) = raw.max_queue {
            match usize::try_from(queue) {
                Ok(queue) => policy.max_queue = queue,
                Err(_) => self.problem(
                    &key("max_queue"),
                    "must not be negative (0: no request waits, as in reject mode)",
                ),
            }
        }
        let valid = base_valid && self.problems.len() == before;
        if valid {
            self.check_policy(prefix, &policy, written, inherited);
        }
        (policy, valid && self.problems.len() == before)
    }

    /// Rules across keys of a merged policy. A conflict is reported on a key this layer wrote;
    /// one made only of inherited values was reported on the layer that wrote them.
    fn check_policy(
        &mut self,
        prefix: &str,
        policy: &LimitPolicy,
        written: Written,
        inherited: &str,
    ) {
        let key = |name: &str| format!("{prefix}.{name}");
        if let (Some(burst), Some(per_minute)) = (policy.windows.burst, policy.windows.per_minute) {
            if burst > per_minute {
                if written.burst {
                    let from = if written.per_minute {
                        String::new()
                    } else {
                        format!(", from {inherited}")
                    };
                    self.problem(
                        &key("burst"),
                        format!("{burst} is more than per_minute ({per_minute}{from})"),
                    );
                } else if written.per_minute {
                    self.problem(
                        &key("per_minute"),
                        format!("{per_minute} is less than burst ({burst}, from {inherited})"),
                    );
                }
            }
        }
        if policy.mode == LimitMode::Queue && policy.max_wait.is_zero() {
            if written.max_wait {
                let mode = if written.mode {
                    String::new()
                } else {
                    format!(" (the mode from {inherited})")
                };
                self.problem(
                    &key("max_wait"),
                    format!(
                        "must be greater than zero in queue mode{mode}; use mode = \"reject\" to \
                         answer 429 at once"
                    ),
                );
            } else if written.mode {
                self.problem(
                    &key("mode"),
                    format!(
                        "queue mode needs a max_wait greater than zero, and max_wait is 0s \
                         (from {inherited})"
                    ),
                );
            }
        }
    }

    /// A window's limit: `0` is no limit.
    pub(super) fn window(&mut self, key: &str, value: i64) -> Option<Option<NonZeroU32>> {
        match u32::try_from(value) {
            Ok(limit) => Some(NonZeroU32::new(limit)),
            Err(_) if value < 0 => {
                self.problem(key, "must not be negative (0 means no limit)");
                None
            }
            Err(_) => {
                self.problem(key, format!("must be at most {}", u32::MAX));
                None
            }
        }
    }

    pub(super) fn burst(&mut self, key: &str, value: i64) -> Option<NonZeroU32> {
        if value < 1 {
            self.problem(
                key,
                "must be at least 1 (leave it out to derive it from per_minute)",
            );
            return None;
        }
        let burst = u32::try_from(value).ok().and_then(NonZeroU32::new);
        if burst.is_none() {
            self.problem(key, format!("must be at most {}", u32::MAX));
        }
        burst
    }

    fn routes(&mut self, raw: Vec<RawRouteLimit>) -> Vec<RouteLimit> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut routes = Vec::new();
        for (i, route) in raw.into_iter().enumerate() {
            let prefix = format!("rate_limit.route[{i}]");
            let key = |name: &str| format!("{prefix}.{name}");
            let path_prefix = match route.path_prefix {
                None => {
                    self.problem(
                        &key("path_prefix"),
                        "is required: the path the class covers, like \"/api/advancedhunting\"",
                    );
                    None
                }
                Some(path) => match path_prefix_problem(
                    &path,
                    "`/` would cover every path: set those limits in [rate_limit] instead",
                ) {
                    Some(message) => {
                        self.problem(&key("path_prefix"), message);
                        None
                    }
                    None => Some(path),
                },
            };
            if let Some(path) = &path_prefix {
                if let Some(first) = seen.insert(path.to_ascii_lowercase(), i) {
                    self.problem(
                        &key("path_prefix"),
                        format!(
                            "`{path}` is already the prefix of rate_limit.route[{first}] \
                             (prefixes are compared ignoring case)"
                        ),
                    );
                }
            }
            if route.per_minute.is_none() && route.per_hour.is_none() {
                self.problem(
                    &prefix,
                    "sets no limit: give per_minute or per_hour (0 for no limit on that window)",
                );
            }
            let before = self.problems.len();
            let per_minute = route
                .per_minute
                .and_then(|v| self.window(&key("per_minute"), v));
            let per_hour = route
                .per_hour
                .and_then(|v| self.window(&key("per_hour"), v));
            let burst = route.burst.and_then(|v| self.burst(&key("burst"), v));
            let windows = Windows {
                per_minute: per_minute.flatten(),
                per_hour: per_hour.flatten(),
                burst,
            };
            if self.problems.len() == before {
                if let (Some(burst), Some(per_minute)) = (windows.burst, windows.per_minute) {
                    if burst > per_minute {
                        self.problem(
                            &key("burst"),
                            format!("{burst} is more than this route's per_minute ({per_minute})"),
                        );
                    }
                }
            }
            if let Some(path_prefix) = path_prefix {
                routes.push(RouteLimit {
                    path_prefix,
                    windows,
                });
            }
        }
        routes
    }

    /// `backend` and the keys that go with it. Values are checked even without a backend.
    fn backend(&mut self, raw: RawRateLimit) -> LimitBackend {
        let on_error = match raw.on_backend_error.as_deref() {
            None | Some("local") => Some(OnBackendError::Local),
            Some("reject") => Some(OnBackendError::Reject),
            Some(other) => {
                self.problem(
                    "rate_limit.on_backend_error",
                    format!("`{other}` is neither \"local\" nor \"reject\""),
                );
                None
            }
        };
        let replicas = match raw.replicas {
            None => NonZeroU32::new(1),
            Some(n) => {
                let replicas = u32::try_from(n).ok().and_then(NonZeroU32::new);
                if replicas.is_none() {
                    self.problem(
                        "rate_limit.replicas",
                        format!("must be a whole number from 1 to {}", u32::MAX),
                    );
                }
                replicas
            }
        };
        let Some(url) = raw.backend else {
            if raw.backend_password.is_some() {
                self.problem(
                    "rate_limit.backend_password",
                    "is only used with backend = \"redis://...\", which is not set",
                );
            }
            return LimitBackend::Local;
        };
        let url = match redis_url(&url) {
            Ok(()) => Some(url),
            Err(message) => {
                self.problem("rate_limit.backend", message);
                None
            }
        };
        let password = match raw.backend_password {
            None => Some(None),
            Some(secret) => self.secret("rate_limit.backend_password", secret).map(Some),
        };
        match (url, password, on_error, replicas) {
            (Some(url), Some(password), Some(on_error), Some(replicas)) => {
                LimitBackend::Redis(RedisBackendConfig {
                    url,
                    password,
                    on_error,
                    replicas,
                })
            }
            _ => LimitBackend::Local,
        }
    }
}

/// Why `path` is not a usable path prefix (of a route class or an `[[api]]`), if it is not;
/// `root` is the message for `/`, which would cover every path.
pub(super) fn path_prefix_problem(path: &str, root: &str) -> Option<String> {
    let problem = if !path.starts_with('/') {
        format!("`{path}` must start with '/'")
    } else if path == "/" {
        root.to_owned()
    } else if path.ends_with('/') {
        format!(
            "`{path}` must not end with '/' (prefixes match whole segments: `{}` covers its subpaths)",
            path.trim_end_matches('/')
        )
    } else if path.contains(['?', '#']) {
        format!("`{path}` must be a path only, without '?' or '#'")
    } else if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        format!(
            "`{}` must not contain spaces or control characters",
            path.escape_default()
        )
    } else if path.split('/').skip(1).any(|s| s.is_empty()) {
        format!("`{path}` must not contain empty segments ('//')")
    } else if path.split('/').any(|s| s == ".." || s == ".") {
        format!("`{path}` must not contain '.' or '..' segments")
    } else {
        return None;
    };
    Some(problem)
}

/// Checks a Redis URL: `redis://host[:port][/db]` or `rediss://...`. Messages never quote the
/// user-information part: it may hold a password.
fn redis_url(url: &str) -> Result<(), String> {
    const FORM: &str = "redis://host[:port][/db] or rediss://host[:port][/db]";
    let shown = redact(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("`{shown}` is not a URL like {FORM}"));
    };
    if !scheme.eq_ignore_ascii_case("redis") && !scheme.eq_ignore_ascii_case("rediss") {
        return Err(format!("`{shown}` must be a redis:// or rediss:// URL"));
    }
    if let Some(at) = rest.rfind('@') {
        return Err(if rest[..at].contains(':') {
            "must not contain a password: put it in backend_password = { env = \"...\" } \
             (or { file = \"...\" })"
                .to_owned()
        } else {
            "must not contain user information: a password goes in backend_password = \
             { env = \"...\" } (or { file = \"...\" })"
                .to_owned()
        });
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else {
            return Err(format!("`{shown}` has an unclosed '[' in its host"));
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{shown}`: `[{v6}]` is not an IPv6 address"));
        }
        match after {
            "" => (v6, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (v6, Some(port)),
                None => return Err(format!("`{shown}` is not a URL like {FORM}")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{shown}` has no host; expected {FORM}"));
    }
    if !authority.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(format!("`{shown}`: `{host}` is not a host name or address"));
    }
    if let Some(port) = port {
        if !port.bytes().all(|b| b.is_ascii_digit()) || !matches!(port.parse::<u16>(), Ok(1..)) {
            return Err(format!("`{shown}`: `{port}` is not a port number"));
        }
    }
    let db = tail.strip_prefix('/').unwrap_or(tail);
    if tail.contains(['?', '#'])
        || !(db.is_empty() || (db.bytes().all(|b| b.is_ascii_digit()) && db.parse::<u32>().is_ok()))
    {
        return Err(format!(
            "`{shown}` must be {FORM}, with at most a database number after the host"
        ));
    }
    Ok(())
}

/// `url` with everything between the scheme and the last '@' hidden.
fn redact(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url.rfind('@') {
        Some(at) if at >= start => format!("{}***{}", &url[..start], &url[at..]),
        _ => url.to_owned(),
    }
}
