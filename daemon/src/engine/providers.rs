//! Registers a model's execution providers in order, never falling back to the CPU silently.
//!
//! Each GPU provider is registered with `error_on_failure`, so its reason is kept. The first one
//! that registers is the provider in use; later GPU providers in the list are registered too, as
//! ONNX Runtime's fallback for nodes the first cannot run.

use std::path::Path;

use crate::kinds::LoadContext;

use ort::ep;
use ort::session::Session;

use crate::error::LoadError;
use crate::manifest::{Execution, ModelSpec, Provider};

/// The provider a session ended up on, and why the ones before it were skipped.
#[derive(Debug, Clone)]
pub struct Placement {
    pub provider: Provider,
    /// `provider: reason` for each provider that was tried and failed.
    pub skipped: Vec<String>,
}

fn dispatch(p: Provider, exec: &Execution, cache: &Path) -> Option<ep::ExecutionProviderDispatch> {
    let d = match p {
        Provider::Cpu => return None,
        Provider::Cuda => {
            let mut cuda = ep::CUDA::default().with_device_id(exec.cuda.device_id);
            if let Some(limit) = exec.cuda.memory_limit {
                cuda = cuda.with_memory_limit(limit);
            }
            cuda.build()
        }
        Provider::Tensorrt => {
            let o = &exec.tensorrt;
            let dir = cache.display().to_string();
            let mut trt = ep::TensorRT::default()
                .with_device_id(o.device_id)
                .with_fp16(o.fp16)
                .with_engine_cache(true)
                .with_engine_cache_path(&dir)
                .with_timing_cache(true)
                .with_timing_cache_path(&dir);
            if let Some(ws) = o.max_workspace {
                trt = trt.with_max_workspace_size(ws);
            }
            if let Some(level) = o.builder_optimization_level {
                trt = trt.with_builder_optimization_level(level);
            }
            trt.build()
        }
    };
    Some(d.error_on_failure())
}

/// Opens the model's session on the first provider that registers.
pub fn open(spec: &ModelSpec, ctx: &LoadContext) -> Result<(Session, Placement), LoadError> {
    let exec = &spec.manifest.execution;
    let session_err = |source| LoadError::Session {
        path: spec.model_path.clone(),
        source,
    };
    let mut builder = Session::builder(&ctx.env).map_err(session_err)?;
    if !exec.spin {
        builder = builder
            .with_intra_op_spinning(false)
            .map_err(|e| session_err(e.into()))?;
    }
    if exec.intra_threads > 0 {
        builder = builder
            .with_intra_threads(exec.intra_threads)
            .map_err(|e| session_err(e.into()))?;
    }
    let cache = ctx.state_dir.join("tensorrt").join(&spec.name);
    let mut chosen: Option<Provider> = None;
    let mut skipped = Vec::new();
    for &p in &exec.providers {
        if p == Provider::Cpu {
            if chosen.is_none() && !exec.require_gpu {
                chosen = Some(Provider::Cpu);
            }
            break;
        }
        if p == Provider::Tensorrt {
            if let Err(e) = std::fs::create_dir_all(&cache) {
                skipped.push(format!("tensorrt: cannot create {}: {e}", cache.display()));
                continue;
            }
        }
        let Some(d) = dispatch(p, exec, &cache) else {
            continue;
        };
        match builder.with_execution_providers([d]) {
            Ok(b) => {
                builder = b;
                chosen.get_or_insert(p);
            }
            Err(e) => {
                let reason = e.to_string();
                builder = e.recover();
                tracing::warn!(model = %spec.name, provider = p.as_str(), "provider did not register: {reason}");
                skipped.push(format!("{}: {reason}", p.as_str()));
            }
        }
    }
    let provider = match chosen {
        Some(p) => p,
        None if exec.require_gpu => return Err(LoadError::NoGpu(skipped.join("; "))),
        None => return Err(LoadError::NoProvider(skipped.join("; "))),
    };
    let session = builder
        .commit_from_file(&spec.model_path)
        .map_err(session_err)?;
    Ok((session, Placement { provider, skipped }))
}
