//! What every load needs from the daemon's configuration and its ONNX Runtime, and the memory
//! budget's questions about it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::manifest::{Execution, Provider};
use crate::pool::Pool;
use crate::runtime::Runtime;

/// What every load needs besides the model's own spec.
#[derive(Clone)]
pub struct LoadContext {
    /// The ONNX Runtime library: its version keys TensorRT engine caches, its providers say
    /// what can register, and the first load loads it.
    pub runtime: Arc<Runtime>,
    /// Root of provider caches (TensorRT engines).
    pub state_dir: PathBuf,
    /// TensorRT timing caches: cheap to rebuild.
    pub cache_dir: PathBuf,
    /// The least share of a model's work background requests get (`engine.background_share`).
    pub background_share: f64,
    /// `engine.memory_budget`: bytes all loaded models may take together, per pool.
    pub memory_budget: Option<u64>,
    /// `engine.gpu_memory_budget`: the same per GPU, when it differs.
    pub gpu_memory_budget: Option<u64>,
    /// `engine.keep_alive_s`: idle seconds before a model is unloaded.
    pub keep_alive: Option<std::time::Duration>,
    /// `engine.min_wake_interval_ms`: a parked model is loaded again for a request at most
    /// this often.
    pub min_wake_interval: std::time::Duration,
}

impl LoadContext {
    /// Whether any memory budget is set: then loads take turns, so each is measured.
    pub fn budgeted(&self) -> bool {
        self.memory_budget.is_some() || self.gpu_memory_budget.is_some()
    }

    /// Whether ONNX Runtime was built with `provider` (it may still fail to register).
    pub fn has(&self, provider: crate::manifest::Provider) -> bool {
        self.runtime
            .providers
            .iter()
            .any(|n| n == provider.ort_name())
    }

    /// Before a load: the pool of the first provider in the manifest's list that ONNX Runtime
    /// has and whose device answers. A provider can still fail to register; the load then
    /// measures where it landed.
    pub fn planned_pool(&self, exec: &Execution) -> Pool {
        let simulated = |p| p == Provider::Tensorrt && crate::gpu::simulation().is_some();
        exec.providers
            .iter()
            .filter(|&&p| p == Provider::Cpu || simulated(p) || self.has(p))
            .map(|&p| Pool::of(p, exec))
            .find(|&pool| pool == Pool::Host || pool.used().is_some())
            .unwrap_or(Pool::Host)
    }

    /// The budget for `pool`: a GPU's is `engine.gpu_memory_budget`, or else
    /// `engine.memory_budget`, per device.
    pub fn budget(&self, pool: Pool) -> Option<u64> {
        match pool {
            Pool::Host => self.memory_budget,
            Pool::Gpu(_) => self.gpu_memory_budget.or(self.memory_budget),
        }
    }

    /// The config key that sets `budget`, for error messages.
    pub fn budget_key(&self, pool: Pool) -> &'static str {
        match pool {
            Pool::Gpu(_) if self.gpu_memory_budget.is_some() => "engine.gpu_memory_budget",
            _ => "engine.memory_budget",
        }
    }

    pub fn new(runtime: Arc<Runtime>, config: &crate::config::Config) -> LoadContext {
        LoadContext {
            runtime,
            state_dir: config.state_dir(),
            cache_dir: config.cache_dir(),
            background_share: config.engine.background_share,
            memory_budget: config.engine.memory_budget,
            gpu_memory_budget: config.engine.gpu_memory_budget,
            keep_alive: config
                .engine
                .keep_alive_s
                .map(std::time::Duration::from_secs),
            min_wake_interval: std::time::Duration::from_millis(config.engine.min_wake_interval_ms),
        }
    }
}
