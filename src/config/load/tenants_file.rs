//! `[tenants] file`: `[[tenant]]` entries kept outside the config file (written by the admin API
//! and by consent onboarding), merged with the config's own.
//!
//! The file's tenants are appended to the config's before validation, so every rule that spans
//! tenants (unique names and ids, a client's tenant list, the clouds tenants use) sees them all.
//! Problems on them name the tenants file, its line and the tenant's place in it; a name or id
//! in both files names both places. A missing file is an empty list (it is made on the first
//! write); one that cannot be read or parsed is a problem like any other.

use std::path::{Path, PathBuf};

use super::{Problem, Validator};
use crate::config::raw::{self, KeyIndex, RawTenant, RawTenantsFile, RawTenantsSection};

/// The tenants file as read: where its tenants sit in the merged list, and its text and key
/// index for naming the line of a problem.
pub(super) struct FileTenants {
    /// Index of the file's first tenant in the merged list (the config's own come first).
    pub(super) first: usize,
    pub(super) path: PathBuf,
    text: String,
    index: KeyIndex,
}

impl FileTenants {
    /// `tenant[N]...` of the merged list as the tenants file numbers it, for N of the file.
    fn local_key(&self, key: &str) -> Option<String> {
        let rest = key.strip_prefix("tenant[")?;
        let close = rest.find(']')?;
        let n: usize = rest[..close].parse().ok()?;
        let local = n.checked_sub(self.first)?;
        Some(format!("tenant[{local}]{}", &rest[close + 1..]))
    }

    fn line_of(&self, key: &str) -> Option<usize> {
        let offset = super::offset_in(&self.index, key)?;
        Some(super::line_at(&self.text, offset))
    }
}

impl Validator<'_> {
    /// Reads `[tenants] file` (or takes the text the caller gave, see [`super::parse_with`]) and
    /// appends its tenants to `tenants`; the file's resolved path.
    pub(super) fn tenants_file(
        &mut self,
        section: Option<RawTenantsSection>,
        tenants: &mut Vec<RawTenant>,
    ) -> Option<PathBuf> {
        let path = self.resolve_watched(section?.file.as_deref()?);
        let text = match self.given_tenants {
            Some(given) => given.to_owned(),
            None => match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => {
                    self.problem(
                        "tenants.file",
                        format!("cannot read {}: {e}", path.display()),
                    );
                    return Some(path);
                }
            },
        };
        let (index, unknown) = raw::index_tenants_file(&text).unwrap_or_default();
        let file = FileTenants {
            first: tenants.len(),
            path: path.clone(),
            text,
            index,
        };
        for key in &unknown {
            let line = Some(super::line_at(&file.text, key.offset));
            self.push_in(&file.path, key.path.clone(), line, key.message.clone());
        }
        match toml::from_str::<RawTenantsFile>(&file.text) {
            Ok(parsed) if unknown.is_empty() => tenants.extend(parsed.tenants),
            Ok(_) => {}
            Err(e) if !unknown.is_empty() && e.message().starts_with("unknown field") => {}
            Err(e) => {
                let line = e.span().map(|s| super::line_at(&file.text, s.start));
                let message = e.message().trim().replace('\n', "; ");
                self.push_in(&file.path, String::new(), line, message);
            }
        }
        self.file_tenants = Some(file);
        Some(path)
    }

    /// A problem on `key` of the merged tenants that belongs to the tenants file, recorded
    /// there; `false` for every other key.
    pub(super) fn problem_in_file(&mut self, key: &str, message: &str) -> bool {
        let Some(file) = &self.file_tenants else {
            return false;
        };
        let Some(local) = file.local_key(key) else {
            return false;
        };
        let line = file.line_of(&local);
        let path = file.path.clone();
        self.push_in(&path, local, line, message.to_owned());
        true
    }

    fn push_in(&mut self, path: &Path, key: String, line: Option<usize>, message: String) {
        self.problems.push(Problem {
            file: Some(path.to_path_buf()),
            key,
            line,
            message,
        });
    }

    /// How a message names tenant `i` of the merged list: `tenant[i]`, or with a tenants file
    /// the file it is in and its place there.
    pub(super) fn tenant_label(&self, i: usize) -> String {
        match &self.file_tenants {
            None => format!("tenant[{i}]"),
            Some(file) => match i.checked_sub(file.first) {
                Some(local) => format!("tenant[{local}] of {}", file.path.display()),
                None => format!("tenant[{i}] of the config file"),
            },
        }
    }

    /// Whether tenant `i` of the merged list comes from the tenants file.
    pub(super) fn in_tenants_file(&self, i: usize) -> bool {
        self.file_tenants.as_ref().is_some_and(|f| i >= f.first)
    }
}
