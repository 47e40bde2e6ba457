//! `[cache]`: the short response cache (see [`crate::share`]); off unless `ttl` is written.

use std::time::Duration;

use super::Validator;
use crate::config::raw::RawCache;
use crate::config::CacheConfig;

impl Validator<'_> {
    pub(super) fn cache(&mut self, raw: Option<RawCache>) -> CacheConfig {
        let defaults = CacheConfig::default();
        let Some(raw) = raw else {
            return defaults;
        };
        let ttl = raw
            .ttl
            .and_then(|ttl| self.duration("cache.ttl", Some(ttl), Duration::ZERO));
        let max_entry_bytes = self.cache_bytes(
            "cache.max_entry_bytes",
            raw.max_entry_bytes,
            defaults.max_entry_bytes,
        );
        let max_bytes_per_tenant = self.cache_bytes(
            "cache.max_bytes_per_tenant",
            raw.max_bytes_per_tenant,
            defaults.max_bytes_per_tenant,
        );
        if max_entry_bytes > max_bytes_per_tenant {
            self.problem(
                "cache.max_entry_bytes",
                format!("must not exceed cache.max_bytes_per_tenant ({max_bytes_per_tenant})"),
            );
        }
        CacheConfig {
            ttl,
            max_entry_bytes,
            max_bytes_per_tenant,
        }
    }

    fn cache_bytes(&mut self, key: &str, value: Option<i64>, default: u64) -> u64 {
        match value.map(u64::try_from) {
            None => default,
            Some(Ok(v)) if v > 0 => v,
            Some(_) => {
                self.problem(key, "must be a number of bytes greater than zero");
                default
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;
    use std::time::Duration;

    use crate::config::parse_str;

    const BASE: &str = r#"
[app]
client_id = "11111111-2222-3333-4444-555555555555"
client_secret = { env = "SECRET" }

[[tenant]]
name = "contoso"
id = "22222222-2222-3333-4444-555555555555"
"#;

    fn parse(extra: &str) -> Result<crate::config::Config, crate::config::ConfigErrors> {
        parse_str(
            &format!("{BASE}\n{extra}"),
            Path::new("proxy.toml"),
            &|_| Some("s3cret".into()),
        )
    }

    #[test]
    fn off_by_default_and_read_when_written() {
        assert_eq!(parse("").unwrap().cache.ttl, None);
        let cache = parse("[cache]\nttl = \"15s\"\nmax_entry_bytes = 1000")
            .unwrap()
            .cache;
        assert_eq!(cache.ttl, Some(Duration::from_secs(15)));
        assert_eq!(cache.max_entry_bytes, 1000);
        assert_eq!(cache.max_bytes_per_tenant, 16 * 1024 * 1024);
    }

    #[test]
    fn problems_name_key_and_line() {
        let errors = parse(
            "[cache]\nttl = \"0s\"\nmax_entry_bytes = -1\nmax_bytes_per_tenant = 0\nnope = 1",
        )
        .unwrap_err();
        let keys: Vec<(&str, Option<usize>)> = errors
            .problems
            .iter()
            .map(|p| (p.key.as_str(), p.line))
            .collect();
        assert!(keys.iter().any(|(k, _)| *k == "cache.nope"), "{keys:?}");
        let errors = parse("[cache]\nttl = \"0s\"\nmax_entry_bytes = -1\nmax_bytes_per_tenant = 0")
            .unwrap_err();
        let keys: Vec<(&str, Option<usize>)> = errors
            .problems
            .iter()
            .map(|p| (p.key.as_str(), p.line))
            .collect();
        for key in [
            "cache.ttl",
            "cache.max_entry_bytes",
            "cache.max_bytes_per_tenant",
        ] {
            assert!(
                keys.iter().any(|(k, line)| *k == key && line.is_some()),
                "{key}: {keys:?}"
            );
        }
    }
}
