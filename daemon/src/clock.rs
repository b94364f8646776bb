//! A monotonic clock as plain milliseconds, so timestamps fit in atomics.

use std::sync::OnceLock;
use std::time::Instant;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since the process first asked.
pub fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// How long the daemon has run (from its first use of the clock, at start).
pub fn uptime() -> std::time::Duration {
    epoch().elapsed()
}
