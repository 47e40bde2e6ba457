//! Who the proxy serves: `[[tenant]]` entries (each on an app and a cloud, `[app]` and `[cloud]`
//! unless it names another) and how requests pick one (`[routing]`).

use std::collections::HashMap;

use http::header::HeaderName;

use super::profiles::{Profiles, APP, CLOUD};
use super::ratelimit::GlobalLimits;
use super::{is_guid, Validator};
use crate::config::raw::{RawRouting, RawTenant};
use crate::config::{defaults, RoutingConfig, TenantConfig, TenantSource};

/// Tenant names that would make routing ambiguous: in header mode (or with `default_tenant`) the
/// first path segment is an API path like `/api/incidents`, not a tenant.
const RESERVED_TENANT_NAMES: &[&str] = &["api", "healthz", "readyz", "metrics"];

/// Headers the proxy sets, strips or reads for another purpose; using one as the tenant header
/// would either leak it upstream or break it.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "x-api-key",
    "x-request-id",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-type",
];

impl Validator<'_> {
    pub(super) fn routing(
        &mut self,
        raw: RawRouting,
        tenants: &[RawTenant],
    ) -> Option<RoutingConfig> {
        const KEY: &str = "routing.tenant_header";
        let header = raw
            .tenant_header
            .as_deref()
            .unwrap_or(defaults::TENANT_HEADER);
        let tenant_header = match HeaderName::from_bytes(header.as_bytes()) {
            Err(_) => {
                self.problem(KEY, format!("`{header}` is not a valid header name"));
                None
            }
            Ok(name)
                if RESERVED_HEADERS.contains(&name.as_str())
                    || name.as_str().starts_with("proxy-") =>
            {
                self.problem(
                    KEY,
                    format!("`{header}` is a header the proxy sets or removes itself"),
                );
                None
            }
            Ok(name) => Some(name),
        };
        // Named by name or id, like the tenant header; stored as the name. Checked against the
        // tenants as written so a tenant with its own problem does not cause a second one here.
        let default_tenant = match raw.default_tenant {
            None => Some(None),
            Some(wanted) => {
                let found = tenants.iter().find(|t| {
                    t.name.as_deref() == Some(wanted.as_str())
                        || t.id
                            .as_deref()
                            .is_some_and(|id| id.eq_ignore_ascii_case(&wanted))
                });
                match found.and_then(|t| t.name.clone()) {
                    Some(name) => Some(Some(name)),
                    None => {
                        self.problem(
                            "routing.default_tenant",
                            format!("no tenant named `{wanted}` is configured"),
                        );
                        None
                    }
                }
            }
        };
        Some(RoutingConfig {
            tenant_header: tenant_header?,
            default_tenant: default_tenant?,
        })
    }

    /// The tenants, each with its rate-limit policy laid over `[rate_limit]`, and its app and
    /// cloud one of `profiles`' names.
    pub(super) fn tenants(
        &mut self,
        raw: Vec<RawTenant>,
        limits: &GlobalLimits,
        profiles: &Profiles,
        tenants_file: bool,
    ) -> Vec<TenantConfig> {
        // With a tenants file, none at all is a proxy waiting for its first customer.
        if raw.is_empty() && !tenants_file {
            self.problem(
                "tenant",
                "no tenants: add at least one [[tenant]] with a name and an id",
            );
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut tenants = Vec::new();
        for (i, tenant) in raw.into_iter().enumerate() {
            let (name_key, id_key) = (format!("tenant[{i}].name"), format!("tenant[{i}].id"));
            let name = match tenant.name {
                None => {
                    self.problem(&name_key, "is required");
                    None
                }
                Some(name) => match tenant_name_problem(&name) {
                    Some(message) => {
                        self.problem(&name_key, message);
                        None
                    }
                    None => Some(name),
                },
            };
            let id = match tenant.id {
                None => {
                    self.problem(&id_key, "is required: the customer's Entra ID tenant id");
                    None
                }
                Some(id) => self.guid(&id_key, &id),
            };
            if let Some(name) = &name {
                if let Some(first) = names.insert(name.clone(), i) {
                    let first = self.tenant_label(first);
                    self.problem(
                        &name_key,
                        format!("`{name}` is already the name of {first}"),
                    );
                }
            }
            if let Some(id) = &id {
                if let Some(first) = ids.insert(id.clone(), i) {
                    let first = self.tenant_label(first);
                    self.problem(&id_key, format!("{id} is already the id of {first}"));
                }
            }
            let rate_limit = self.tenant_limits(
                &format!("tenant[{i}].rate_limit"),
                limits,
                tenant.rate_limit,
            );
            let at = |key: &str| format!("tenant[{i}].{key}");
            let app = self.profile_ref(&at("app"), tenant.app, &profiles.app_names, APP);
            let cloud = self.profile_ref(&at("cloud"), tenant.cloud, &profiles.cloud_names, CLOUD);
            if let (Some(name), Some(id), Some(app), Some(cloud)) = (name, id, app, cloud) {
                let source = if self.in_tenants_file(i) {
                    TenantSource::File
                } else {
                    TenantSource::Config
                };
                tenants.push(TenantConfig {
                    name,
                    id,
                    rate_limit,
                    app,
                    cloud,
                    source,
                });
            }
        }
        tenants
    }
}

/// What is wrong with `name` as a tenant name, if anything; shared with consent onboarding, whose
/// `consent-url --new NAME` must refuse what the tenants file would.
pub(crate) fn tenant_name_problem(name: &str) -> Option<String> {
    let problem = if name.is_empty() {
        "must not be empty".to_owned()
    } else if name.len() > 63 {
        "must be at most 63 characters".to_owned()
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        format!("`{name}` may contain only lower-case letters, digits and '-'")
    } else if name.starts_with('-') {
        format!("`{name}` must not start with '-'")
    } else if RESERVED_TENANT_NAMES.contains(&name) {
        format!("`{name}` is reserved: it would be ambiguous with request paths like /{name}/...")
    } else if is_guid(name) {
        // The first path segment may be a tenant's name or id: a name shaped like an id blurs the two.
        format!("`{name}` must not be a GUID: tenants are routed by name or id")
    } else {
        return None;
    };
    Some(problem)
}
