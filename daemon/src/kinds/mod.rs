//! Model kinds: how a kind turns queued jobs into session runs.

mod embedding;
mod tensor;

use std::path::PathBuf;

use ort::environment::Environment;

use crate::engine::job::Job;
use crate::engine::providers::{self, Placement};
use crate::error::LoadError;
use crate::manifest::{Kind, ModelSpec};
use crate::tensor::Spec;

/// A loaded model, owned by its worker thread.
pub trait Model: Send {
    /// Whether two queued jobs may share one run.
    fn compatible(&self, a: &Job, b: &Job) -> bool;
    /// Runs a batch and answers every job in it.
    fn run(&mut self, batch: Vec<Job>);
}

/// What the engine learns about a model once it is loaded.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub placement: Placement,
    pub inputs: Vec<Spec>,
    pub outputs: Vec<Spec>,
}

/// What every load needs besides the model's own spec.
#[derive(Clone)]
pub struct LoadContext {
    pub env: Environment,
    /// Root of provider caches (TensorRT engines).
    pub state_dir: PathBuf,
}

/// Opens the session and builds the kind-specific model around it.
pub fn load(spec: &ModelSpec, ctx: &LoadContext) -> Result<(Box<dyn Model>, Loaded), LoadError> {
    if spec.manifest.kind == Kind::TextGeneration {
        return Err(LoadError::Incompatible(
            "kind \"text-generation\" is not served by this version of inferd yet".into(),
        ));
    }
    let (session, placement) = providers::open(spec, ctx)?;
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
    let model: Box<dyn Model> = if spec.manifest.kind == Kind::Embedding {
        Box::new(embedding::Embedding::new(spec, session)?)
    } else {
        Box::new(tensor::TensorModel::new(spec, session, &inputs, &outputs)?)
    };
    Ok((
        model,
        Loaded {
            placement,
            inputs,
            outputs,
        },
    ))
}
