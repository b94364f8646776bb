//! Logging: to the journal with structured fields when systemd connected stderr to it, plain
//! text on stderr otherwise. The level can change on reload.
//!
//! Fields named `model`, `request_id` and `provider` on an event become the journal fields
//! `MODEL=`, `REQUEST_ID=` and `PROVIDER=` (`journalctl -u inferd MODEL=smollm2`).

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Changes the log level of the running process.
pub struct LogHandle(reload::Handle<EnvFilter, Registry>);

impl LogHandle {
    pub fn set_level(&self, level: &str) {
        if let Err(e) = self.0.reload(filter(level)) {
            tracing::warn!("cannot change the log level: {e}");
        }
    }
}

/// The filter for inferd's own logs. ONNX Runtime logs warnings and errors to stderr through
/// its default logger: routing it through tracing would make it log at verbose level, which
/// costs a quarter of decode speed.
fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// systemd sets `JOURNAL_STREAM=dev:inode` for a unit whose stderr is the journal; a child
/// that inherited the variable but not the stream must not take it.
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream == format!("{}:{}", meta.dev(), meta.ino())
}

/// syslog's meaning of the levels (the crate's default makes info a notice).
fn priorities() -> PriorityMappings {
    PriorityMappings {
        error: Priority::Error,
        warn: Priority::Warning,
        info: Priority::Informational,
        debug: Priority::Debug,
        trace: Priority::Debug,
    }
}

/// Installs the global subscriber; call once, before anything logs.
pub fn init(level: &str) -> LogHandle {
    let (filter, handle) = reload::Layer::new(filter(level));
    let (journal, problem) = if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(l) => (
                Some(
                    l.with_field_prefix(None)
                        .with_syslog_identifier("inferd".into())
                        .with_priority_mappings(priorities()),
                ),
                None,
            ),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    // Colour for a person at a terminal only: not in a file `make run` is piped into.
    let plain = journal.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journal)
        .with(plain)
        .init();
    if let Some(e) = problem {
        tracing::warn!(
            "stderr is the journal but its socket is not reachable ({e}); logging plain text"
        );
    }
    LogHandle(handle)
}
