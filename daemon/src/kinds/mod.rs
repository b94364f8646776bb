//! Model kinds: how a kind turns queued jobs into session runs. The engine opens the session
//! (which provider, which device) and hands it to `build`; a kind knows nothing of how models
//! are found, loaded or budgeted.

mod classify;
mod embedding;
mod generation;
pub use generation::KvFacts;
mod tensor;
mod texts;

#[doc(hidden)]
pub use generation::text as fuzz_text;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ort::session::Session;

pub use self::generation::PromptEncoder;
pub use self::texts::TextEncoder;
use crate::error::LoadError;
use crate::manifest::{Kind, ModelSpec};
use crate::onnx_files::ModelFile;
use crate::pool::Pool;
use crate::tensor::Spec;
use crate::work::job::Job;
use crate::work::queue::{BatchPolicy, Queue};

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
            let rows: usize = batch.iter().map(crate::work::queue::Queued::weight).sum();
            batch_sizes.observe(rows as f64);
            queue.stats.active.store(n, Ordering::Relaxed);
            // A panic drops the batch's reply senders: its callers get an Internal error, and
            // the worker goes on serving.
            if catch_unwind(AssertUnwindSafe(|| self.run(batch, queue))).is_err() {
                tracing::error!("model run panicked; batch failed");
            }
            queue.stats.active.store(0, Ordering::Relaxed);
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

/// A kind's model around an opened session, and what the engine needs to feed and size it.
pub struct Built {
    pub model: Box<dyn Model>,
    pub prepare: Prepare,
    /// Memory the model will take beyond the session: a text-generation model's KV caches at
    /// their limit (`generation.kv_cache_tokens`).
    pub kv: Option<KvFacts>,
}

/// Builds the model of `spec`'s kind around `session` (whose memory lives in `pool`).
pub fn build(
    spec: &ModelSpec,
    session: Session,
    graph: &ModelFile,
    (inputs, outputs): (&[Spec], &[Spec]),
    pool: Pool,
    background_share: f64,
) -> Result<Built, LoadError> {
    let mut kv = None;
    let (model, prepare): (Box<dyn Model>, Prepare) = match spec.manifest.kind {
        Kind::Embedding | Kind::Classification => {
            let (m, encoder) = embedding::Embedding::new(spec, session)?;
            (Box::new(m), Prepare::Texts(Arc::new(encoder)))
        }
        Kind::Tensor => (
            Box::new(tensor::TensorModel::new(spec, session, inputs, outputs)?),
            Prepare::Nothing,
        ),
        Kind::TextGeneration => {
            let (m, encoder) = generation::TextGeneration::new(
                spec,
                session,
                inputs,
                graph,
                pool,
                background_share,
            )?;
            kv = Some(m.kv_facts());
            (Box::new(m), Prepare::Prompt(Arc::new(encoder)))
        }
    };
    Ok(Built { model, prepare, kv })
}
