//! A tenant's requests and error statuses in the last few minutes, for the status page: the
//! counters since the start cannot tell a tenant that failed this morning from one failing now.
//!
//! A ring of per-minute cells, each one `AtomicU64`: the minute (unix minutes, low 24 bits) in
//! the top bits, then the requests and the errors in 20 bits each. A request costs a load and a
//! `fetch_add` on its minute's cell (the same cache line as the tenant's other counters' work);
//! the first request of a minute claims the cell it held [`CELLS`] minutes ago with one
//! compare-and-swap. A minute's counts stop near 2^20 (a million requests of one tenant in one
//! minute) rather than spill into the next field.

use std::sync::atomic::{AtomicU64, Ordering};

/// The window the status reports: this minute so far and the four before it.
pub(crate) const MINUTES: u64 = 5;
/// Cells in the ring: more than [`MINUTES`], a power of two so the index is a mask.
const CELLS: usize = 8;

const COUNT_BITS: u32 = 20;
const FIELD: u64 = (1 << COUNT_BITS) - 1;
const MINUTE_SHIFT: u32 = 2 * COUNT_BITS;
const MINUTE_MASK: u64 = (1 << (64 - MINUTE_SHIFT)) - 1;
/// A cell stops counting here: the margin leaves room for the requests that loaded the cell
/// before it got there and add after.
const SATURATED: u64 = FIELD - (1 << 12);

/// Requests and errors per minute of the last [`CELLS`] minutes.
#[derive(Debug, Default)]
pub(crate) struct RecentCounts {
    cells: [AtomicU64; CELLS],
}

/// How many minutes `minute` is after the cell's (modulo the stored bits): 0 for the same minute,
/// huge for a cell of a later minute (the clock stepped back).
fn age(minute: u64, cell: u64) -> u64 {
    minute.wrapping_sub(cell >> MINUTE_SHIFT) & MINUTE_MASK
}

impl RecentCounts {
    /// One request ended in unix minute `minute`; `error`: its status counts as an error.
    pub(crate) fn record(&self, minute: u64, error: bool) {
        let cell = &self.cells[(minute as usize) & (CELLS - 1)];
        let add = (1 << COUNT_BITS) | u64::from(error);
        let mut seen = cell.load(Ordering::Relaxed);
        loop {
            match age(minute, seen) {
                0 => {
                    if (seen >> COUNT_BITS) & FIELD < SATURATED {
                        cell.fetch_add(add, Ordering::Relaxed);
                    }
                    return;
                }
                // A cell a later minute holds: this request's clock is behind; not counted.
                a if a > MINUTE_MASK / 2 && seen != 0 => return,
                _ => {}
            }
            let fresh = ((minute & MINUTE_MASK) << MINUTE_SHIFT) | add;
            match cell.compare_exchange_weak(seen, fresh, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => seen = now,
            }
        }
    }

    /// (requests, errors) in the [`MINUTES`] minutes up to unix minute `now`, this one included.
    pub(crate) fn sum(&self, now: u64) -> (u64, u64) {
        let mut sum = (0, 0);
        for cell in &self.cells {
            let v = cell.load(Ordering::Relaxed);
            if v != 0 && age(now, v) < MINUTES {
                sum.0 += (v >> COUNT_BITS) & FIELD;
                sum.1 += v & FIELD;
            }
        }
        sum
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const T: u64 = 29_000_000; // a unix minute in 2025

    #[test]
    fn counts_the_last_five_minutes_only() {
        let r = RecentCounts::default();
        r.record(T, false);
        r.record(T, true);
        r.record(T + 3, true);
        r.record(T + 4, false);
        assert_eq!(r.sum(T + 4), (4, 2));
        assert_eq!(r.sum(T + 5), (2, 1), "minute T has left the window");
        assert_eq!(r.sum(T + 9), (0, 0));
        assert_eq!(r.sum(T - 1), (0, 0), "nothing from the future");
    }

    #[test]
    fn a_cell_is_reused_eight_minutes_later_and_a_late_clock_changes_nothing() {
        let r = RecentCounts::default();
        r.record(T, true);
        r.record(T + 8, false);
        assert_eq!(r.sum(T + 8), (1, 0), "minute T's counts were replaced");
        r.record(T, true);
        assert_eq!(
            r.sum(T + 8),
            (1, 0),
            "a stepped-back clock does not reclaim the cell"
        );
    }

    #[test]
    fn a_minute_saturates_instead_of_spilling() {
        let r = RecentCounts::default();
        for _ in 0..FIELD + 10 {
            r.record(T, true);
        }
        let (requests, errors) = r.sum(T);
        assert_eq!((requests, errors), (SATURATED, SATURATED));
        assert_eq!(
            r.cells[(T as usize) & (CELLS - 1)].load(Ordering::Relaxed) >> MINUTE_SHIFT,
            T & MINUTE_MASK
        );
    }

    #[test]
    fn concurrent_requests_across_a_minute_boundary_are_all_counted() {
        let r = Arc::new(RecentCounts::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        r.record(T + i / 5_000, (i + t) % 2 == 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(r.sum(T + 1), (40_000, 20_000));
    }
}
