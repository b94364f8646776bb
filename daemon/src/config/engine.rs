//! The `[engine]` section: budgets, shutdown, priorities and idle unloading.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Where TensorRT engine and timing caches live.
    pub state_dir: Option<PathBuf>,
    /// How long shutdown waits for accepted requests before giving up on them.
    pub shutdown_timeout_ms: u64,
    /// The least share (0..=1) of a model's work that background requests get while
    /// interactive ones wait.
    pub background_share: f64,
    /// Bytes the loaded models may take together in host RAM, and on each GPU unless
    /// `gpu_memory_budget` is set (measured after each load); loading past it unloads the
    /// least recently used idle models in the same pool first. Absent: no limit.
    pub memory_budget: Option<u64>,
    /// Bytes the models on each GPU may take together, measured in that device's memory.
    /// Absent: `memory_budget` applies to each GPU too.
    pub gpu_memory_budget: Option<u64>,
    /// Unload a model after this many idle seconds (a manifest's `keep_alive_s` wins); the
    /// next request reloads it. Absent: models stay loaded.
    pub keep_alive_s: Option<u64>,
    /// A request loads a parked model again at most this often per model; more wait.
    pub min_wake_interval_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            state_dir: None,
            shutdown_timeout_ms: 10_000,
            background_share: 0.1,
            memory_budget: None,
            gpu_memory_budget: None,
            keep_alive_s: None,
            min_wake_interval_ms: 2000,
        }
    }
}
