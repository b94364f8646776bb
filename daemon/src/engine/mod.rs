//! The engine: which models exist, their state, and the path from a request to a worker.
//!
//! Frontends call `embed`/`infer`; the engine checks the request against what the model declared,
//! stamps a deadline and pushes it onto the model's bounded queue. Loads run on the model's own
//! worker thread, so a slow or failing model never holds up the others.

mod budget;
mod context;
mod load;
mod observe;
pub mod providers;
mod requests;
mod slot;
pub mod trt_cache;
mod worker;

pub use context::LoadContext;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use inferd_client::{ModelState, ModelStatus};
use tokio::sync::{broadcast, oneshot};

use self::providers::Mode;
use self::slot::{Serving, Slot};
use crate::error::{Error, LoadError, Result};
use crate::limits::Limits;
use crate::manifest::ModelSpec;
use crate::repository::Repository;
use crate::work::queue::Queue;

/// A model changed state; frontends turn this into signals and status messages.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    pub name: String,
    pub state: ModelState,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    repo: Repository,
    ctx: LoadContext,
    slots: Mutex<HashMap<String, Slot>>,
    /// Every worker thread ever started, joined at shutdown.
    threads: Mutex<Vec<JoinHandle<()>>>,
    changes: broadcast::Sender<StateChange>,
    stopping: AtomicBool,
    /// Held while deciding to reload a parked model, so concurrent requests start one load.
    waking: Mutex<()>,
    /// `[limits]`, checked before each request does any work; replaced on reload.
    limits: RwLock<Limits>,
    /// Tokenizing runs on blocking threads, at most one per CPU at a time.
    tokenizing: Arc<tokio::sync::Semaphore>,
}

/// Why a load someone waits for did not end with its version serving.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadFailure {
    /// The load failed; the reason, as the model's status records it.
    #[error("{0}")]
    Failed(String),
    #[error("inferd is shutting down")]
    ShuttingDown,
    #[error("nothing serves to build an engine for")]
    NothingToBuild,
    #[error("superseded by a newer load, an unload, or shutdown")]
    Superseded,
}

/// Resolves when a load finishes.
pub type LoadResult = oneshot::Receiver<std::result::Result<(), LoadFailure>>;

impl Engine {
    /// Scans the repository and starts loading every model in the background.
    pub fn start(repo: Repository, ctx: LoadContext) -> std::io::Result<Engine> {
        let engine = Engine {
            inner: Arc::new(Inner {
                repo,
                ctx,
                slots: Mutex::new(HashMap::new()),
                threads: Mutex::new(Vec::new()),
                changes: broadcast::channel(256).0,
                stopping: AtomicBool::new(false),
                waking: Mutex::new(()),
                limits: RwLock::new(Limits::default()),
                tokenizing: Arc::new(tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                )),
            }),
        };
        engine.rescan()?;
        if tokio::runtime::Handle::try_current().is_ok() {
            engine.spawn_reaper();
        }
        Ok(engine)
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn limits(&self) -> Limits {
        self.inner
            .limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes new `[limits]` (at start and on reload); requests already past the check keep
    /// the old ones.
    pub fn set_limits(&self, limits: Limits) {
        *self.inner.limits.write().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StateChange> {
        self.inner.changes.subscribe()
    }

    /// One model's `ListModels` entry, if the repository has it.
    pub fn status(&self, name: &str) -> Option<ModelStatus> {
        self.slots().get(name).map(|s| s.status(name))
    }

    pub fn list(&self) -> Vec<ModelStatus> {
        let slots = self.slots();
        let mut out: Vec<ModelStatus> = slots.iter().map(|(n, s)| s.status(n)).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Probes every serving worker (see `Queue::probe`); returns the models whose previous probe
    /// is still unanswered, with how long it has waited.
    pub fn probe_workers(&self) -> Vec<(String, Duration)> {
        let slots = self.slots();
        slots
            .iter()
            .filter_map(|(name, slot)| {
                let serving = slot.serving(name).ok()?;
                serving.queue.probe().map(|age| (name.clone(), age))
            })
            .collect()
    }

    /// Resolves once no model is loading.
    pub async fn settled(&self) {
        let mut changes = self.subscribe();
        while self.list().iter().any(|m| m.state == ModelState::Loading) {
            if let Err(broadcast::error::RecvError::Closed) = changes.recv().await {
                return;
            }
        }
    }

    /// Loads (or reloads) one model; resolves when it is ready or has failed.
    pub async fn load(&self, name: &str) -> Result<()> {
        let spec = match self.inner.repo.get(name) {
            None => return Err(Error::ModelNotFound(name.to_owned())),
            Some(Err(e)) => {
                self.with_slot(name, |s| s.manifest_failed(e.to_string()));
                return Err(Error::InvalidInput(format!("model {name:?}: {e}")));
            }
            Some(Ok(spec)) => spec,
        };
        let done = self.start_load(spec);
        wait_loaded(name, done).await
    }

    /// Stops serving a model; requests it already accepted are still answered.
    pub fn unload(&self, name: &str) -> Result<()> {
        let mut slots = self.slots();
        let slot = slots
            .get_mut(name)
            .ok_or_else(|| Error::ModelNotFound(name.to_owned()))?;
        slot.unload();
        drop(slots);
        self.notify(name, ModelState::Unloaded);
        Ok(())
    }

    /// Rescans the repository: new and changed models load, removed ones unload. A model whose
    /// new version fails keeps its old version serving. Resolves when every load has finished.
    pub async fn reload(&self) -> Result<()> {
        let pending = self
            .rescan()
            .map_err(|e| Error::Internal(format!("cannot read the model repository: {e}")))?;
        for (name, done) in pending {
            // Failures are recorded in the model's status; Reload itself succeeded.
            if let Err(e) = wait_loaded(&name, done).await {
                tracing::warn!(model = %name, "reload: {e}");
            }
        }
        Ok(())
    }

    fn rescan(&self) -> std::io::Result<Vec<(String, LoadResult)>> {
        let entries = self.inner.repo.scan()?;
        let mut pending = Vec::new();
        let mut seen = Vec::new();
        for entry in entries {
            seen.push(entry.name.clone());
            match entry.spec {
                Err(e) => {
                    tracing::error!(model = %entry.name, "{e}");
                    self.with_slot(&entry.name, |s| s.manifest_failed(e.to_string()));
                }
                Ok(spec) => {
                    let fp = slot::fingerprint(&spec);
                    let current = self
                        .slots()
                        .get(&entry.name)
                        .is_some_and(|s| s.is_current(&fp));
                    if !current {
                        pending.push((entry.name.clone(), self.start_load(spec)));
                    }
                }
            }
        }
        let gone: Vec<String> = self
            .slots()
            .keys()
            .filter(|n| !seen.contains(n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(mut slot) = self.slots().remove(&name) {
                slot.unload();
            }
            self.notify(&name, ModelState::Unloaded);
        }
        Ok(pending)
    }

    fn with_slot(&self, name: &str, f: impl FnOnce(&mut Slot)) {
        let state = {
            let mut slots = self.slots();
            let slot = slots.entry(name.to_owned()).or_default();
            f(slot);
            slot.state()
        };
        self.notify(name, state);
    }

    fn notify(&self, name: &str, state: ModelState) {
        // No subscriber is fine: nobody is listening yet.
        let _ = self.inner.changes.send(StateChange {
            name: name.to_owned(),
            state,
        });
    }

    /// Starts a worker for `spec`; the slot switches to it once it has loaded.
    fn start_load(&self, spec: ModelSpec) -> LoadResult {
        let fingerprint = slot::fingerprint(&spec);
        let kind = spec.manifest.kind;
        if let Err(e) = self.make_room(&spec) {
            let reason = e.to_string();
            tracing::error!(model = %spec.name, "{reason}");
            self.with_slot(&spec.name, |s| s.manifest_failed(reason.clone()));
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Err(LoadFailure::Failed(reason)));
            return rx;
        }
        self.spawn_worker(spec, Mode::Serve, |slot| {
            Some(slot.begin_load(kind, fingerprint))
        })
    }

    /// Builds the TensorRT engine of the version serving now, on a worker of its own; the
    /// built version replaces it, and a failed build leaves it serving.
    fn start_build(&self, spec: ModelSpec) {
        tracing::info!(model = %spec.name, "serving while the TensorRT engine builds");
        // Its outcome shows in the model's status; nobody waits for it here.
        drop(self.spawn_worker(spec, Mode::Build, Slot::begin_build));
    }

    /// Registers a load with `begin` (which may decline) and starts its worker thread.
    fn spawn_worker(
        &self,
        spec: ModelSpec,
        mode: Mode,
        begin: impl FnOnce(&mut Slot) -> Option<u64>,
    ) -> LoadResult {
        let (done_tx, done_rx) = oneshot::channel();
        if self.inner.stopping.load(Ordering::Acquire) {
            let _ = done_tx.send(Err(LoadFailure::ShuttingDown));
            return done_rx;
        }
        let name = spec.name.clone();
        let started = {
            let mut slots = self.slots();
            let slot = slots.entry(name.clone()).or_default();
            begin(slot).map(|generation| (generation, slot.stats.clone(), slot.state()))
        };
        let Some((generation, stats, state)) = started else {
            let _ = done_tx.send(Err(LoadFailure::NothingToBuild));
            return done_rx;
        };
        self.notify(&name, state);
        let share = self.inner.ctx.background_share;
        let queue = Arc::new(Queue::new(
            &name,
            spec.manifest.batching.queue,
            share,
            stats,
        ));
        let engine = self.clone();
        let serving_queue = queue.clone();
        let loaded_name = name.clone();
        let build_spec = spec.clone();
        let serving_spec = spec.clone();
        let on_loaded = move |result: std::result::Result<load::Loaded, LoadError>| {
            let failure = result.as_ref().err().map(ToString::to_string);
            let pending = result
                .as_ref()
                .is_ok_and(|info| info.placement.build_pending);
            let serve = engine.finish_load(
                &loaded_name,
                generation,
                result.map(|info| Serving {
                    queue: serving_queue,
                    spec: serving_spec,
                    info,
                }),
            );
            if serve && pending {
                engine.start_build(build_spec);
            }
            let outcome = match (serve, failure) {
                (true, _) => Ok(()),
                (false, Some(reason)) => Err(LoadFailure::Failed(reason)),
                (false, None) => Err(LoadFailure::Superseded),
            };
            let _ = done_tx.send(outcome);
            serve
        };
        match worker::spawn(spec, self.inner.ctx.clone(), mode, queue, on_loaded) {
            Ok(handle) => {
                let mut threads = self.inner.threads.lock().unwrap_or_else(|p| p.into_inner());
                threads.retain(|t| !t.is_finished());
                threads.push(handle);
            }
            Err(e) => {
                tracing::error!(model = %name, "cannot start a worker thread: {e}");
                self.finish_load(&name, generation, Err(LoadError::Worker(e)));
            }
        }
        done_rx
    }

    /// Loads the model if needed and waits until it is on its final provider: a TensorRT
    /// engine is built now (ahead of time, e.g. at install), not at the first request.
    pub async fn warmup(&self, name: &str) -> Result<ModelStatus> {
        let mut changes = self.subscribe();
        loop {
            let (status, build_failed) = {
                let slots = self.slots();
                match slots.get(name) {
                    Some(slot) => (
                        Some(slot.status(name)),
                        slot.build_failed().map(str::to_owned),
                    ),
                    None => (None, None),
                }
            };
            match status {
                None => self.load(name).await?,
                Some(s) if s.state == ModelState::Unloaded => self.load(name).await?,
                Some(s) if s.state == ModelState::Failed => {
                    return Err(Error::ModelNotReady {
                        name: name.to_owned(),
                        state: s.state,
                        reason: s.error,
                    })
                }
                Some(s) if s.state == ModelState::Ready && s.engine_build_s.is_none() => {
                    return match build_failed {
                        Some(reason) => Err(Error::ModelNotReady {
                            name: name.to_owned(),
                            state: s.state,
                            reason: Some(format!("{reason}; it serves on {}", s.provider)),
                        }),
                        None => Ok(s),
                    };
                }
                Some(_) => {
                    if let Err(broadcast::error::RecvError::Closed) = changes.recv().await {
                        return Err(Error::ShuttingDown);
                    }
                }
            }
        }
    }

    /// Records a finished load in its slot; returns whether the new worker should serve.
    /// Nothing new starts serving once shutdown has begun.
    fn finish_load(
        &self,
        name: &str,
        generation: u64,
        result: std::result::Result<Serving, LoadError>,
    ) -> bool {
        let result = match result {
            Ok(_) if self.inner.stopping.load(Ordering::Acquire) => Err(LoadError::ShuttingDown),
            other => other,
        };
        let (serve, state) = {
            let mut slots = self.slots();
            match slots.get_mut(name) {
                Some(slot) => {
                    slot.stats.touch();
                    (slot.finish_load(generation, result), Some(slot.state()))
                }
                None => (false, None),
            }
        };
        if let Some(state) = state {
            self.notify(name, state);
        }
        if serve {
            // Measured now; the estimate it was admitted on may have been low.
            self.enforce_budget(name);
        }
        serve
    }

    /// Stops admission, lets workers finish what they accepted, and joins them, waiting at most
    /// `timeout`. Returns false if some worker was still busy when the time ran out.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        self.inner.stopping.store(true, Ordering::Release);
        for slot in self.slots().values_mut() {
            slot.close();
        }
        let threads: Vec<_> =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let join = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        tokio::time::timeout(timeout, join).await.is_ok()
    }
}

async fn wait_loaded(name: &str, done: LoadResult) -> Result<()> {
    match done.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(Error::ModelNotReady {
            name: name.to_owned(),
            state: ModelState::Failed,
            reason: Some(reason.to_string()),
        }),
        Err(_) => Err(Error::Internal(format!(
            "the load of {name:?} was abandoned"
        ))),
    }
}
