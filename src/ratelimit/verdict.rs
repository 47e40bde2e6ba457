//! What one limit decision said, whichever backend made it.
//!
//! A leaf of its own: the Redis backend (`redis_backend.rs`) returns it and the tenant limiter
//! (`tenant.rs`) combines it with the local decision and the pause, so neither has to import the
//! other for it.

use std::time::Duration;

use super::local::Refusal;

/// What one decision said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Admit,
    OverLimit(Refusal),
    Paused(Duration),
}
