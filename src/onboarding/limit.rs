//! The callback's limit per client address: the onboarding listener faces the internet, and
//! each callback may cost a token request to Entra ID and a write of the tenants file.
//!
//! GCRA per client (one instant per address, no timer), in a map of bounded size: clients whose
//! allowance is whole again are forgotten when room is needed, and when every entry is still
//! busy (a flood from many addresses) new addresses are refused until one frees up: memory
//! stays bounded and the clients already known keep their allowance. An IPv6 client is keyed by
//! its /64, which one host usually has whole. Time is tokio's, so tests run it paused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::LockExt;

/// Callbacks per minute per client: a browser coming back after consent needs one or two.
pub(crate) const PER_MINUTE: u32 = 10;
/// Clients remembered at most.
pub(crate) const MAX_CLIENTS: usize = 4096;

/// The per-client limiter.
#[derive(Debug)]
pub(crate) struct ClientLimit {
    /// Client -> the instant its allowance is whole again (GCRA's theoretical arrival time).
    clients: Mutex<HashMap<IpAddr, Instant>>,
    /// Time one callback uses of the allowance.
    interval: Duration,
    /// How far ahead of now a client's instant may run: a burst of `per_minute`.
    tolerance: Duration,
    max_clients: usize,
}

impl ClientLimit {
    /// `per_minute` callbacks a minute (at once, or spread), for at most `max_clients` clients.
    pub(crate) fn new(per_minute: u32, max_clients: usize) -> Self {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        ClientLimit {
            clients: Mutex::new(HashMap::new()),
            interval,
            tolerance: interval * per_minute.max(1).saturating_sub(1),
            max_clients,
        }
    }

    /// Take one callback of `client`'s allowance at `now`, or say how long until there is one.
    pub(crate) fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = key_of(client);
        let mut clients = self.clients.locked();
        if !clients.contains_key(&key) && clients.len() >= self.max_clients {
            clients.retain(|_, whole_at| *whole_at > now);
            if clients.len() >= self.max_clients {
                return Err(self.interval);
            }
        }
        let whole_at = clients.get(&key).copied().unwrap_or(now).max(now);
        let earliest = whole_at.checked_sub(self.tolerance).unwrap_or(now);
        if earliest > now {
            return Err(earliest - now);
        }
        clients.insert(key, whole_at + self.interval);
        Ok(())
    }
}

/// The address a client is counted by: IPv4 as it is, IPv6 by its /64.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        let limit = ClientLimit::new(10, 16);
        let start = Instant::now();
        for _ in 0..10 {
            limit.check(ip("192.0.2.1"), start).unwrap();
        }
        assert_eq!(
            limit.check(ip("192.0.2.1"), start),
            Err(Duration::from_secs(6))
        );
        // Another client is not affected.
        limit.check(ip("192.0.2.2"), start).unwrap();
        let later = start + Duration::from_secs(6);
        limit.check(ip("192.0.2.1"), later).unwrap();
        assert!(limit.check(ip("192.0.2.1"), later).is_err());
        // A minute of quiet gives the whole allowance back.
        let quiet = later + Duration::from_secs(60);
        for _ in 0..10 {
            limit.check(ip("192.0.2.1"), quiet).unwrap();
        }
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let limit = ClientLimit::new(2, 16);
        let now = Instant::now();
        limit.check(ip("2001:db8:1:2::1"), now).unwrap();
        limit.check(ip("2001:db8:1:2:ffff::9"), now).unwrap();
        assert!(limit.check(ip("2001:db8:1:2::3"), now).is_err());
        limit.check(ip("2001:db8:1:3::1"), now).unwrap();
        limit.check(ip("::ffff:192.0.2.7"), now).unwrap();
        limit.check(ip("192.0.2.7"), now).unwrap();
        assert!(limit.check(ip("192.0.2.7"), now).is_err());
    }

    #[test]
    fn memory_is_bounded_and_idle_clients_make_room() {
        let limit = ClientLimit::new(10, 3);
        let now = Instant::now();
        for n in 1..=3 {
            limit.check(ip(&format!("192.0.2.{n}")), now).unwrap();
        }
        // Full of busy clients: a new one waits, the known ones go on.
        assert!(limit.check(ip("192.0.2.9"), now).is_err());
        limit.check(ip("192.0.2.1"), now).unwrap();
        assert_eq!(limit.clients.locked().len(), 3);
        // Once their allowance is whole again they are forgotten for the newcomer.
        let later = now + Duration::from_secs(13);
        limit.check(ip("192.0.2.9"), later).unwrap();
        assert!(limit.clients.locked().len() <= 3);
    }
}
