//! Wall-clock time in the units the replicated state and the status views
//! use. Floor 0: imports nothing of the crate.
//!
//! Wall time is for *reporting* (checkpoint ages, lag, incarnations); every
//! safety decision (leases, fences) runs on the monotonic clock instead, so a
//! clock step never lets a fenced writer write.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}
