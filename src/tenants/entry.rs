//! A tenant as the admin API's `PUT /tenants/{name}` body and the tenants file write it.

use serde::{Deserialize, Serialize};

/// The fields of one `[[tenant]]` besides its name. Unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantEntry {
    pub(crate) id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cloud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rate_limit: Option<EntryLimits>,
}

#[cfg(test)]
impl TenantEntry {
    /// An entry with only its id.
    pub(crate) fn of(id: &str) -> Self {
        TenantEntry {
            id: id.to_owned(),
            ..TenantEntry::default()
        }
    }
}

/// A tenant's `rate_limit = { ... }`: the keys of the config file, judged by its validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntryLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) per_minute: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) per_hour: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_wait: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_queue: Option<i64>,
}
