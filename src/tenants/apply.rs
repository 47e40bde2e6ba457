//! One change of the tenants file, made under the reload lock (see the module docs).

use std::path::Path;

use super::file::{self, Entries};
use super::{Change, ChangeError, Outcome};
use crate::config::{self, ConfigErrors, Problem, TenantSource};
use crate::reload::Locked;

/// Blocking: reads and writes files. Runs on the blocking pool under the reload lock.
pub(super) fn change(
    locked: &Locked<'_>,
    change: Change,
    who: &str,
) -> Result<Outcome, ChangeError> {
    let running = locked.proxy.config.load_full();
    let path = running.tenants_file.clone().ok_or(ChangeError::NoFile)?;
    let name = change.name().to_owned();
    if let Some(t) = running.tenants.iter().find(|t| t.name == name) {
        if t.source == TenantSource::Config {
            return Err(ChangeError::Conflict(format!(
                "tenant '{name}' is in the config file, so it can only be changed there"
            )));
        }
    }
    let io = |source| ChangeError::Io {
        path: path.clone(),
        source,
    };
    let _lock = file::lock(&path).map_err(io)?;
    let old_text = file::read(&path).map_err(io)?;
    let mut entries = file::parse(&old_text).map_err(|message| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            message,
        ))
    })?;
    let (outcome, at) = edit(&mut entries, change)?;
    if outcome == Outcome::AlreadyThere {
        return Ok(outcome);
    }
    let new_text = file::render(&entries);
    let main = std::fs::read_to_string(locked.path).map_err(|source| ChangeError::Io {
        path: locked.path.to_path_buf(),
        source,
    })?;
    let env = |name: &str| std::env::var(name).ok();
    let config = config::parse_with(&main, locked.path, &env, Some(&new_text))
        .map_err(|errors| ChangeError::Invalid(by_field(errors, &path, at)))?;
    file::write_atomic(&path, &new_text).map_err(io)?;
    if let Err(err) = locked.apply(config) {
        // The running config stays: so must the file it was read from.
        if let Err(e) = file::write_atomic(&path, &old_text) {
            tracing::error!(file = %path.display(), error = %e, "cannot restore the tenants file after a failed change");
        }
        return Err(match err {
            crate::reload::ReloadError::Build(e) => ChangeError::Build(e),
            _ => ChangeError::Panicked,
        });
    }
    if let Some(audit) = &locked.proxy.snapshot.load().audit {
        audit.record_change(who, outcome.action(), &name);
    }
    Ok(outcome)
}

/// Apply `change` to `entries`: what it did, and the index of the changed entry (for naming
/// fields in problems).
fn edit(entries: &mut Entries, change: Change) -> Result<(Outcome, Option<usize>), ChangeError> {
    let found = entries.iter().position(|(n, _)| *n == change.name());
    match (change, found) {
        (Change::Put { entry, .. }, Some(i)) => {
            entries[i].1 = entry;
            Ok((Outcome::Replaced, Some(i)))
        }
        (Change::Put { name, entry } | Change::Add { name, entry }, None) => {
            entries.push((name, entry));
            Ok((Outcome::Created, Some(entries.len() - 1)))
        }
        (Change::Add { name, entry }, Some(i)) => {
            if entries[i].1.id.eq_ignore_ascii_case(&entry.id) {
                Ok((Outcome::AlreadyThere, Some(i)))
            } else {
                Err(ChangeError::Conflict(format!(
                    "a tenant named '{name}' already exists with another id"
                )))
            }
        }
        (Change::Delete { .. }, Some(i)) => {
            entries.remove(i);
            Ok((Outcome::Deleted, None))
        }
        (Change::Delete { name }, None) => Err(ChangeError::NotFound(name)),
    }
}

/// The problems of a change, those of the changed tenant named by its field (`id`,
/// `rate_limit.per_minute`) as the admin API's body spells them.
fn by_field(errors: ConfigErrors, path: &Path, at: Option<usize>) -> ConfigErrors {
    let prefix = at.map(|i| format!("tenant[{i}]"));
    let problems = errors
        .problems
        .into_iter()
        .map(|p| {
            let in_file = p.file.as_deref() == Some(path);
            let field = prefix
                .as_deref()
                .filter(|_| in_file)
                .and_then(|prefix| p.key.strip_prefix(prefix))
                .map(|rest| rest.trim_start_matches('.').to_owned());
            match field {
                Some(field) => Problem {
                    file: None,
                    key: field,
                    line: None,
                    message: p.message,
                },
                None => p,
            }
        })
        .collect();
    ConfigErrors { problems }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tenants::TenantEntry;

    #[test]
    fn edits_say_what_they_did() {
        let mut entries: Entries = vec![];
        let put = |name: &str, id: &str| Change::Put {
            name: name.into(),
            entry: TenantEntry::of(id),
        };
        let add = |name: &str, id: &str| Change::Add {
            name: name.into(),
            entry: TenantEntry::of(id),
        };
        assert_eq!(
            edit(&mut entries, put("a", "1")).unwrap(),
            (Outcome::Created, Some(0))
        );
        assert_eq!(
            edit(&mut entries, put("b", "2")).unwrap(),
            (Outcome::Created, Some(1))
        );
        assert_eq!(
            edit(&mut entries, put("a", "3")).unwrap(),
            (Outcome::Replaced, Some(0))
        );
        assert_eq!(entries[0].1.id, "3");
        assert_eq!(
            edit(&mut entries, add("a", "3")).unwrap().0,
            Outcome::AlreadyThere
        );
        assert!(matches!(
            edit(&mut entries, add("a", "4")),
            Err(ChangeError::Conflict(_))
        ));
        let delete = |name: &str| Change::Delete { name: name.into() };
        assert_eq!(edit(&mut entries, delete("a")).unwrap().0, Outcome::Deleted);
        assert!(matches!(
            edit(&mut entries, delete("a")),
            Err(ChangeError::NotFound(_))
        ));
        assert_eq!(entries.len(), 1);
    }
}
