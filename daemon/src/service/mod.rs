//! The systemd service contract: readiness, status lines, the watchdog, reload and stop.
//!
//! Everything here is a no-op when systemd did not start us (no `NOTIFY_SOCKET`), so the same
//! binary runs in a terminal, in tests and under systemd.

mod notify;
mod status;
mod watchdog;

pub use notify::Notifier;
pub use status::{Notes, StatusLine};
pub use watchdog::spawn as spawn_watchdog;

/// What the process asks of the running daemon (from signals, in `main.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// SIGHUP: re-read the config and rescan the model repository.
    Reload,
    /// SIGTERM or SIGINT: drain and exit.
    Stop,
}
