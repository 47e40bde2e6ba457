//! Tenants outside the config file: the `[tenants] file` that the admin API (`PUT` and `DELETE
//! /tenants/{name}`) and consent onboarding write, one change at a time.
//!
//! A [`Change`] goes through the one [`crate::reload::Reloader`], under its lock (so a change
//! never interleaves with a reload or another change) and under an advisory lock on the file
//! (so replicas sharing the file on a volume serialise too). It reads the file as it is now,
//! edits its entries, validates the config with the edited file exactly as a reload would, writes
//! the file atomically (temp file in the same folder, fsync, rename), and only then applies it
//! like a reload: requests in flight go on, other tenants keep their tokens and limiter state.
//! Anything that fails before the rename leaves the file and the running tenants as they were.

mod apply;
mod entry;
mod file;

pub(crate) use entry::TenantEntry;

use crate::config::ConfigErrors;
use crate::snapshot::BuildError;

/// One change of the tenants file.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// Add `name`, or replace it when the tenants file already has it.
    Put {
        name: String,
        entry: TenantEntry,
    },
    /// Add `name` unless it is already there with the same id ([`Outcome::AlreadyThere`]);
    /// with another id it is [`ChangeError::Conflict`] (consent onboarding: a replayed state
    /// is harmless, a name already taken is not silently re-pointed).
    Add {
        name: String,
        entry: TenantEntry,
    },
    Delete {
        name: String,
    },
}

impl Change {
    pub(crate) fn name(&self) -> &str {
        match self {
            Change::Put { name, .. } | Change::Add { name, .. } | Change::Delete { name } => name,
        }
    }
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Created,
    Replaced,
    Deleted,
    /// [`Change::Add`] of a tenant the file already has, with the same id: nothing written.
    AlreadyThere,
}

impl Outcome {
    /// As the audit log writes it.
    pub(crate) fn action(self) -> &'static str {
        match self {
            Outcome::Created => "tenant_created",
            Outcome::Replaced => "tenant_replaced",
            Outcome::Deleted => "tenant_deleted",
            Outcome::AlreadyThere => "tenant_unchanged",
        }
    }
}

/// Why a change did not happen; nothing was written and nothing applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChangeError {
    /// The config has no `[tenants] file`.
    #[error("no [tenants] file is configured, so tenants can only be changed in the config file")]
    NoFile,
    /// The proxy was not started from a config file (`serve --dev`).
    #[error("the proxy was not started from a config file")]
    NoConfigFile,
    /// A tenant of the config file itself (read-only here), or a name taken by another id.
    #[error("{0}")]
    Conflict(String),
    #[error("no tenant named '{0}' is in the tenants file")]
    NotFound(String),
    /// The changed config does not validate: each problem, named by the field of the change
    /// where it is one.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// Reading, locking or writing the tenants file failed.
    #[error("the tenants file {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The validated config could not be made into a running proxy.
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("the change stopped with a panic")]
    Panicked,
}

/// Make `change` in the tenants file and apply it (see the module docs). `who` is written to
/// the audit log with it.
pub(crate) async fn change(
    reloader: Option<&crate::reload::Reloader>,
    change: Change,
    who: &str,
) -> Result<Outcome, ChangeError> {
    let reloader = reloader.ok_or(ChangeError::NoConfigFile)?;
    let name = change.name().to_owned();
    let by = who.to_owned();
    let result = reloader
        .exclusive(move |locked| apply::change(locked, change, &by))
        .await
        .unwrap_or(Err(ChangeError::Panicked));
    match &result {
        Ok(outcome) => {
            tracing::info!(tenant = %name, outcome = outcome.action(), who, "tenants changed")
        }
        Err(err) => {
            tracing::warn!(tenant = %name, who, error = %err, "tenant change refused; nothing changed")
        }
    }
    result
}
