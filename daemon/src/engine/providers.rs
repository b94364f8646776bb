//! Registers a model's execution providers in order, never falling back to the CPU silently.
//!
//! Each GPU provider is registered with `error_on_failure`, so its reason is kept. The first one
//! that registers is the provider in use; later GPU providers in the list are registered too, as
//! ONNX Runtime's fallback for nodes the first cannot run.
//!
//! TensorRT first in the list gets an engine cache (see `trt_cache`). When its engine is not
//! built yet and the next provider may serve, `Mode::Serve` loads on that provider and says
//! `build_pending`; the engine then builds in a `Mode::Build` load, which replaces it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ort::ep;
use ort::session::Session;

use super::context::LoadContext;
use super::trt_cache::{self, EngineDir};
use crate::error::LoadError;
use crate::gpu::{self, Simulation};
use crate::manifest::{Execution, ModelSpec, Provider};

/// What a load is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serve as soon as possible.
    Serve,
    /// Build the TensorRT engine now, or fail: never fall back.
    Build,
}

/// The provider a session ended up on, and why the ones before it were skipped.
#[derive(Debug, Clone)]
pub struct Placement {
    pub provider: Provider,
    /// `provider: reason` for each provider that was tried and failed.
    pub skipped: Vec<String>,
    /// TensorRT's engine is not built yet; this session serves until it is.
    pub build_pending: bool,
}

fn dispatch(
    p: Provider,
    exec: &Execution,
    engines: &Path,
    timing: &Path,
) -> Option<ep::ExecutionProviderDispatch> {
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
            let mut trt = ep::TensorRT::default()
                .with_device_id(o.device_id)
                .with_fp16(o.fp16)
                .with_engine_cache(true)
                .with_engine_cache_path(engines.display())
                .with_timing_cache(true)
                .with_timing_cache_path(timing.display());
            if let Some(ws) = o.max_workspace {
                trt = trt.with_max_workspace_size(ws);
            }
            if let Some(level) = o.builder_optimization_level {
                trt = trt.with_builder_optimization_level(level);
            }
            if let (Some(min), Some(opt), Some(max)) = (
                &o.profile_min_shapes,
                &o.profile_opt_shapes,
                &o.profile_max_shapes,
            ) {
                trt = trt
                    .with_profile_min_shapes(min)
                    .with_profile_opt_shapes(opt)
                    .with_profile_max_shapes(max);
            }
            trt.build()
        }
    };
    Some(d.error_on_failure())
}

/// What to do about TensorRT for this load.
enum Trt {
    /// Not usable: the reason.
    Skip(String),
    /// Not built yet, and the next provider serves meanwhile.
    Defer,
    /// Register it with engines in `engines`; `build` is set when this load builds them.
    Use {
        engines: PathBuf,
        build: Option<Box<(EngineDir, PathBuf)>>,
    },
}

fn plan_tensorrt(spec: &ModelSpec, ctx: &LoadContext, mode: Mode, rest: &[Provider]) -> Trt {
    let exec = &spec.manifest.execution;
    let facts = match gpu::facts(exec.tensorrt.device_id) {
        Ok(f) => f,
        Err(e) => return Trt::Skip(e.to_string()),
    };
    let dir = match trt_cache::engine_dir(spec, &ctx.state_dir, &ctx.runtime.version, &facts) {
        Ok(d) => d,
        Err(e) => return Trt::Skip(format!("cannot prepare the engine cache: {e}")),
    };
    if dir.is_warm() {
        tracing::info!(model = %spec.name, key = %dir.key, "TensorRT engine cache hit");
        dir.remove_others();
        return Trt::Use {
            engines: dir.path(),
            build: None,
        };
    }
    let may_wait = !rest.is_empty() && (!exec.require_gpu || rest.iter().any(|p| p.is_gpu()));
    if mode == Mode::Serve && may_wait {
        return Trt::Defer;
    }
    match dir.start_build() {
        Ok(build) => Trt::Use {
            engines: build.clone(),
            build: Some(Box::new((dir, build))),
        },
        Err(e) => Trt::Skip(format!("cannot create a build folder: {e}")),
    }
}

/// A build folder that is removed unless the build was published.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Opens the model's session on the first provider that registers.
pub fn open(
    spec: &ModelSpec,
    ctx: &LoadContext,
    mode: Mode,
) -> Result<(Session, Placement), LoadError> {
    let exec = &spec.manifest.execution;
    let session_err = |source| LoadError::Session {
        path: spec.model_path.clone(),
        source,
    };
    let mut builder = Session::builder(ctx.runtime.env()?).map_err(session_err)?;
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
    let timing = ctx.cache_dir.join("tensorrt-timing");
    let simulation = gpu::simulation();
    let mut chosen: Option<Provider> = None;
    let mut skipped = Vec::new();
    let mut build_pending = false;
    let mut building: Option<(EngineDir, PathBuf)> = None;
    let mut unfinished = RemoveOnDrop(None);
    for (i, &p) in exec.providers.iter().enumerate() {
        if p == Provider::Cpu {
            if chosen.is_none() && !exec.require_gpu {
                chosen = Some(Provider::Cpu);
            }
            break;
        }
        let mut engines = PathBuf::new();
        if p == Provider::Tensorrt && chosen.is_none() {
            match plan_tensorrt(spec, ctx, mode, &exec.providers[i + 1..]) {
                Trt::Skip(reason) if mode == Mode::Build => {
                    return Err(LoadError::EngineBuild(reason))
                }
                Trt::Skip(reason) => {
                    tracing::warn!(model = %spec.name, provider = "tensorrt", "provider did not register: {reason}");
                    skipped.push(format!("tensorrt: {reason}"));
                    continue;
                }
                Trt::Defer => {
                    build_pending = true;
                    continue;
                }
                Trt::Use { engines: e, build } => {
                    if let Err(e) = std::fs::create_dir_all(&timing) {
                        tracing::warn!("cannot create {}: {e}", timing.display());
                    }
                    engines = e;
                    unfinished.0 = build.as_ref().map(|b| b.1.clone());
                    building = build.map(|b| *b);
                }
            }
            match simulation {
                Some(Simulation::Fail) => {
                    let reason = "simulated TensorRT failure".to_owned();
                    if mode == Mode::Build {
                        return Err(LoadError::EngineBuild(reason));
                    }
                    skipped.push(format!("tensorrt: {reason}"));
                    continue;
                }
                Some(Simulation::Slow(_)) => {
                    chosen = Some(p);
                    continue;
                }
                None => {}
            }
        }
        let Some(d) = dispatch(p, exec, &engines, &timing) else {
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
                if p == Provider::Tensorrt && mode == Mode::Build {
                    return Err(LoadError::EngineBuild(reason));
                }
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
    if let Some((_, dir)) = &building {
        tracing::info!(model = %spec.name, dir = %dir.display(), "building the TensorRT engine");
    }
    let session = builder
        .commit_from_file(&spec.model_path)
        .map_err(session_err)?;
    if let Some((dir, build)) = building {
        if let Some(Simulation::Slow(ms)) = simulation {
            std::thread::sleep(Duration::from_millis(ms));
            std::fs::write(build.join("simulated.engine"), b"")
                .map_err(|e| LoadError::EngineBuild(e.to_string()))?;
        }
        dir.finish(&build)
            .map_err(|e| LoadError::EngineBuild(format!("cannot store the engine: {e}")))?;
        unfinished.0 = None;
        tracing::info!(model = %spec.name, key = %dir.key, "TensorRT engine built");
    }
    Ok((
        session,
        Placement {
            provider,
            skipped,
            build_pending,
        },
    ))
}
