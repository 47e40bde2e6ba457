//! Responses counted by status code, for one (tenant, API), without a lock or an allocation per
//! request.
//!
//! A (tenant, API) sees a handful of distinct statuses over its life (200, 404, 429, 503, ...),
//! so a small fixed table of slots does: each slot is one `AtomicU64` holding the status in its
//! top bits and the count below. A slot is claimed once, by a compare-and-swap from empty, and
//! its status never changes after, so a request finds its slot by a scan of loads and counts
//! with one `fetch_add`. Statuses beyond [`SLOTS`] distinct ones (not seen in practice) go to a
//! locked list, so they are counted too rather than lumped or lost.

use crate::sync::LockExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Whether a response says the tenant's service is unwell, for the tenant status's `errors`:
/// 401 and 403 (a token or permission problem), 429 (over Defender's or the proxy's limits) and
/// every 5xx (the API failing, or the proxy without a token or upstream). Other 4xx are the
/// client's own mistakes (a bad path, an unknown id) and say nothing about the tenant.
pub(crate) fn is_error_status(status: u16) -> bool {
    matches!(status, 401 | 403 | 429) || status >= 500
}

/// Distinct statuses counted lock-free per (tenant, API): 128 bytes, two cache lines.
pub(crate) const SLOTS: usize = 16;

/// Bits of a slot that hold the count; the status sits above them. 2^48 requests is nine years
/// at a million a second.
const COUNT_BITS: u32 = 48;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// One (tenant, API)'s responses by status; see the module docs.
#[derive(Debug, Default)]
pub struct StatusCounts {
    /// `status << COUNT_BITS | count`; `0` is a free slot (no status is 0). Claimed in order,
    /// so the first free slot ends the used ones.
    slots: [AtomicU64; SLOTS],
    /// Statuses that found every slot taken by others: (status, count).
    overflow: Mutex<Vec<(u16, u64)>>,
}

impl StatusCounts {
    /// One response with `status`.
    pub fn record(&self, status: u16) {
        let tag = u64::from(status) << COUNT_BITS;
        for slot in &self.slots {
            let mut seen = slot.load(Ordering::Relaxed);
            if seen == 0 {
                match slot.compare_exchange(0, tag | 1, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => return,
                    // Another request claimed it first, perhaps for this same status.
                    Err(now) => seen = now,
                }
            }
            if seen & !COUNT_MASK == tag {
                slot.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut overflow = self.overflow.locked();
        match overflow.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => overflow.push((status, 1)),
        }
    }

    /// Nothing counted yet (slots are claimed in order, so the first one tells).
    pub(crate) fn is_empty(&self) -> bool {
        self.slots[0].load(Ordering::Relaxed) == 0 && self.overflow.locked().is_empty()
    }

    /// (status, count) of every status seen, by status.
    pub(crate) fn counts(&self) -> Vec<(u16, u64)> {
        let mut counts: Vec<(u16, u64)> = self
            .slots
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .take_while(|&v| v != 0)
            .map(|v| ((v >> COUNT_BITS) as u16, v & COUNT_MASK))
            .collect();
        counts.extend(self.overflow.locked().iter().copied());
        counts.sort_unstable();
        counts
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn counts_each_status_apart_also_past_the_slots() {
        let c = StatusCounts::default();
        for status in (200..200 + SLOTS as u16 + 3).rev() {
            c.record(status);
        }
        c.record(200);
        c.record(215);
        c.record(218);
        let counts = c.counts();
        assert_eq!(counts.len(), SLOTS + 3);
        assert_eq!(counts[0], (200, 2));
        assert_eq!(counts[15], (215, 2), "a slot");
        assert_eq!(
            counts[18],
            (218, 2),
            "overflow (the first claimed the slots)"
        );
        assert!(counts.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
    }

    #[test]
    fn concurrent_first_requests_of_one_status_share_its_slot() {
        let c = Arc::new(StatusCounts::default());
        let threads: Vec<_> = (0..4u16)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u32 {
                        c.record(if i % 2 == 0 { 200 } else { 404 + t });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let counts = c.counts();
        assert_eq!(counts[0], (200, 20_000));
        assert_eq!(
            counts[1..],
            [(404, 5_000), (405, 5_000), (406, 5_000), (407, 5_000)]
        );
    }

    #[test]
    fn a_tenant_and_api_costs_160_bytes() {
        // The slots (128) and the overflow list's empty mutex and Vec (32).
        assert_eq!(std::mem::size_of::<StatusCounts>(), 160);
    }
}
