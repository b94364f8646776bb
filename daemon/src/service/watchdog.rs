//! Watchdog pings that mean "every model worker is alive", not just "the process exists".
//!
//! Each tick probes every serving worker; a worker answers when it next comes back to its queue
//! (at once when idle, between batches or decode steps when busy). A probe still unanswered at
//! the next tick means that worker is wedged: pings stop, and systemd restarts the service
//! after `WatchdogSec`.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::{Notes, Notifier};
use crate::engine::Engine;

/// Starts pinging at half of `WATCHDOG_USEC` when systemd asked for it (for this pid).
pub fn spawn(engine: Engine, notifier: Notifier, notes: Notes) -> Option<JoinHandle<()>> {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let period = (Duration::from_micros(usec) / 2).max(Duration::from_millis(10));
    tracing::info!(
        period_ms = period.as_millis() as u64,
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let late: Vec<(String, Duration)> = engine
                .probe_workers()
                .into_iter()
                .filter(|(_, age)| *age >= period / 2)
                .collect();
            if late.is_empty() {
                notes.set_wedged(Vec::new());
                notifier.watchdog();
            } else {
                notes.set_wedged(late);
            }
        }
    }))
}
