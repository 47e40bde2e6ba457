//! The tenants file on disk: read, parse into entries, render, write atomically, lock.
//!
//! The proxy writes the whole file on each change, so what it holds is always what the proxy
//! rendered or an operator wrote; comments an operator adds do not survive a change (the README
//! says so). Writes go to a temporary file in the same folder, are fsynced, and renamed over the
//! old one (then the folder is fsynced), so a reader (another replica's watcher, a restart) sees
//! the old file or the new one, never half of one. An advisory lock on `<file>.lock` serialises
//! writers across processes sharing the folder.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::entry::{EntryLimits, TenantEntry};

/// The first lines of a file the proxy writes.
const HEADER: &str =
    "# Tenants outside the config file, written by defender-proxy (the admin API and\n\
                      # consent onboarding). Edits are read on reload; comments are not kept.\n";

/// One `[[tenant]]` of the file, by name.
pub(super) type Entries = Vec<(String, TenantEntry)>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default, rename = "tenant")]
    tenants: Vec<DocTenant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocTenant {
    name: String,
    id: String,
    app: Option<String>,
    cloud: Option<String>,
    rate_limit: Option<EntryLimits>,
}

/// An exclusive advisory lock on the file's lock file, released when dropped.
pub(super) struct FileLock {
    _held: File,
}

/// Wait for the lock of the tenants file at `path` (other writers, in this process or another).
pub(super) fn lock(path: &Path) -> io::Result<FileLock> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(path))?;
    file.lock()?;
    Ok(FileLock { _held: file })
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// The file's text; empty when it does not exist yet.
pub(super) fn read(path: &Path) -> io::Result<String> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// The entries of `text`, in file order. Only the shape is checked here (the config's
/// validation judges the values).
pub(super) fn parse(text: &str) -> Result<Entries, String> {
    let doc: Doc = toml::from_str(text).map_err(|e| e.message().trim().replace('\n', "; "))?;
    Ok(doc
        .tenants
        .into_iter()
        .map(|t| {
            let entry = TenantEntry {
                id: t.id,
                app: t.app,
                cloud: t.cloud,
                rate_limit: t.rate_limit,
            };
            (t.name, entry)
        })
        .collect())
}

/// The file's text for `entries`.
pub(super) fn render(entries: &Entries) -> String {
    let mut text = String::from(HEADER);
    for (name, entry) in entries {
        text.push_str("\n[[tenant]]\n");
        line(&mut text, "name", &quote(name));
        line(&mut text, "id", &quote(&entry.id));
        if let Some(app) = &entry.app {
            line(&mut text, "app", &quote(app));
        }
        if let Some(cloud) = &entry.cloud {
            line(&mut text, "cloud", &quote(cloud));
        }
        if let Some(limits) = &entry.rate_limit {
            line(&mut text, "rate_limit", &inline_limits(limits));
        }
    }
    text
}

fn line(text: &mut String, key: &str, value: &str) {
    text.push_str(key);
    text.push_str(" = ");
    text.push_str(value);
    text.push('\n');
}

/// A TOML basic string. JSON's string escapes (`\"`, `\\`, `\n`, `\uXXXX`...) are all valid in
/// TOML basic strings, and serde_json never writes `\/`.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn inline_limits(limits: &EntryLimits) -> String {
    let numbers = [
        ("per_minute", limits.per_minute),
        ("per_hour", limits.per_hour),
        ("burst", limits.burst),
        ("max_queue", limits.max_queue),
    ];
    let strings = [("mode", &limits.mode), ("max_wait", &limits.max_wait)];
    let parts: Vec<String> = numbers
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k} = {v}")))
        .chain(
            strings
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} = {}", quote(v)))),
        )
        .collect();
    format!("{{ {} }}", parts.join(", "))
}

/// Replace the file at `path` with `text`, atomically: a temporary file in the same folder,
/// fsynced, renamed over it, then the folder fsynced. On failure the old file is untouched and
/// the temporary file removed.
pub(super) fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // The rename is durable once the folder is; not every filesystem lets a folder be opened.
    if let Ok(dir) = File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn render_parses_back_to_the_same_entries() {
        let entries = vec![
            (
                "acme".to_owned(),
                TenantEntry::of("11111111-2222-3333-4444-555555555555"),
            ),
            (
                "odd\"name\\\n".to_owned(),
                TenantEntry {
                    app: Some("own".into()),
                    cloud: Some("gov".into()),
                    rate_limit: Some(EntryLimits {
                        per_minute: Some(40),
                        mode: Some("reject".into()),
                        max_wait: Some("5s".into()),
                        ..EntryLimits::default()
                    }),
                    ..TenantEntry::of("22222222-2222-3333-4444-555555555555")
                },
            ),
        ];
        let text = render(&entries);
        assert_eq!(parse(&text).unwrap(), entries, "{text}");
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse(HEADER).unwrap(), vec![]);
    }

    #[test]
    fn parse_refuses_unknown_keys_and_missing_ids() {
        assert!(parse("[[tenant]]\nname = \"a\"\nid = \"x\"\ncolour = 1\n").is_err());
        assert!(parse("[[tenant]]\nname = \"a\"\n").is_err());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("dp-tenants-file-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tenants.toml");
        write_atomic(&path, "old").unwrap();
        // A folder where the temporary file should go makes the write fail.
        let temp = dir.join(format!(".tenants.toml.{}.tmp", std::process::id()));
        fs::create_dir_all(&temp).unwrap();
        assert!(write_atomic(&path, "new").is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        fs::remove_dir(&temp).unwrap();
        write_atomic(&path, "new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let left: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "only the tenants file: {left:?}");
        let _lock = lock(&path).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
