//! The key schema of the config file and the walk that checks a document against it.
//!
//! serde stops at the first unknown key; this walk finds every one, with its position and a
//! helpful message (a documented key of a later version, a key in the wrong table), and records
//! where each known key is written so validation can name the line of a problem.

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;

use super::node::Node;

/// What a key holds, as far as the unknown-key walk cares.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// A value; its inside is not walked (serde checks its type).
    Value,
    Table(&'static [(&'static str, Shape)]),
    /// `[[name]]`: each element is walked as a table, and named `name[i]`.
    Tables(&'static [(&'static str, Shape)]),
    /// `[name.NAME]`: a table of tables whose keys are names the file chooses (`[apps.acme]`),
    /// each walked as a table, and named `name.NAME`. The names are judged in validation.
    Named(&'static [(&'static str, Shape)]),
}

/// The keys of `[app]` and of each `[apps.NAME]`.
const APP: &[(&str, Shape)] = &[
    ("client_id", Shape::Value),
    (
        "client_secret",
        Shape::Table(&[("env", Shape::Value), ("file", Shape::Value)]),
    ),
    (
        "certificate",
        Shape::Table(&[("cert", Shape::Value), ("key", Shape::Value)]),
    ),
    ("federated_token_file", Shape::Value),
];

/// The keys of `[cloud]` and of each `[clouds.NAME]`.
const CLOUD: &[(&str, Shape)] = &[
    ("cloud", Shape::Value),
    ("authority", Shape::Value),
    ("api", Shape::Value),
    ("scope", Shape::Value),
    ("token_endpoint", Shape::Value),
    ("ca", Shape::Value),
];

/// The keys of each `[[tenant]]`, in the config and in the tenants file.
const TENANT: &[(&str, Shape)] = &[
    ("name", Shape::Value),
    ("id", Shape::Value),
    (
        "rate_limit",
        Shape::Table(&[
            ("per_minute", Shape::Value),
            ("per_hour", Shape::Value),
            ("burst", Shape::Value),
            ("mode", Shape::Value),
            ("max_wait", Shape::Value),
            ("max_queue", Shape::Value),
        ]),
    ),
    ("app", Shape::Value),
    ("cloud", Shape::Value),
];

/// The keys of `[listen.tls]` and `[onboarding.tls]`.
const SERVER_TLS: &[(&str, Shape)] = &[
    ("cert", Shape::Value),
    ("key", Shape::Value),
    ("client_ca", Shape::Value),
];

/// The tenants file (`[tenants] file`) holds `[[tenant]]` entries only.
const TENANTS_FILE: &[(&str, Shape)] = &[("tenant", Shape::Tables(TENANT))];

/// Every key the `Raw*` structs accept. A test checks that a file using all of them parses and
/// that the walk finds nothing unknown in it, so this list and the structs cannot drift apart.
pub(crate) const SCHEMA: &[(&str, Shape)] = &[
    (
        "listen",
        Shape::Table(&[
            ("addr", Shape::Value),
            ("allow_unauthenticated", Shape::Value),
            ("max_header_bytes", Shape::Value),
            ("header_timeout", Shape::Value),
            ("idle_timeout", Shape::Value),
            ("max_connections", Shape::Value),
            ("on_max_connections", Shape::Value),
            ("max_body_bytes", Shape::Value),
            ("body_idle_timeout", Shape::Value),
            ("h2_max_concurrent_streams", Shape::Value),
            ("h2_max_header_list_size", Shape::Value),
            ("shutdown_grace", Shape::Value),
            ("public_url", Shape::Value),
            ("tls", Shape::Table(SERVER_TLS)),
        ]),
    ),
    (
        "admin",
        Shape::Table(&[
            ("addr", Shape::Value),
            ("key_sha256", Shape::Value),
            ("allow_unauthenticated", Shape::Value),
        ]),
    ),
    ("tenants", Shape::Table(&[("file", Shape::Value)])),
    (
        "onboarding",
        Shape::Table(&[
            ("addr", Shape::Value),
            ("redirect_uri", Shape::Value),
            (
                "state_key",
                Shape::Table(&[("env", Shape::Value), ("file", Shape::Value)]),
            ),
            ("tls", Shape::Table(SERVER_TLS)),
        ]),
    ),
    ("reload", Shape::Table(&[("watch", Shape::Value)])),
    (
        "metrics",
        Shape::Table(&[("per_tenant_histograms", Shape::Value)]),
    ),
    (
        "telemetry",
        Shape::Table(&[
            ("otlp_endpoint", Shape::Value),
            ("protocol", Shape::Value),
            ("service_name", Shape::Value),
            ("sample_ratio", Shape::Value),
        ]),
    ),
    (
        "advanced_hunting",
        Shape::Table(&[
            ("via", Shape::Value),
            ("graph_api", Shape::Value),
            ("quota_retry_after", Shape::Value),
        ]),
    ),
    ("app", Shape::Table(APP)),
    ("apps", Shape::Named(APP)),
    ("cloud", Shape::Table(CLOUD)),
    ("clouds", Shape::Named(CLOUD)),
    (
        "upstream",
        Shape::Table(&[
            ("connect_timeout", Shape::Value),
            ("response_timeout", Shape::Value),
            ("body_idle_timeout", Shape::Value),
        ]),
    ),
    (
        "routing",
        Shape::Table(&[
            ("tenant_header", Shape::Value),
            ("default_tenant", Shape::Value),
        ]),
    ),
    (
        "rate_limit",
        Shape::Table(&[
            ("per_minute", Shape::Value),
            ("per_hour", Shape::Value),
            ("burst", Shape::Value),
            ("mode", Shape::Value),
            ("max_wait", Shape::Value),
            ("max_queue", Shape::Value),
            ("backend", Shape::Value),
            (
                "backend_password",
                Shape::Table(&[("env", Shape::Value), ("file", Shape::Value)]),
            ),
            ("on_backend_error", Shape::Value),
            ("replicas", Shape::Value),
            (
                "route",
                Shape::Tables(&[
                    ("path_prefix", Shape::Value),
                    ("per_minute", Shape::Value),
                    ("per_hour", Shape::Value),
                    ("burst", Shape::Value),
                ]),
            ),
        ]),
    ),
    ("tenant", Shape::Tables(TENANT)),
    (
        "client",
        Shape::Tables(&[
            ("name", Shape::Value),
            ("key_sha256", Shape::Value),
            ("cert_subject", Shape::Value),
            ("tenants", Shape::Value),
            ("methods", Shape::Value),
        ]),
    ),
    (
        "api",
        Shape::Tables(&[
            ("name", Shape::Value),
            ("prefix", Shape::Value),
            ("url", Shape::Value),
            ("scope", Shape::Value),
            ("per_minute", Shape::Value),
            ("per_hour", Shape::Value),
            ("burst", Shape::Value),
            (
                "clouds",
                Shape::Named(&[("url", Shape::Value), ("scope", Shape::Value)]),
            ),
        ]),
    ),
    (
        "cors",
        Shape::Table(&[("allowed_origins", Shape::Value), ("max_age", Shape::Value)]),
    ),
    ("audit", Shape::Table(&[("file", Shape::Value)])),
    (
        "cache",
        Shape::Table(&[
            ("ttl", Shape::Value),
            ("max_entry_bytes", Shape::Value),
            ("max_bytes_per_tenant", Shape::Value),
        ]),
    ),
];

/// Keys the interface documents for features this version does not have. Saying so beats
/// "unknown key": the operator copied them from our own docs. Paths are without `[i]` indices.
/// Empty while every documented key is implemented; kept so the next one has its place.
const NOT_YET: &[(&str, &str)] = &[];

/// Keys that exist, but elsewhere: said so rather than "unknown key". Paths are without `[i]`.
const MISPLACED: &[(&str, &str)] = &[
    ("listen.cert", "`cert` belongs in [listen.tls]"),
    ("listen.key", "`key` belongs in [listen.tls]"),
    ("listen.client_ca", "`client_ca` belongs in [listen.tls]"),
    (
        "client.key",
        "a client's key is never written in the file: put its SHA-256 in key_sha256 \
         (`defender-proxy hash-key` makes a key and its hash)",
    ),
    (
        "client.tenant",
        "the key is `tenants`, a list: tenants = [\"contoso\"] or [\"*\"]",
    ),
    (
        "tenant.rate_limit.backend",
        "`backend` is set only in [rate_limit]: limiter state lives in one place for every tenant",
    ),
    (
        "tenant.rate_limit.backend_password",
        "`backend_password` is set only in [rate_limit], next to `backend`",
    ),
    (
        "tenant.rate_limit.on_backend_error",
        "`on_backend_error` is set only in [rate_limit], next to `backend`",
    ),
    (
        "tenant.rate_limit.replicas",
        "`replicas` is set only in [rate_limit], next to `backend`",
    ),
    (
        "tenant.rate_limit.route",
        "`route` is set only in [rate_limit], as [[rate_limit.route]]; route classes apply to every tenant",
    ),
    (
        "tenant.rate_limit.path_prefix",
        "`path_prefix` belongs in a [[rate_limit.route]]; route classes apply to every tenant",
    ),
    (
        "tenant.apps",
        "a tenant names one app: app = \"NAME\", one of the [apps.NAME] tables",
    ),
    (
        "tenant.clouds",
        "a tenant names one cloud profile: cloud = \"NAME\", one of the [clouds.NAME] tables",
    ),
    (
        "api.cloud",
        "an API's URL in a cloud profile is a table of its own: [api.clouds.NAME] with url \
         (and scope), right after the [[api]]",
    ),
    (
        "api.path_prefix",
        "an API's path prefix is `prefix` (as in prefix = \"/mde\")",
    ),
    (
        "api.api",
        "an API's base URL is `url` (as in url = \"https://api.securitycenter.microsoft.com\")",
    ),
    (
        "api.rate_limit",
        "an API sets its limits with per_minute, per_hour and burst written in its [[api]] table",
    ),
    (
        "api.mode",
        "an API sets only per_minute, per_hour and burst; `mode` comes from [rate_limit] or the \
         tenant's rate_limit",
    ),
    (
        "api.max_wait",
        "an API sets only per_minute, per_hour and burst; `max_wait` comes from [rate_limit] or \
         the tenant's rate_limit",
    ),
    (
        "api.max_queue",
        "an API sets only per_minute, per_hour and burst; `max_queue` comes from [rate_limit] or \
         the tenant's rate_limit",
    ),
    (
        "rate_limit.route.mode",
        "a route sets only path_prefix, per_minute, per_hour and burst; `mode` comes from \
         [rate_limit] or the tenant's rate_limit",
    ),
    (
        "rate_limit.route.max_wait",
        "a route sets only path_prefix, per_minute, per_hour and burst; `max_wait` comes from \
         [rate_limit] or the tenant's rate_limit",
    ),
    (
        "rate_limit.route.max_queue",
        "a route sets only path_prefix, per_minute, per_hour and burst; `max_queue` comes from \
         [rate_limit] or the tenant's rate_limit",
    ),
];

/// An unknown key found by the walk.
#[derive(Debug)]
pub(crate) struct UnknownKey {
    pub(crate) path: String,
    pub(crate) offset: usize,
    pub(crate) message: String,
}

/// Where each key of the document starts (byte offset), by dotted path (`tenant[1].id`).
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    by_path: HashMap<String, usize>,
    /// (offset, path) sorted by offset, to name the key an error position falls under.
    by_offset: Vec<(usize, String)>,
}

impl KeyIndex {
    pub(crate) fn offset(&self, path: &str) -> Option<usize> {
        self.by_path.get(path).copied()
    }

    /// The key written last at or before `offset`: for a serde error pointing at a value, the
    /// key that value belongs to.
    pub(crate) fn key_before(&self, offset: usize) -> Option<&str> {
        let i = self.by_offset.partition_point(|(o, _)| *o <= offset);
        i.checked_sub(1).map(|i| self.by_offset[i].1.as_str())
    }

    /// Where the first key below `prefix` is written: `tenant[1]` has no key of its own.
    pub(crate) fn first_under(&self, prefix: &str) -> Option<usize> {
        let dotted = format!("{prefix}.");
        self.by_offset
            .iter()
            .find(|(_, path)| path.starts_with(&dotted))
            .map(|(offset, _)| *offset)
    }

    fn add(&mut self, path: &str, span: Range<usize>) {
        self.by_path.insert(path.to_owned(), span.start);
        self.by_offset.push((span.start, path.to_owned()));
    }
}

/// Walks `text` against [`SCHEMA`]. `None` when the text is not TOML the walk can read (a syntax
/// error, which serde then reports, or a datetime whose internal keys carry no span).
pub(crate) fn index(text: &str) -> Option<(KeyIndex, Vec<UnknownKey>)> {
    index_with(text, SCHEMA)
}

/// As [`index`], for a tenants file.
pub(crate) fn index_tenants_file(text: &str) -> Option<(KeyIndex, Vec<UnknownKey>)> {
    index_with(text, TENANTS_FILE)
}

fn index_with(text: &str, schema: &[(&'static str, Shape)]) -> Option<(KeyIndex, Vec<UnknownKey>)> {
    let root: Node = toml::from_str(text).ok()?;
    let mut index = KeyIndex::default();
    let mut unknown = Vec::new();
    if let Node::Table(entries) = &root {
        walk(entries, schema, "", "", &mut index, &mut unknown);
    }
    index.by_offset.sort();
    Some((index, unknown))
}

fn walk(
    entries: &[(Spanned<String>, Node)],
    schema: &[(&str, Shape)],
    path: &str,
    generic: &str,
    index: &mut KeyIndex,
    unknown: &mut Vec<UnknownKey>,
) {
    let join = |base: &str, key: &str| {
        if base.is_empty() {
            key.to_owned()
        } else {
            format!("{base}.{key}")
        }
    };
    for (key, node) in entries {
        let (key_path, key_generic) = (join(path, key.get_ref()), join(generic, key.get_ref()));
        index.add(&key_path, key.span());
        let Some((_, shape)) = schema.iter().find(|(name, _)| name == key.get_ref()) else {
            let not_yet = NOT_YET.iter().find(|(p, _)| *p == key_generic);
            let misplaced = MISPLACED.iter().find(|(p, _)| *p == key_generic);
            let message = match (not_yet, misplaced) {
                (Some((_, what)), _) => format!("not supported in this version: {what}"),
                (None, Some((_, why))) => (*why).to_owned(),
                (None, None) => {
                    let names: Vec<&str> = schema.iter().map(|(name, _)| *name).collect();
                    format!(
                        "unknown key `{}`; expected one of: {}",
                        key.get_ref(),
                        names.join(", ")
                    )
                }
            };
            unknown.push(UnknownKey {
                path: key_path,
                offset: key.span().start,
                message,
            });
            continue;
        };
        // A node of the wrong kind (a string where a table belongs) is serde's to report.
        match (shape, node) {
            (Shape::Table(fields), Node::Table(inner)) => {
                walk(inner, fields, &key_path, &key_generic, index, unknown);
            }
            (Shape::Tables(fields), Node::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Node::Table(inner) = item {
                        let item_path = format!("{key_path}[{i}]");
                        walk(inner, fields, &item_path, &key_generic, index, unknown);
                    }
                }
            }
            // Any name is a key here; its table's keys are walked. The generic path leaves the
            // name out, as it leaves out `[i]`: `apps.client_id`.
            (Shape::Named(fields), Node::Table(named)) => {
                for (name, item) in named {
                    let item_path = join(&key_path, name.get_ref());
                    index.add(&item_path, name.span());
                    if let Node::Table(inner) = item {
                        walk(inner, fields, &item_path, &key_generic, index, unknown);
                    }
                }
            }
            _ => {}
        }
    }
}
