//! One model's entry in the engine, and its lifecycle as a state machine (`Life`): each state
//! carries what it needs, and every change is a method below that says what it does from each
//! state. A reload loads the new version while the old one serves, and a failed reload leaves
//! the old one serving; a TensorRT engine builds beside the version serving.
//!
//! ```text
//!            begin_load                 finish_load Ok
//! Unloaded ─────────────▶ Loading ──────────────────────▶ Ready ◀──┐ begin_load (reload) /
//! Failed   ─────────────▶    │                              │  │   begin_build, finish_load
//!    ▲        finish_load Err│                        park  │  └───┘ (the old one serves on)
//!    └───────────────────────┘                              ▼
//!                             Loading (a wake) ◀── begin_load ── Parked
//! unload: any state ─▶ Unloaded (on request)      manifest_failed: ─▶ Failed, or Ready's error
//! ```

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use inferd_client::{KvCache, ModelState, ModelStatus};

use super::load::Loaded;
use crate::error::{Error, LoadError, Result};
use crate::manifest::{Kind, ModelSpec};
use crate::pool::Pool;
use crate::work::job::{Job, Tensors};
use crate::work::queue::{Queue, Stats};

/// A loaded version and the queue in front of its worker.
pub struct Serving {
    pub queue: Arc<Queue<Job>>,
    /// What it was loaded from: a parked model wakes with this version.
    pub spec: ModelSpec,
    pub info: Loaded,
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

/// A load in flight: its generation (a load finishing after a newer one began is discarded)
/// and the fingerprint of the files it reads.
#[derive(Debug, Clone, PartialEq)]
struct Load {
    generation: u64,
    fingerprint: String,
}

/// Unloaded to save memory (idle past `keep_alive`, or for the memory budget): the next request
/// loads this version again and waits. Kept through a wake that fails, so a later request can
/// try again.
#[derive(Clone)]
struct Parked {
    why: &'static str,
    spec: ModelSpec,
    fingerprint: Option<String>,
}

/// A TensorRT engine building beside the version serving, or why the last build failed.
#[derive(Debug, Clone, PartialEq)]
enum Build {
    Idle,
    Building { generation: u64, started: Instant },
    Failed(String),
}

struct Ready {
    serving: Arc<Serving>,
    /// The files behind `serving`, or behind the last reload that failed.
    fingerprint: Option<String>,
    /// A new version loading while this one serves.
    reload: Option<Load>,
    /// Why the last reload failed; this version kept serving.
    reload_failed: Option<String>,
    build: Build,
}

#[derive(Default)]
enum Life {
    #[default]
    Never,
    /// Unloaded on request: a rescan leaves it while its files stay `fingerprint`.
    Unloaded {
        fingerprint: Option<String>,
    },
    Loading {
        load: Load,
        /// Loading to wake a parked model.
        parked: Option<Parked>,
    },
    Failed {
        reason: String,
        fingerprint: Option<String>,
        /// A wake that failed: the parked version is kept for the next request.
        parked: Option<Parked>,
    },
    Ready(Ready),
    Parked(Parked),
}

#[derive(Default)]
pub struct Slot {
    pub stats: Arc<Stats>,
    kind: Option<Kind>,
    life: Life,
    generations: u64,
    /// When a request last woke it from parked (wakes are rate-limited).
    last_wake: Option<Instant>,
    /// What the last successful load measured, and where, kept while parked.
    measured: u64,
    pool: Option<Pool>,
    /// The manifest's `keep_alive_s`.
    keep_alive: Option<u64>,
}

impl Slot {
    pub fn state(&self) -> ModelState {
        match &self.life {
            Life::Ready(_) => ModelState::Ready,
            Life::Loading { .. } => ModelState::Loading,
            Life::Failed { .. } => ModelState::Failed,
            Life::Never | Life::Unloaded { .. } | Life::Parked(_) => ModelState::Unloaded,
        }
    }

    /// True when a rescan has nothing to do for this version of the files.
    pub fn is_current(&self, fp: &str) -> bool {
        let is = |f: &Option<String>| f.as_deref() == Some(fp);
        match &self.life {
            Life::Loading { load, .. }
            | Life::Ready(Ready {
                reload: Some(load), ..
            }) => load.fingerprint == fp,
            Life::Ready(r) => is(&r.fingerprint) && r.reload_failed.is_none(),
            // Parked models stay parked until a request wants them.
            Life::Unloaded { fingerprint } => is(fingerprint),
            Life::Parked(p) => is(&p.fingerprint),
            Life::Never | Life::Failed { .. } => false,
        }
    }

    fn next_generation(&mut self) -> u64 {
        self.generations += 1;
        self.generations
    }

    /// A load of the files `fingerprint` begins: the first, a reload beside the version serving,
    /// a wake of a parked model, or one that replaces a load in flight (whose result will be
    /// discarded).
    pub fn begin_load(&mut self, kind: Kind, fingerprint: String) -> u64 {
        let load = Load {
            generation: self.next_generation(),
            fingerprint,
        };
        let generation = load.generation;
        self.kind = Some(kind);
        self.life = match std::mem::take(&mut self.life) {
            Life::Ready(r) => Life::Ready(Ready {
                reload: Some(load),
                build: Build::Idle,
                ..r
            }),
            Life::Parked(p) => Life::Loading {
                load,
                parked: Some(p),
            },
            Life::Loading { parked, .. } | Life::Failed { parked, .. } => {
                Life::Loading { load, parked }
            }
            Life::Never | Life::Unloaded { .. } => Life::Loading { load, parked: None },
        };
        generation
    }

    /// Starts an engine build for the version serving now; `None` when none serves.
    pub fn begin_build(&mut self) -> Option<u64> {
        if !matches!(self.life, Life::Ready(_)) {
            return None;
        }
        let generation = self.next_generation();
        if let Life::Ready(r) = &mut self.life {
            r.build = Build::Building {
                generation,
                started: Instant::now(),
            };
        }
        Some(generation)
    }

    pub fn build_failed(&self) -> Option<&str> {
        match &self.life {
            Life::Ready(Ready {
                build: Build::Failed(e),
                ..
            }) => Some(e),
            _ => None,
        }
    }

    /// Records a finished load or engine build; returns whether its worker should serve. A
    /// result whose generation is no longer awaited is discarded.
    pub fn finish_load(
        &mut self,
        generation: u64,
        result: std::result::Result<Serving, LoadError>,
    ) -> bool {
        let life = std::mem::take(&mut self.life);
        let (life, serve) = match life {
            Life::Ready(mut r) if r.build.generation() == Some(generation) => match result {
                Ok(built) => {
                    self.loaded(&built);
                    r.build = Build::Idle;
                    replace(&mut r.serving, built);
                    (Life::Ready(r), true)
                }
                Err(e) => {
                    r.build = Build::Failed(e.to_string());
                    (Life::Ready(r), false)
                }
            },
            Life::Ready(mut r) if r.reload.as_ref().map(|l| l.generation) == Some(generation) => {
                let load = r.reload.take().expect("checked above");
                r.fingerprint = Some(load.fingerprint);
                match result {
                    Ok(new) => {
                        self.loaded(&new);
                        self.keep_alive = new.spec.manifest.keep_alive_s;
                        replace(&mut r.serving, new);
                        r.reload_failed = None;
                        (Life::Ready(r), true)
                    }
                    Err(e) => {
                        r.reload_failed = Some(reload_failure(&e.to_string()));
                        (Life::Ready(r), false)
                    }
                }
            }
            Life::Loading { load, .. } if load.generation == generation => match result {
                Ok(new) => {
                    self.loaded(&new);
                    self.keep_alive = new.spec.manifest.keep_alive_s;
                    let ready = Ready {
                        serving: Arc::new(new),
                        fingerprint: Some(load.fingerprint),
                        reload: None,
                        reload_failed: None,
                        build: Build::Idle,
                    };
                    (Life::Ready(ready), true)
                }
                Err(e) => (
                    Life::Failed {
                        reason: e.to_string(),
                        fingerprint: Some(load.fingerprint),
                        parked: None,
                    },
                    false,
                ),
            },
            other => (other, false),
        };
        self.life = life;
        serve
    }

    fn loaded(&mut self, new: &Serving) {
        if self.pool != Some(new.info.pool) {
            // A size from another pool says nothing about this one.
            self.measured = 0;
        }
        self.measured = new.info.memory_bytes.unwrap_or(self.measured);
        self.pool = Some(new.info.pool);
    }

    /// The manifest (or the room for the load) failed before any load began: a version
    /// serving keeps serving with the reason as its error, a parked one stays parked.
    pub fn manifest_failed(&mut self, reason: String) {
        self.life = match std::mem::take(&mut self.life) {
            Life::Ready(r) => Life::Ready(Ready {
                reload: None,
                fingerprint: None,
                reload_failed: Some(reload_failure(&reason)),
                ..r
            }),
            Life::Parked(p) => Life::Failed {
                reason,
                fingerprint: None,
                parked: Some(p),
            },
            Life::Loading { parked, .. } | Life::Failed { parked, .. } => Life::Failed {
                reason,
                fingerprint: None,
                parked,
            },
            Life::Never | Life::Unloaded { .. } => Life::Failed {
                reason,
                fingerprint: None,
                parked: None,
            },
        };
    }

    /// Unloaded on request: whatever it was doing stops (loads in flight are discarded when
    /// they finish), and a rescan leaves it while its files stay the same.
    pub fn unload(&mut self) {
        self.close();
        let fingerprint = match std::mem::take(&mut self.life) {
            Life::Ready(r) => r.fingerprint,
            Life::Unloaded { fingerprint } | Life::Failed { fingerprint, .. } => fingerprint,
            Life::Parked(p)
            | Life::Loading {
                parked: Some(p), ..
            } => p.fingerprint,
            Life::Loading { parked: None, .. } | Life::Never => None,
        };
        self.life = Life::Unloaded { fingerprint };
    }

    /// Unloads to free memory; `why` shows in the status until the next request reloads it.
    /// Only a serving version can be parked.
    pub fn park(&mut self, why: &'static str) {
        self.close();
        self.life = match std::mem::take(&mut self.life) {
            Life::Ready(r) => Life::Parked(Parked {
                why,
                spec: r.serving.spec.clone(),
                fingerprint: r.fingerprint,
            }),
            other => other,
        };
    }

    fn parked_info(&self) -> Option<&Parked> {
        match &self.life {
            Life::Parked(p)
            | Life::Loading {
                parked: Some(p), ..
            }
            | Life::Failed {
                parked: Some(p), ..
            } => Some(p),
            _ => None,
        }
    }

    /// The version a parked model had, and the fingerprint of its files then.
    pub fn parked_version(&self) -> Option<(&ModelSpec, Option<&str>)> {
        let p = self.parked_info()?;
        Some((&p.spec, p.fingerprint.as_deref()))
    }

    pub fn parked(&self) -> bool {
        self.parked_info().is_some()
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
        match &self.life {
            Life::Loading { .. }
            | Life::Ready(Ready {
                reload: Some(_), ..
            }) => self.measured,
            _ => 0,
        }
    }

    pub fn keep_alive(&self) -> Option<u64> {
        self.keep_alive
    }

    fn ready(&self) -> Option<&Ready> {
        match &self.life {
            Life::Ready(r) => Some(r),
            _ => None,
        }
    }

    /// Memory the serving version takes: measured, or else estimated from its files.
    pub fn memory(&self) -> u64 {
        self.ready().map_or(0, |r| {
            self.memory_known().unwrap_or(r.serving.info.estimate_bytes)
        })
    }

    /// What this or an earlier load in the same pool measured (`loaded` keeps it); `None`
    /// when no load was.
    pub fn memory_known(&self) -> Option<u64> {
        self.ready()?;
        (self.measured > 0).then_some(self.measured)
    }

    /// Ready, nothing queued or running, no reload or build: it can be unloaded without
    /// touching a request.
    pub fn idle(&self) -> bool {
        self.ready().is_some_and(|r| {
            r.serving.queue.depth() == 0
                && r.reload.is_none()
                && !matches!(r.build, Build::Building { .. })
        }) && self.stats.active.load(Ordering::Relaxed) == 0
    }

    /// Stops admission to the serving version; its worker drains and exits.
    pub fn close(&self) {
        if let Some(r) = self.ready() {
            r.serving.queue.close();
        }
    }

    /// Why the model cannot serve, or why its last reload failed.
    fn error(&self) -> Option<String> {
        match &self.life {
            Life::Failed { reason, .. } => Some(reason.clone()),
            Life::Ready(r) => r.reload_failed.clone(),
            _ => None,
        }
    }

    pub fn serving(&self, name: &str) -> Result<&Arc<Serving>> {
        self.ready()
            .map(|r| &r.serving)
            .ok_or_else(|| Error::ModelNotReady {
                name: name.to_owned(),
                state: self.state(),
                reason: self.error(),
            })
    }

    pub fn status(&self, name: &str) -> ModelStatus {
        let serving = self.ready().map(|r| &r.serving);
        let kv = serving.and_then(|s| s.info.kv);
        let placement = serving.map(|s| &s.info.placement);
        let skipped = placement
            .map(|p| p.skipped.join("; "))
            .filter(|s| !s.is_empty())
            .map(|s| format!("providers skipped: {s}"));
        let build = self.build_failed().map(str::to_owned);
        let parked = self
            .parked_info()
            .map(|p| format!("unloaded {}; the next request loads it", p.why));
        let note: Vec<String> = skipped.into_iter().chain(build).chain(parked).collect();
        let building = match self.ready().map(|r| &r.build) {
            Some(Build::Building { started, .. }) => Some(started.elapsed().as_secs()),
            _ => None,
        };
        ModelStatus {
            name: name.to_owned(),
            kind: self.kind.map(Kind::as_str).unwrap_or("unknown").to_owned(),
            state: self.state(),
            provider: placement
                .map(|p| p.provider.as_str())
                .unwrap_or_default()
                .to_owned(),
            error: self.error(),
            note: (!note.is_empty()).then(|| note.join("; ")),
            queue_depth: serving.map_or(0, |s| s.queue.depth() as u32),
            served: self.stats.served.load(Ordering::Relaxed),
            skipped: self.stats.skipped.load(Ordering::Relaxed),
            timed_out: self.stats.timed_out.load(Ordering::Relaxed),
            rejected: self.stats.rejected.load(Ordering::Relaxed),
            active: self.stats.active.load(Ordering::Relaxed) as u32,
            batched_tokens: self.stats.batched_tokens.load(Ordering::Relaxed),
            engine_build_s: building,
            memory_bytes: serving.and_then(|s| s.info.memory_bytes),
            memory_pool: serving.map(|s| s.info.pool.to_string()),
            kv: kv.map(|k| KvCache {
                kv_cache_bytes: k.limit_bytes,
                kv_bytes_per_token: k.bytes_per_token,
                kv_bytes_in_use: self.stats.kv_bytes_in_use.load(Ordering::Relaxed),
                full_context_streams: k.full_context_streams,
            }),
            idle_s: serving.map(|_| self.stats.idle().as_secs()),
            last_error: self.stats.last_error(),
        }
    }
}

impl Build {
    fn generation(&self) -> Option<u64> {
        match self {
            Build::Building { generation, .. } => Some(*generation),
            _ => None,
        }
    }
}

/// Swaps in a new version; the old one stops taking requests and its worker drains.
fn replace(serving: &mut Arc<Serving>, new: Serving) {
    std::mem::replace(serving, Arc::new(new)).queue.close();
}

fn reload_failure(reason: &str) -> String {
    format!("reload failed, the previous version keeps serving: {reason}")
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

#[cfg(test)]
#[path = "slot_tests.rs"]
mod tests;
