//! What `ListModels` says about each model, as a typed struct and as its `a{sv}` wire form.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;
use zbus::zvariant::{OwnedValue, Value};

/// Lifecycle of a model in the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    Loading,
    Ready,
    Failed,
    #[default]
    Unloaded,
}

impl ModelState {
    pub const ALL: [ModelState; 4] = [Self::Loading, Self::Ready, Self::Failed, Self::Unloaded];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Loading => "loading",
            ModelState::Ready => "ready",
            ModelState::Failed => "failed",
            ModelState::Unloaded => "unloaded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for ModelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `ListModels`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelStatus {
    pub name: String,
    /// Manifest kind: `embedding`, `tensor`, …
    pub kind: String,
    pub state: ModelState,
    /// Execution provider in use (`cpu`, `cuda`, `tensorrt`); empty until loaded.
    pub provider: String,
    /// Why the model failed, or why a GPU provider was skipped.
    pub error: Option<String>,
    /// Why the provider in use is not the first one listed (GPU providers that failed).
    pub note: Option<String>,
    /// Requests waiting in the queue now.
    pub queue_depth: u32,
    /// Requests answered by the worker.
    pub served: u64,
    /// Requests dropped because their caller had gone.
    pub skipped: u64,
    /// Requests that passed their deadline while queued.
    pub timed_out: u64,
    /// Requests refused because the queue was full.
    pub rejected: u64,
    /// Sequences being generated now (text-generation models).
    pub active: u32,
    /// Tokens decoded in steps shared with other sequences (continuous batching).
    pub batched_tokens: u64,
    /// Seconds a TensorRT engine has been building; the model serves on `provider` meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_build_s: Option<u64>,
    /// Memory the model took when it loaded, measured (RSS growth, or GPU memory on a GPU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Where that memory is: `host`, or `gpu:N` for a session on CUDA device N.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_pool: Option<String>,
    /// Ready text-generation models: what their KV caches take.
    #[serde(flatten)]
    pub kv: Option<KvCache>,
    /// Seconds since the model last took a request (or loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_s: Option<u64>,
    /// The most recent failed request: its error and request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What a text-generation model's KV caches take; on the wire, keys of its `ListModels` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KvCache {
    /// At most (`generation.kv_cache_tokens`), part of `memory_bytes` from the load on.
    pub kv_cache_bytes: u64,
    /// Bytes one token takes (every layer's keys and values).
    pub kv_bytes_per_token: u64,
    /// Taken now, by the running sequences (each its whole prompt + `max_tokens`, reserved
    /// when it starts) and the prompt-prefix cache.
    pub kv_bytes_in_use: u64,
    /// Streams of the full context length that fit in `kv_cache_bytes` at once.
    pub full_context_streams: u32,
}

/// `2m10s`, `45s`, `1h02m`: how `inferctl` and the service status show an elapsed time.
pub fn elapsed(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// An `a{sv}` as zbus gives and takes it.
pub(crate) type Dict = HashMap<String, OwnedValue>;

pub(crate) fn put<'a>(d: &mut Dict, key: &str, v: impl Into<Value<'a>>) {
    let v: Value<'a> = v.into();
    // Plain values (no file descriptors) always convert.
    if let Ok(ov) = v.try_to_owned() {
        d.insert(key.to_owned(), ov);
    }
}

pub(crate) fn put_some<'a>(d: &mut Dict, key: &str, v: Option<impl Into<Value<'a>>>) {
    if let Some(v) = v {
        put(d, key, v);
    }
}

pub(crate) fn get<T: TryFrom<OwnedValue>>(d: &Dict, key: &str) -> Option<T> {
    d.get(key)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| T::try_from(v).ok())
}

impl ModelStatus {
    pub fn to_dict(&self) -> Dict {
        let mut d = Dict::new();
        put(&mut d, "name", self.name.as_str());
        put(&mut d, "kind", self.kind.as_str());
        put(&mut d, "state", self.state.as_str());
        put(&mut d, "provider", self.provider.as_str());
        put_some(&mut d, "error", self.error.as_deref());
        put_some(&mut d, "note", self.note.as_deref());
        put(&mut d, "queue_depth", self.queue_depth);
        put(&mut d, "served", self.served);
        put(&mut d, "skipped", self.skipped);
        put(&mut d, "timed_out", self.timed_out);
        put(&mut d, "rejected", self.rejected);
        put(&mut d, "active", self.active);
        put(&mut d, "batched_tokens", self.batched_tokens);
        put_some(&mut d, "engine_build_s", self.engine_build_s);
        put_some(&mut d, "memory_bytes", self.memory_bytes);
        put_some(&mut d, "memory_pool", self.memory_pool.as_deref());
        if let Some(kv) = &self.kv {
            put(&mut d, "kv_cache_bytes", kv.kv_cache_bytes);
            put(&mut d, "kv_bytes_per_token", kv.kv_bytes_per_token);
            put(&mut d, "kv_bytes_in_use", kv.kv_bytes_in_use);
            put(&mut d, "full_context_streams", kv.full_context_streams);
        }
        put_some(&mut d, "idle_s", self.idle_s);
        put_some(&mut d, "last_error", self.last_error.as_deref());
        d
    }

    /// Reads a row; unknown keys are ignored so newer daemons stay readable.
    pub fn from_dict(d: &Dict) -> Result<Self, String> {
        let name: String = get(d, "name").ok_or("model entry without a name")?;
        let state: String = get(d, "state").unwrap_or_default();
        Ok(ModelStatus {
            kind: get(d, "kind").unwrap_or_default(),
            state: ModelState::parse(&state)
                .ok_or_else(|| format!("model {name}: unknown state {state:?}"))?,
            provider: get(d, "provider").unwrap_or_default(),
            error: get(d, "error"),
            note: get(d, "note"),
            queue_depth: get(d, "queue_depth").unwrap_or_default(),
            served: get(d, "served").unwrap_or_default(),
            skipped: get(d, "skipped").unwrap_or_default(),
            timed_out: get(d, "timed_out").unwrap_or_default(),
            rejected: get(d, "rejected").unwrap_or_default(),
            active: get(d, "active").unwrap_or_default(),
            batched_tokens: get(d, "batched_tokens").unwrap_or_default(),
            engine_build_s: get(d, "engine_build_s"),
            memory_bytes: get(d, "memory_bytes"),
            memory_pool: get(d, "memory_pool"),
            kv: get(d, "kv_cache_bytes").map(|kv_cache_bytes| KvCache {
                kv_cache_bytes,
                kv_bytes_per_token: get(d, "kv_bytes_per_token").unwrap_or_default(),
                kv_bytes_in_use: get(d, "kv_bytes_in_use").unwrap_or_default(),
                full_context_streams: get(d, "full_context_streams").unwrap_or_default(),
            }),
            idle_s: get(d, "idle_s"),
            last_error: get(d, "last_error"),
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dict_round_trip() {
        let s = ModelStatus {
            name: "minilm".into(),
            kind: "embedding".into(),
            state: ModelState::Failed,
            provider: "cpu".into(),
            error: Some("boom".into()),
            note: None,
            queue_depth: 3,
            served: 10,
            skipped: 1,
            timed_out: 2,
            rejected: 4,
            active: 2,
            batched_tokens: 7,
            engine_build_s: Some(130),
            memory_bytes: Some(90 << 20),
            memory_pool: Some("gpu:0".into()),
            kv: Some(KvCache {
                kv_cache_bytes: 64 << 20,
                kv_bytes_per_token: 28 << 10,
                kv_bytes_in_use: 3 << 20,
                full_context_streams: 4,
            }),
            idle_s: Some(12),
            last_error: Some("Timeout: … (request d-1)".into()),
        };
        assert_eq!(ModelStatus::from_dict(&s.to_dict()).unwrap(), s);
    }

    #[test]
    fn elapsed_times() {
        assert_eq!(elapsed(45), "45s");
        assert_eq!(elapsed(130), "2m10s");
        assert_eq!(elapsed(3720), "1h02m");
    }

    #[test]
    fn unknown_state_is_an_error() {
        let mut d = Dict::new();
        put(&mut d, "name", "x");
        put(&mut d, "state", "dancing");
        assert!(ModelStatus::from_dict(&d).unwrap_err().contains("dancing"));
    }
}
