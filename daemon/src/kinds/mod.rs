//! Model kinds: how a kind turns queued jobs into session runs.

mod classify;
mod embedding;
mod generation;
mod tensor;
mod texts;

#[doc(hidden)]
pub use generation::text as fuzz_text;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ort::environment::Environment;

pub use self::generation::PromptEncoder;
pub use self::texts::TextEncoder;
use crate::engine::job::Job;
use crate::engine::pool::Pool;
use crate::engine::providers::{self, Placement};
use crate::engine::queue::{BatchPolicy, Queue};
use crate::error::LoadError;
use crate::manifest::{Kind, ModelSpec};
use crate::tensor::Spec;

/// A loaded model, owned by its worker thread.
pub trait Model: Send {
    /// Whether two queued jobs may share one run.
    fn compatible(&self, a: &Job, b: &Job) -> bool;
    /// Runs a batch and answers every job in it. Work that takes long answers the queue's
    /// watchdog probe (`Queue::heartbeat`) as it goes.
    fn run(&mut self, batch: Vec<Job>, queue: &Queue<Job>);

    /// Serves the queue until it is closed and drained. The default forms batches and runs
    /// them; kinds that keep work across steps (generation) drive the queue themselves.
    fn serve(&mut self, queue: &Queue<Job>, policy: BatchPolicy) {
        let batch_sizes = crate::metrics::get().batch_sizes(queue.model());
        while let Some(batch) = queue.next_batch(policy, |a, b| self.compatible(a, b)) {
            let n = batch.len() as u64;
            let rows: usize = batch.iter().map(crate::engine::queue::Job::weight).sum();
            batch_sizes.observe(rows as f64);
            // A panic drops the batch's reply senders: its callers get an Internal error, and
            // the worker goes on serving.
            if catch_unwind(AssertUnwindSafe(|| self.run(batch, queue))).is_err() {
                tracing::error!("model run panicked; batch failed");
            }
            queue.stats.served.fetch_add(n, Ordering::Relaxed);
            queue.stats.touch();
        }
    }
}

/// What turns a request's text into the model's input. The engine runs it on a blocking
/// thread before the request is queued, so tokenizing never happens on the worker.
#[derive(Clone)]
pub enum Prepare {
    /// Tensor models take their inputs as they come.
    Nothing,
    Texts(Arc<TextEncoder>),
    Prompt(Arc<PromptEncoder>),
}

impl std::fmt::Debug for Prepare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Prepare::Nothing => "Nothing",
            Prepare::Texts(_) => "Texts",
            Prepare::Prompt(_) => "Prompt",
        })
    }
}

/// What the engine learns about a model once it is loaded.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub placement: Placement,
    pub inputs: Vec<Spec>,
    pub outputs: Vec<Spec>,
    /// Where the session's memory lives: host RAM or its GPU.
    pub pool: Pool,
    /// Memory the load took in `pool` (measured by the worker); `None` when another load ran
    /// at the same time, so the growth was not its own.
    pub memory_bytes: Option<u64>,
    /// The model's files, which stand in for its size until one is measured.
    pub estimate_bytes: u64,
    /// Memory the model will take after the load, counted in `memory_bytes` from the start:
    /// a text-generation model's KV caches at their limit (`generation.kv_cache_tokens`).
    pub kv_cache_bytes: Option<u64>,
    pub prepare: Prepare,
}

/// What every load needs besides the model's own spec.
#[derive(Clone)]
pub struct LoadContext {
    pub env: Environment,
    /// Root of provider caches (TensorRT engines).
    pub state_dir: PathBuf,
    /// TensorRT timing caches: cheap to rebuild.
    pub cache_dir: PathBuf,
    /// ONNX Runtime's version, part of the TensorRT engine cache key.
    pub runtime_version: String,
    /// The least share of a model's work background requests get (`engine.background_share`).
    pub background_share: f64,
    /// `engine.memory_budget`: bytes all loaded models may take together, per pool.
    pub memory_budget: Option<u64>,
    /// `engine.gpu_memory_budget`: the same per GPU, when it differs.
    pub gpu_memory_budget: Option<u64>,
    /// Execution providers compiled into the ONNX Runtime library.
    pub compiled_providers: Vec<String>,
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
        self.compiled_providers
            .iter()
            .any(|n| n == provider.ort_name())
    }

    pub fn new(runtime: &crate::runtime::Runtime, config: &crate::config::Config) -> LoadContext {
        LoadContext {
            env: runtime.env.clone(),
            state_dir: config.state_dir(),
            cache_dir: config.cache_dir(),
            runtime_version: runtime.version.clone(),
            background_share: config.engine.background_share,
            memory_budget: config.engine.memory_budget,
            gpu_memory_budget: config.engine.gpu_memory_budget,
            compiled_providers: runtime.providers.clone(),
            keep_alive: config
                .engine
                .keep_alive_s
                .map(std::time::Duration::from_secs),
            min_wake_interval: std::time::Duration::from_millis(config.engine.min_wake_interval_ms),
        }
    }
}

/// Opens the session and builds the kind-specific model around it.
pub fn load(
    spec: &ModelSpec,
    ctx: &LoadContext,
    mode: providers::Mode,
) -> Result<(Box<dyn Model>, Loaded), LoadError> {
    let graph = spec.inspect_model()?;
    let (session, placement) = providers::open(spec, ctx, mode)?;
    let pool = Pool::of(placement.provider, &spec.manifest.execution);
    let inputs: Vec<Spec> = session
        .inputs()
        .iter()
        .map(|o| Spec::from_outlet(o.name(), o.dtype()))
        .collect();
    let outputs: Vec<Spec> = session
        .outputs()
        .iter()
        .map(|o| Spec::from_outlet(o.name(), o.dtype()))
        .collect();
    let mut kv_cache_bytes = None;
    let (model, prepare): (Box<dyn Model>, Prepare) = match spec.manifest.kind {
        Kind::Embedding | Kind::Classification => {
            let (m, encoder) = embedding::Embedding::new(spec, session)?;
            (Box::new(m), Prepare::Texts(Arc::new(encoder)))
        }
        Kind::Tensor => (
            Box::new(tensor::TensorModel::new(spec, session, &inputs, &outputs)?),
            Prepare::Nothing,
        ),
        Kind::TextGeneration => {
            let (m, encoder) = generation::TextGeneration::new(
                spec,
                session,
                &inputs,
                &graph,
                pool,
                ctx.background_share,
            )?;
            kv_cache_bytes = Some(m.kv_cache_bytes());
            (Box::new(m), Prepare::Prompt(Arc::new(encoder)))
        }
    };
    Ok((
        model,
        Loaded {
            placement,
            inputs,
            outputs,
            pool,
            memory_bytes: None,
            estimate_bytes: 0,
            kv_cache_bytes,
            prepare,
        },
    ))
}
