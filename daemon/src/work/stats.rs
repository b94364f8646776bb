//! Counters kept per model across its versions: what `ListModels`, `Health()` and the budget
//! read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Counters kept per queue, read by `ListModels`.
#[derive(Debug, Default)]
pub struct Stats {
    pub served: AtomicU64,
    pub skipped: AtomicU64,
    pub timed_out: AtomicU64,
    pub rejected: AtomicU64,
    /// Requests the worker is running now: a batch's, or the sequences a generation worker
    /// is decoding.
    pub active: AtomicU64,
    /// Tokens decoded in steps shared with other sequences (continuous batching).
    pub batched_tokens: AtomicU64,
    /// Text generation: KV cache bytes the running sequences and the prefix cache take.
    pub kv_bytes_in_use: AtomicU64,
    /// When the model last took a request, as milliseconds of `crate::clock`.
    pub last_used_ms: AtomicU64,
    /// The most recent failed request, with its id.
    pub last_error: Mutex<Option<String>>,
}

impl Stats {
    pub fn touch(&self) {
        self.last_used_ms
            .store(crate::clock::now_ms(), Ordering::Relaxed);
    }

    /// Seconds since the model last took a request.
    pub fn idle(&self) -> Duration {
        let used = self.last_used_ms.load(Ordering::Relaxed);
        Duration::from_millis(crate::clock::now_ms().saturating_sub(used))
    }

    /// Only the kind and the id: `Health()` is open to every client, and the message (which
    /// may quote another client's input) is in the log under the same id.
    pub fn failed(&self, request_id: &str, e: &crate::error::Error) {
        let msg = format!("{} (request {request_id})", e.kind());
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
