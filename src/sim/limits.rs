//! Defender's documented per-tenant API limits, enforced like the real service so the proxy's
//! own limiter and its handling of upstream `429` + `Retry-After` can be tested for real.
//!
//! A sliding-window log per (tenant, class): exact, and small enough (at most 1,500 instants per
//! window) for a simulator. Only admitted requests count, as with the real API.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// Which limit family an API path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    /// `/api/incidents` (Defender XDR): 50/minute, 1,500/hour.
    Incidents,
    /// `/api/advancedhunting/run` (Defender XDR): 45/minute.
    Hunting,
    /// `/api/advancedqueries/run` (Defender for Endpoint): 45/minute, 1,500/hour.
    AdvancedQueries,
    /// `/api/machines`, `/api/alerts` (Defender for Endpoint): 100/minute, 1,500/hour.
    Machines,
    /// `/v1.0/security/...` (the Graph security API): 150/minute.
    Graph,
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

impl Class {
    /// The (count, window) pairs that apply.
    pub(crate) fn limits(self) -> &'static [(usize, Duration)] {
        match self {
            Class::Incidents => &[(50, MINUTE), (1500, HOUR)],
            Class::Hunting => &[(45, MINUTE)],
            Class::AdvancedQueries => &[(45, MINUTE), (1500, HOUR)],
            Class::Machines => &[(100, MINUTE), (1500, HOUR)],
            Class::Graph => &[(150, MINUTE)],
        }
    }

    /// The class of an API path, if it is rate limited.
    pub(crate) fn of_path(path: &str) -> Option<Class> {
        let p = path.to_ascii_lowercase();
        if p == "/api/incidents" || p.starts_with("/api/incidents/") {
            Some(Class::Incidents)
        } else if p == "/api/advancedhunting/run" {
            Some(Class::Hunting)
        } else if p == "/api/advancedqueries/run" {
            Some(Class::AdvancedQueries)
        } else if p.starts_with("/v1.0/security/") || p.starts_with("/beta/security/") {
            Some(Class::Graph)
        } else if p == "/api/machines"
            || p.starts_with("/api/machines/")
            || p == "/api/alerts"
            || p.starts_with("/api/alerts/")
        {
            Some(Class::Machines)
        } else {
            None
        }
    }
}

/// Per (tenant id, class) request logs.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    logs: HashMap<(String, Class), VecDeque<Instant>>,
}

impl Limiter {
    /// Admits and counts a request, or returns the whole seconds to wait (at least 1).
    pub(crate) fn check(&mut self, tenant: &str, class: Class, now: Instant) -> Result<(), u64> {
        let log = self
            .logs
            .entry((tenant.to_ascii_lowercase(), class))
            .or_default();
        let longest = class.limits().iter().map(|l| l.1).max().unwrap_or(HOUR);
        while log
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= longest)
        {
            log.pop_front();
        }
        let mut wait = Duration::ZERO;
        for &(limit, window) in class.limits() {
            let in_window = log
                .iter()
                .rev()
                .take_while(|t| now.saturating_duration_since(**t) < window)
                .count();
            if in_window >= limit {
                // The request that has to age out of the window before one more fits.
                let oldest = log[log.len() - limit];
                let free_at = oldest + window;
                wait = wait.max(free_at.saturating_duration_since(now));
            }
        }
        if wait > Duration::ZERO {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(secs.max(1));
        }
        log.push_back(now);
        Ok(())
    }

    /// Forgets all windows.
    pub(crate) fn clear(&mut self) {
        self.logs.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn minute_limit_and_retry_after() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..50 {
            assert!(l
                .check("T", Class::Incidents, t0 + Duration::from_millis(i))
                .is_ok());
        }
        assert_eq!(
            l.check("t", Class::Incidents, t0 + Duration::from_secs(1)),
            Err(59)
        );
        // Other tenants and classes are unaffected.
        assert!(l.check("u", Class::Incidents, t0).is_ok());
        assert!(l.check("t", Class::Machines, t0).is_ok());
        // Once the first request ages out, one more fits.
        assert!(l.check("t", Class::Incidents, t0 + MINUTE).is_ok());
    }

    #[test]
    fn hour_limit() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..1500u64 {
            let at = t0 + Duration::from_secs(i * 2); // 30/minute, under the minute limit
            assert!(l.check("t", Class::Machines, at).is_ok(), "request {i}");
        }
        let wait = l
            .check("t", Class::Machines, t0 + Duration::from_secs(3000))
            .unwrap_err();
        assert_eq!(wait, 600);
    }

    #[test]
    fn classes() {
        assert_eq!(Class::of_path("/api/incidents"), Some(Class::Incidents));
        assert_eq!(
            Class::of_path("/api/advancedhunting/run"),
            Some(Class::Hunting)
        );
        assert_eq!(Class::of_path("/api/machines/abc"), Some(Class::Machines));
        assert_eq!(
            Class::of_path("/api/AdvancedQueries/run"),
            Some(Class::AdvancedQueries)
        );
        assert_eq!(
            Class::of_path("/v1.0/security/runHuntingQuery"),
            Some(Class::Graph)
        );
        assert_eq!(Class::of_path("/v1.0/me"), None);
        assert_eq!(Class::of_path("/api/_test/echo"), None);
    }
}
