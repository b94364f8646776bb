//! Loading a model: the session opened on the manifest's providers (`providers.rs`), the kind's
//! model built around it (`kinds::build`), and what the engine learns from the load (`Loaded`).

use super::context::LoadContext;
use super::providers::{self, Placement};
use crate::error::LoadError;
use crate::huge_pages::{self, Advised};
use crate::kinds::{self, Model, Prepare};
use crate::manifest::ModelSpec;
use crate::pool::Pool;
use crate::tensor::Spec;

/// What the engine learns about a model once it is loaded.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub placement: Placement,
    pub inputs: Vec<Spec>,
    /// Where the session's memory lives: host RAM or its GPU.
    pub pool: Pool,
    /// Memory the load took in `pool` (measured by the worker); `None` when another load ran
    /// at the same time, so the growth was not its own.
    pub memory_bytes: Option<u64>,
    /// The model's files, which stand in for its size until one is measured.
    pub estimate_bytes: u64,
    /// Memory the model will take after the load, counted in `memory_bytes` from the start:
    /// a text-generation model's KV caches at their limit (`generation.kv_cache_tokens`).
    pub kv: Option<crate::kinds::KvFacts>,
    pub prepare: Prepare,
}

/// Opens the session and builds the kind's model around it.
pub fn load(
    spec: &ModelSpec,
    ctx: &LoadContext,
    mode: providers::Mode,
) -> Result<(Box<dyn Model>, Loaded), LoadError> {
    let graph = spec.inspect_model()?;
    let (session, placement) = providers::open(spec, ctx, mode)?;
    let pool = Pool::of(placement.provider, &spec.manifest.execution);
    if pool == Pool::Host && spec.manifest.execution.huge_pages {
        back_with_huge_pages(&spec.name);
    }
    let specs = |outlets: &[ort::value::Outlet]| -> Vec<Spec> {
        outlets
            .iter()
            .map(|o| Spec::from_outlet(o.name(), o.dtype()))
            .collect()
    };
    let (inputs, outputs) = (specs(session.inputs()), specs(session.outputs()));
    let built = kinds::build(
        spec,
        session,
        &graph,
        (&inputs, &outputs),
        pool,
        ctx.background_share,
    )?;
    Ok((
        built.model,
        Loaded {
            placement,
            inputs,
            pool,
            memory_bytes: None,
            estimate_bytes: 0,
            kv: built.kv,
            prepare: built.prepare,
        },
    ))
}

/// Backs the session's weights, prepacked when it opened, with huge pages (`huge_pages.rs`);
/// a failure costs speed, never the load.
fn back_with_huge_pages(model: &str) {
    match huge_pages::back_loaded_memory() {
        Ok(Advised::Done {
            collapsed,
            process_huge,
        }) => tracing::debug!(
            model,
            collapsed_mib = collapsed >> 20,
            process_huge_mib = process_huge >> 20,
            "weights backed by huge pages"
        ),
        Ok(Advised::Unavailable) => {
            tracing::debug!(model, "transparent huge pages are off on this system")
        }
        Err(e) => tracing::warn!(model, "could not advise huge pages: {e}"),
    }
}
