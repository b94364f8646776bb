//! One model's entry in the engine: the version serving now, a version loading, and why the last
//! attempt failed. Keeping both versions is what lets a failed reload leave the old one serving.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use inferd_client::{ModelState, ModelStatus};

use super::job::{Job, Tensors};
use super::pool::Pool;
use super::queue::{Queue, Stats};
use crate::error::{Error, LoadError, Result};
use crate::kinds::Loaded;
use crate::manifest::{Kind, ModelSpec};

/// A loaded version and the queue in front of its worker.
pub struct Serving {
    pub queue: Arc<Queue<Job>>,
    /// What it was loaded from: a parked model wakes with this version.
    pub spec: ModelSpec,
    pub info: Loaded,
}

#[derive(Default)]
pub struct Slot {
    pub stats: Arc<Stats>,
    kind: Option<Kind>,
    serving: Option<Arc<Serving>>,
    /// Generation of the load in flight, if any; older loads finishing late are discarded.
    loading: Option<u64>,
    /// Fingerprint of the files behind the load in flight.
    loading_fingerprint: Option<String>,
    generations: u64,
    /// Why the last load failed (alone, or while an older version keeps serving).
    failed: Option<String>,
    /// Unloaded on request: a rescan leaves it unloaded unless its files change.
    unloaded: bool,
    /// Fingerprint of the files behind the serving version, or the last failed attempt.
    fingerprint: Option<String>,
    /// Generation and start of a TensorRT engine build; the serving version stays until it
    /// is done.
    building: Option<(u64, Instant)>,
    /// Why the last engine build failed (the version serving stays).
    build_failed: Option<String>,
    /// Unloaded to save memory (idle past `keep_alive`, or for the memory budget): the next
    /// request loads this version again and waits.
    parked: Option<Parked>,
    /// When a request last woke it from parked (wakes are rate-limited).
    last_wake: Option<Instant>,
    /// What the last successful load measured, and where, kept while parked.
    measured: u64,
    pool: Option<Pool>,
    /// The manifest's `keep_alive_s`.
    keep_alive: Option<u64>,
}

/// A parked model: why, the version it had, and the fingerprint of its files then (kept here:
/// a wake that fails, say for the memory budget, must not lose it).
struct Parked {
    why: &'static str,
    spec: ModelSpec,
    fingerprint: Option<String>,
}

/// Changes whenever the manifest or a file it names changes.
pub fn fingerprint(spec: &ModelSpec) -> String {
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| format!("{}:{:?}", m.len(), m.modified().ok()))
            .unwrap_or_default()
    };
    format!(
        "{:?}|{}|{}",
        spec.manifest,
        stamp(&spec.model_path),
        spec.tokenizer_path
            .as_deref()
            .map(stamp)
            .unwrap_or_default()
    )
}

impl Slot {
    pub fn state(&self) -> ModelState {
        if self.serving.is_some() {
            ModelState::Ready
        } else if self.loading.is_some() {
            ModelState::Loading
        } else if self.failed.is_some() {
            ModelState::Failed
        } else {
            ModelState::Unloaded
        }
    }

    /// True when a rescan has nothing to do for this version of the files.
    pub fn is_current(&self, fp: &str) -> bool {
        if self.loading.is_some() {
            return self.loading_fingerprint.as_deref() == Some(fp);
        }
        let same = self.fingerprint.as_deref() == Some(fp);
        // Parked models stay parked until a request wants them.
        same && (self.unloaded
            || self.parked.is_some()
            || (self.failed.is_none() && self.serving.is_some()))
    }

    pub fn begin_load(&mut self, kind: Kind, fingerprint: String) -> u64 {
        self.generations += 1;
        self.loading = Some(self.generations);
        self.loading_fingerprint = Some(fingerprint);
        self.kind = Some(kind);
        self.unloaded = false;
        self.building = None;
        self.build_failed = None;
        self.generations
    }

    /// Starts an engine build for the version serving now.
    pub fn begin_build(&mut self) -> u64 {
        self.generations += 1;
        self.building = Some((self.generations, Instant::now()));
        self.build_failed = None;
        self.generations
    }

    pub fn build_failed(&self) -> Option<&str> {
        self.build_failed.as_deref()
    }

    /// Records a finished load; returns whether its worker should serve.
    pub fn finish_load(
        &mut self,
        generation: u64,
        result: std::result::Result<Serving, LoadError>,
    ) -> bool {
        if self.building.is_some_and(|(g, _)| g == generation) {
            self.building = None;
            return match result {
                Ok(built) => {
                    self.loaded(&built);
                    if let Some(old) = self.serving.replace(Arc::new(built)) {
                        old.queue.close();
                    }
                    true
                }
                Err(e) => {
                    self.build_failed = Some(e.to_string());
                    false
                }
            };
        }
        if self.loading != Some(generation) {
            return false;
        }
        self.loading = None;
        self.parked = None;
        self.fingerprint = self.loading_fingerprint.take();
        match result {
            Ok(new) => {
                self.loaded(&new);
                self.keep_alive = new.spec.manifest.keep_alive_s;
                if let Some(old) = self.serving.replace(Arc::new(new)) {
                    old.queue.close();
                }
                self.failed = None;
                true
            }
            Err(e) => {
                self.record_failure(e.to_string());
                false
            }
        }
    }

    fn loaded(&mut self, new: &Serving) {
        if self.pool != Some(new.info.pool) {
            // A size from another pool says nothing about this one.
            self.measured = 0;
        }
        self.measured = new.info.memory_bytes.unwrap_or(self.measured);
        self.pool = Some(new.info.pool);
    }

    pub fn manifest_failed(&mut self, reason: String) {
        self.loading = None;
        self.loading_fingerprint = None;
        self.fingerprint = None;
        self.record_failure(reason);
    }

    fn record_failure(&mut self, reason: String) {
        self.failed = Some(if self.serving.is_some() {
            format!("reload failed, the previous version keeps serving: {reason}")
        } else {
            reason
        });
    }

    pub fn unload(&mut self) {
        self.close();
        self.serving = None;
        self.loading = None;
        self.loading_fingerprint = None;
        self.failed = None;
        self.building = None;
        self.parked = None;
        self.unloaded = true;
    }

    /// Unloads to free memory; `why` shows in the status until the next request reloads it.
    /// Only a serving version can be parked.
    pub fn park(&mut self, why: &'static str) {
        self.close();
        self.building = None;
        if let Some(s) = self.serving.take() {
            self.parked = Some(Parked {
                why,
                spec: s.spec.clone(),
                fingerprint: self.fingerprint.clone(),
            });
        }
    }

    /// The version a parked model had, and the fingerprint of its files then.
    pub fn parked_version(&self) -> Option<(&ModelSpec, Option<&str>)> {
        let p = self.parked.as_ref()?;
        Some((&p.spec, p.fingerprint.as_deref()))
    }

    /// How long a wake must wait to keep wakes at most one per `interval`; `None`: now.
    pub fn wake_wait(&self, interval: std::time::Duration) -> Option<std::time::Duration> {
        let next = self.last_wake? + interval;
        next.checked_duration_since(Instant::now())
    }

    pub fn woke(&mut self) {
        self.last_wake = Some(Instant::now());
    }

    pub fn measured(&self) -> u64 {
        self.measured
    }

    /// Where the last loaded version lives (kept while parked); `None` before any load.
    pub fn pool(&self) -> Option<Pool> {
        self.pool
    }

    /// While a load is in flight: the memory it took last time (0 if never measured).
    pub fn loading_reserve(&self) -> u64 {
        if self.loading.is_some() {
            self.measured
        } else {
            0
        }
    }

    pub fn keep_alive(&self) -> Option<u64> {
        self.keep_alive
    }

    pub fn parked(&self) -> bool {
        self.parked.is_some()
    }

    /// Memory the serving version takes: measured, or else estimated from its files.
    pub fn memory(&self) -> u64 {
        self.serving
            .as_ref()
            .map_or(0, |s| self.memory_known().unwrap_or(s.info.estimate_bytes))
    }

    /// What this or an earlier load in the same pool measured (`loaded` keeps it); `None`
    /// when no load was.
    pub fn memory_known(&self) -> Option<u64> {
        self.serving.as_ref()?;
        (self.measured > 0).then_some(self.measured)
    }

    /// Ready, nothing queued or running: it can be unloaded without touching a request.
    pub fn idle(&self) -> bool {
        self.serving.as_ref().is_some_and(|s| s.queue.depth() == 0)
            && self.stats.active.load(Ordering::Relaxed) == 0
            && self.loading.is_none()
            && self.building.is_none()
    }

    /// Stops admission to the serving version; its worker drains and exits.
    pub fn close(&self) {
        if let Some(s) = &self.serving {
            s.queue.close();
        }
    }

    pub fn serving(&self, name: &str) -> Result<&Arc<Serving>> {
        self.serving.as_ref().ok_or_else(|| Error::ModelNotReady {
            name: name.to_owned(),
            state: self.state(),
            reason: self.failed.clone(),
        })
    }

    pub fn status(&self, name: &str) -> ModelStatus {
        let placement = self.serving.as_ref().map(|s| &s.info.placement);
        let skipped = placement
            .map(|p| p.skipped.join("; "))
            .filter(|s| !s.is_empty())
            .map(|s| format!("providers skipped: {s}"));
        let build = self.build_failed.clone();
        let parked = self
            .parked
            .as_ref()
            .map(|p| format!("unloaded {}; the next request loads it", p.why));
        let note: Vec<String> = skipped.into_iter().chain(build).chain(parked).collect();
        ModelStatus {
            name: name.to_owned(),
            kind: self.kind.map(Kind::as_str).unwrap_or("unknown").to_owned(),
            state: self.state(),
            provider: placement
                .map(|p| p.provider.as_str())
                .unwrap_or_default()
                .to_owned(),
            error: self.failed.clone(),
            note: (!note.is_empty()).then(|| note.join("; ")),
            queue_depth: self.serving.as_ref().map_or(0, |s| s.queue.depth() as u32),
            served: self.stats.served.load(Ordering::Relaxed),
            skipped: self.stats.skipped.load(Ordering::Relaxed),
            timed_out: self.stats.timed_out.load(Ordering::Relaxed),
            rejected: self.stats.rejected.load(Ordering::Relaxed),
            active: self.stats.active.load(Ordering::Relaxed) as u32,
            batched_tokens: self.stats.batched_tokens.load(Ordering::Relaxed),
            engine_build_s: self.building.map(|(_, t)| t.elapsed().as_secs()),
            memory_bytes: self.serving.as_ref().and_then(|s| s.info.memory_bytes),
            memory_pool: self.serving.as_ref().map(|s| s.info.pool.to_string()),
            kv_cache_bytes: self.serving.as_ref().and_then(|s| s.info.kv_cache_bytes),
            idle_s: self.serving.as_ref().map(|_| self.stats.idle().as_secs()),
            last_error: self.stats.last_error(),
        }
    }
}

impl Serving {
    /// Checks names, dtypes and shapes against the model's declared inputs.
    pub fn check_inputs(&self, inputs: &Tensors) -> Result<()> {
        let declared = &self.info.inputs;
        let names: BTreeSet<&str> = declared.iter().map(|s| s.name.as_str()).collect();
        let list = || {
            declared
                .iter()
                .map(|s| format!("{} ({})", s.name, s.describe()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(unknown) = inputs.keys().find(|k| !names.contains(k.as_str())) {
            return Err(Error::InvalidInput(format!(
                "unknown input {unknown:?}; the model's inputs are: {}",
                list()
            )));
        }
        if let Some(missing) = declared.iter().find(|s| !inputs.contains_key(&s.name)) {
            return Err(Error::InvalidInput(format!(
                "missing input {:?}; the model's inputs are: {}",
                missing.name,
                list()
            )));
        }
        for spec in declared {
            spec.check(&inputs[&spec.name])?;
        }
        Ok(())
    }
}
