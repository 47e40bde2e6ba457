//! One way to take a lock. A `Mutex` is poisoned when a holder panicked; the proxy's locks guard
//! state that every writer leaves consistent between statements (maps, counters, the slot's
//! state), so the guard is taken anyway rather than turning one panic into a panic of every
//! later caller.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) trait LockExt<T> {
    /// The guard, poisoned or not.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> LockExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
