//! TOML text -> validated [`Config`], with every problem reported at once.
//!
//! Three passes, so an operator fixes a broken file in one round rather than one error per run:
//! 1. [`raw::index`] walks the document: every unknown key (serde would stop at the first) and the
//!    position of every known key, so later problems can name a line;
//! 2. serde fills the [`raw`] structs, which gives values their types;
//! 3. validation here checks meaning (GUIDs, URLs, secrets, files, addresses, tenants) and
//!    collects every problem before giving up.
//!
//! Passes 2 and 3 only run when the previous one found nothing: a value that has the wrong type
//! or sits under a misspelled key cannot be judged on its meaning.
//!
//! Validation is split by section: [`app`] (credentials and the files they come from), [`cloud`]
//! (URLs, trust roots, timeouts), [`profiles`] (`[apps.NAME]`, `[clouds.NAME]`, their names and
//! client ids, a tenant's `app` and `cloud`), [`apis`] (`[[api]]` entries and their implicit
//! route classes) with [`api_clouds`] (their endpoints per cloud profile),
//! [`ratelimit`] (limits, route classes, the shared backend), [`tenants`] (tenants and routing,
//! each tenant's limits laid over `[rate_limit]`), [`listen`] (the client listener: limits, TLS)
//! and [`inbound`] (clients, CORS, audit); this file holds the entry points, the problem list and
//! the checks that span sections.
//!
//! Findings that do not stop the proxy (a secret file others can read) are collected as warnings
//! in [`Config::warnings`].

mod admin;
mod api_clouds;
mod apis;
mod app;
mod cache;
mod cloud;
mod cors;
mod hunting;
mod inbound;
mod listen;
mod profiles;
mod ratelimit;
mod telemetry;
mod tenants;
mod tenants_file;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::raw::{self, KeyIndex, RawConfig};
use super::{
    defaults, ClientConfig, ClientCredential, Config, CorsConfig, ListenConfig, MetricsConfig,
    ReloadConfig,
};
use api_clouds::CloudUse;
pub(crate) use tenants::tenant_name_problem;

/// One thing wrong with the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file it is in when that is not the config file itself (the tenants file).
    pub file: Option<PathBuf>,
    /// Dotted path of the key, e.g. `tenant[1].id` or `app.client_secret`; empty for a problem
    /// with the file as a whole (unreadable, not TOML).
    pub key: String,
    /// 1-based line, where known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a config file, in file order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// True when clients reach the proxy on a non-loopback address without authenticating: no
    /// `[[client]]` and no mTLS, so only `allow_unauthenticated` let it start. The server logs a
    /// warning at start.
    pub fn insecure_listener(&self) -> bool {
        !is_loopback_ip(self.listen.addr.ip())
            && self.clients.is_empty()
            && self
                .listen
                .tls
                .as_ref()
                .is_none_or(|tls| tls.client_ca.is_none())
    }
}

/// Reads and validates the config file at `path`, resolving secrets from the process environment.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        problems: vec![Problem {
            file: None,
            key: String::new(),
            line: None,
            message: format!("cannot read config file {}: {e}", path.display()),
        }],
    })?;
    parse_str(&text, path, &|name| std::env::var(name).ok())
}

/// Validates config `text`. `origin` is the file it came from: relative paths in the file are
/// resolved against its directory. `env` looks up environment variables (injected so tests need
/// not touch the process environment).
pub fn parse_str(
    text: &str,
    origin: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    parse_with(text, origin, env, None)
}

/// As [`parse_str`]; with `tenants`, that text stands for the content of `[tenants] file`
/// instead of the file on disk (a change the admin API validates before writing it).
pub(crate) fn parse_with(
    text: &str,
    origin: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    tenants: Option<&str>,
) -> Result<Config, ConfigErrors> {
    let (index, unknown) = raw::index(text).unwrap_or_default();
    let mut v = Validator {
        text,
        index,
        given_tenants: tenants,
        file_tenants: None,
        base: origin.parent().map(Path::to_path_buf).unwrap_or_default(),
        env,
        problems: Vec::new(),
        warnings: Vec::new(),
        watched: Default::default(),
    };
    for key in &unknown {
        v.push(key.path.clone(), Some(key.offset), key.message.clone());
    }
    let raw = match toml::from_str::<RawConfig>(text) {
        Ok(raw) => raw,
        Err(e) => {
            // The walk already named every unknown key, with a clearer message than serde's.
            if unknown.is_empty() || !e.message().starts_with("unknown field") {
                let offset = e.span().map(|s| s.start);
                let key = offset
                    .and_then(|o| v.index.key_before(o))
                    .unwrap_or_default()
                    .to_owned();
                v.push(key, offset, e.message().trim().replace('\n', "; "));
            }
            return Err(v.into_errors());
        }
    };
    if !v.problems.is_empty() {
        return Err(v.into_errors());
    }
    v.validate(raw)
}

struct Validator<'a> {
    text: &'a str,
    index: KeyIndex,
    /// The tenants file's content when the caller gives it (see [`parse_with`]).
    given_tenants: Option<&'a str>,
    /// The tenants file, once read: problems on its tenants are recorded there.
    file_tenants: Option<tenants_file::FileTenants>,
    /// Directory of the config file; relative paths in it are relative to here.
    base: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
    /// Non-fatal findings, each starting with its key: `app.client_secret: ...`.
    warnings: Vec<String>,
    /// Files whose change should trigger a reload under `[reload] watch` (secrets, keys,
    /// certificates); not the audit log or the federated token, which change on their own.
    watched: std::cell::RefCell<Vec<PathBuf>>,
}

impl Validator<'_> {
    fn push(&mut self, key: String, offset: Option<usize>, message: String) {
        let line = offset.map(|o| line_at(self.text, o));
        self.problems.push(Problem {
            file: None,
            key,
            line,
            message,
        });
    }

    /// Records a problem on `key`, on the line of that key, or failing that of the nearest
    /// enclosing key that is written (a missing `app.client_id` points at `[app]`).
    /// A problem on a tenant of the tenants file is recorded there.
    fn problem(&mut self, key: &str, message: impl Into<String>) {
        let message = message.into();
        if self.problem_in_file(key, &message) {
            return;
        }
        let offset = offset_in(&self.index, key);
        self.push(key.to_owned(), offset, message);
    }

    fn offset_of(&self, key: &str) -> Option<usize> {
        offset_in(&self.index, key)
    }

    fn into_errors(mut self) -> ConfigErrors {
        // Stable: problems on one line keep the order they were found in; no line goes last;
        // the config file's before the tenants file's.
        self.problems
            .sort_by_key(|p| (p.file.is_some(), p.line.unwrap_or(usize::MAX)));
        ConfigErrors {
            problems: self.problems,
        }
    }

    /// Warnings for a valid config that exposes something: client keys over plain HTTP off
    /// loopback, CORS origins without inbound authentication.
    fn warn_of_exposure(
        &mut self,
        listen: &ListenConfig,
        clients: &[ClientConfig],
        cors: &CorsConfig,
    ) {
        let keys_in_clear = listen.tls.is_none()
            && !is_loopback_ip(listen.addr.ip())
            && clients
                .iter()
                .any(|c| matches!(c.credential, ClientCredential::KeySha256(_)));
        if keys_in_clear {
            self.warnings.push(format!(
                "listen.addr: clients send their keys over plain HTTP on {}; anyone on \
                 the network path can read them: set [listen.tls]",
                listen.addr
            ));
        }
        if !cors.allowed_origins.is_empty() && clients.is_empty() {
            self.warnings.push(
                "cors.allowed_origins: no [[client]] authenticates requests, so scripts \
                 on these origins can call every tenant's API from any browser that can \
                 reach the proxy"
                    .to_owned(),
            );
        }
    }

    fn validate(mut self, mut raw: RawConfig) -> Result<Config, ConfigErrors> {
        let front = self.front(&mut raw);
        let (client_ca, has_file) = (front.client_ca, front.tenants_file.is_some());
        let profiles = self.profiles(raw.app, raw.apps, raw.cloud, raw.clouds);
        let clouds = CloudUse::new(&profiles, &raw.tenants);
        let upstream = self.upstream(raw.upstream);
        let routing = self.routing(raw.routing, &raw.tenants);
        let clients = self.clients(raw.clients, &raw.tenants, client_ca);
        let cors = self.cors(raw.cors);
        let audit = self.audit(raw.audit);
        let (reload, metrics) = reload_and_metrics(raw.reload, raw.metrics);
        let (mut rate_limit, global_limits) = self.rate_limit(raw.rate_limit);
        let routes = &mut rate_limit.routes;
        let apis = self.apis(raw.apis, &raw.tenants, &clouds, &global_limits, routes);
        let tenants = self.tenants(raw.tenants, &global_limits, &profiles, has_file);
        let cache = self.cache(raw.cache);
        let hunting = self.hunting(raw.advanced_hunting, &apis);
        let telemetry = self.telemetry(raw.telemetry.take());

        match (
            front.listen,
            front.admin,
            front.onboarding,
            profiles.app,
            profiles.cloud,
            upstream,
            routing,
            cors,
            audit,
        ) {
            (
                Some(listen),
                Some(admin),
                Some(onboarding),
                Some(app),
                Some(cloud),
                Some(upstream),
                Some(routing),
                Some(cors),
                Some(audit),
            ) if self.problems.is_empty() => {
                self.warn_of_exposure(&listen, &clients, &cors);
                let mut config = Config {
                    listen,
                    admin,
                    app,
                    apps: profiles.apps,
                    cloud,
                    clouds: profiles.clouds,
                    apis,
                    upstream,
                    routing,
                    rate_limit,
                    tenants,
                    tenants_file: front.tenants_file,
                    onboarding,
                    clients,
                    cors,
                    audit,
                    reload,
                    cache,
                    metrics,
                    hunting,
                    telemetry,
                    watched_files: self.watched.take(),
                    warnings: self.warnings,
                };
                config.add_hunting_route();
                Ok(config)
            }
            _ => {
                debug_assert!(!self.problems.is_empty(), "a part failed without a problem");
                Err(self.into_errors())
            }
        }
    }

    fn socket_addr(
        &mut self,
        key: &str,
        value: Option<String>,
        default: &str,
    ) -> Option<SocketAddr> {
        let value = value.as_deref().unwrap_or(default);
        let parsed = value.parse().ok();
        if parsed.is_none() {
            self.problem(
                key,
                format!(
                    "`{value}` is not an IP address and port, like 127.0.0.1:8080 or [::1]:8080"
                ),
            );
        }
        parsed
    }

    /// A GUID, lower-cased: ids are compared with the token's `tid`, which Entra writes lower-case.
    fn guid(&mut self, key: &str, value: &str) -> Option<String> {
        if is_guid(value) {
            Some(value.to_ascii_lowercase())
        } else {
            self.problem(
                key,
                format!("`{value}` is not a GUID like 11111111-2222-3333-4444-555555555555"),
            );
            None
        }
    }

    fn resolve(&self, path: &str) -> PathBuf {
        self.base.join(path)
    }

    /// As [`Self::resolve`], and remember the file for `[reload] watch`.
    fn resolve_watched(&self, path: &str) -> PathBuf {
        let resolved = self.resolve(path);
        self.watched.borrow_mut().push(resolved.clone());
        resolved
    }
}

/// `[reload]` and `[metrics]`, whose values serde already typed (a bool, or it named the key).
fn reload_and_metrics(
    reload: Option<raw::RawReload>,
    metrics: Option<raw::RawMetrics>,
) -> (ReloadConfig, MetricsConfig) {
    let reload = ReloadConfig {
        watch: reload.and_then(|r| r.watch).unwrap_or(false),
    };
    let metrics = MetricsConfig {
        per_tenant_histograms: metrics
            .and_then(|m| m.per_tenant_histograms)
            .unwrap_or(defaults::PER_TENANT_HISTOGRAMS),
    };
    (reload, metrics)
}

/// Where `key` is written in the file `index` describes, or failing that the nearest enclosing
/// key that is (a missing `app.client_id` points at `[app]`).
fn offset_in(index: &KeyIndex, key: &str) -> Option<usize> {
    let mut path = key;
    loop {
        if let Some(offset) = index.offset(path) {
            return Some(offset);
        }
        // `tenant[1]` has no key of its own: use its first key.
        if path.ends_with(']') {
            let first = index.first_under(path);
            if first.is_some() {
                return first;
            }
        }
        path = &path[..path.rfind(['.', '['])?];
    }
}

/// The 1-based line of byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    // Bytes, not `str` slicing: an offset inside a multi-byte character must not panic.
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

/// `8-4-4-4-12` hex digits (any case): a tenant id, and the only `tenant` the consent callback
/// puts into a token endpoint's path.
pub(crate) fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_loopback_ip(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}
