//! Memory: the budget checked before every load, and idle unloads (`keep_alive`). A model
//! unloaded here is *parked*: the next request for it loads it again and waits.
//!
//! Each memory pool (host RAM, each GPU) has its own budget, and a model counts only in the pool
//! its session lives in. Sizes are what each load measured (RSS or device-memory growth while
//! its session opened); a model never loaded before is estimated from its files.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use inferd_client::ModelState;

use super::{Engine, Slot};
use crate::error::LoadError;
use crate::manifest::ModelSpec;
use crate::pool::Pool;

impl Engine {
    /// Makes room for `spec` under its pool's budget by parking the least recently used idle
    /// models in that pool; fails, unloading nothing, when even that would not be enough.
    pub(super) fn make_room(&self, spec: &ModelSpec) -> Result<(), LoadError> {
        let ctx = &self.inner.ctx;
        if !ctx.budgeted() {
            return Ok(());
        }
        // From the manifest as it is now (it may have changed since the last load), outside
        // the lock: the first question to a GPU initialises the CUDA driver.
        let pool = ctx.planned_pool(&spec.manifest.execution);
        let Some(budget) = ctx.budget(pool) else {
            return Ok(());
        };
        let mut slots = self.slots();
        let need = slots
            .get(&spec.name)
            .filter(|s| s.pool() == Some(pool))
            .map(Slot::measured)
            .filter(|&m| m > 0)
            .unwrap_or_else(|| estimate(spec));
        // The version being replaced goes away once the new one serves; other loads in flight
        // hold what they measured last time.
        let used: u64 = slots
            .iter()
            .filter(|(n, s)| **n != spec.name && s.pool() == Some(pool))
            .map(|(_, s)| s.memory().max(s.loading_reserve()))
            .sum();
        let idle = lru_idle(&slots, &spec.name, pool);
        let freeable: u64 = idle.iter().map(|m| m.1).sum();
        if used - freeable + need > budget {
            return Err(LoadError::MemoryBudget(format!(
                "loading {:?} needs about {} MiB of {}; {} is {} MiB and {} MiB are held by models that are busy or loading",
                spec.name,
                need >> 20,
                pool.describe(),
                ctx.budget_key(pool),
                budget >> 20,
                (used - freeable) >> 20
            )));
        }
        let (parked, _) = park_until(&mut slots, idle, used, budget.saturating_sub(need));
        drop(slots);
        self.parked(&parked, &spec.name);
        Ok(())
    }

    /// After a load measured more than estimated: parks idle models in its pool until the
    /// total fits again (best effort; busy models stay).
    pub(super) fn enforce_budget(&self, loaded: &str) {
        let ctx = &self.inner.ctx;
        let mut slots = self.slots();
        let Some(pool) = slots.get(loaded).and_then(Slot::pool) else {
            return;
        };
        let Some(budget) = ctx.budget(pool) else {
            return;
        };
        let used: u64 = slots
            .values()
            .filter(|s| s.pool() == Some(pool))
            .map(Slot::memory)
            .sum();
        let idle = lru_idle(&slots, loaded, pool);
        let (parked, used) = park_until(&mut slots, idle, used, budget);
        drop(slots);
        if used > budget {
            tracing::warn!(
                pool = %pool,
                used_mib = used >> 20,
                budget_mib = budget >> 20,
                "loaded models exceed {} and none is idle",
                ctx.budget_key(pool)
            );
        }
        self.parked(&parked, loaded);
    }

    /// What the ready models take in each pool, against its budget. Host RAM is always listed;
    /// a GPU once a model lives on it.
    pub fn memory_pools(&self) -> Vec<inferd_client::MemoryPool> {
        let mut used = BTreeMap::from([(Pool::Host, (0, 0))]);
        for slot in self.slots().values() {
            if let (Some(pool), true) = (slot.pool(), slot.state() == ModelState::Ready) {
                let (bytes, estimated) = used.entry(pool).or_default();
                *bytes += slot.memory();
                *estimated += u32::from(slot.memory_known().is_none());
            }
        }
        used.into_iter()
            .map(|(pool, (bytes, estimated))| inferd_client::MemoryPool {
                pool: pool.to_string(),
                models_bytes: bytes,
                estimated,
                budget_bytes: self.inner.ctx.budget(pool),
            })
            .collect()
    }

    fn parked(&self, names: &[String], for_model: &str) {
        for name in names {
            tracing::info!(model = %name, for_model, "unloaded (least recently used) for the memory budget");
            self.notify(name, ModelState::Unloaded);
        }
    }

    /// Starts loading a parked model again for a request, unless a load already runs. It loads
    /// the version it had: changed files load only through Reload (or SIGHUP), and until then
    /// the model answers why. Wakes are rate-limited per model (`engine.min_wake_interval_ms`,
    /// so requests alternating between models that do not fit together cannot keep inferd
    /// loading); `Ok(Some(wait))` says how long until this one may wake it.
    pub(super) fn wake(&self, name: &str) -> crate::error::Result<Option<Duration>> {
        let _one_at_a_time = self.inner.waking.lock().unwrap_or_else(|p| p.into_inner());
        let parked = |slots: &HashMap<String, Slot>| {
            let slot = slots
                .get(name)
                .filter(|s| s.parked() && s.state() != ModelState::Loading)?;
            let (spec, fingerprint) = slot.parked_version()?;
            Some((spec.clone(), fingerprint.map(str::to_owned)))
        };
        let Some((spec, fingerprint)) = parked(&self.slots()) else {
            return Ok(None);
        };
        // Outside the lock: it reads the files' metadata.
        if fingerprint.as_deref() != Some(super::slot::fingerprint(&spec).as_str()) {
            return Err(crate::error::Error::ModelNotReady {
                name: name.to_owned(),
                state: ModelState::Unloaded,
                reason: Some(
                    "its files changed while it was unloaded; Reload (or SIGHUP) loads the new version"
                        .into(),
                ),
            });
        }
        {
            let mut slots = self.slots();
            let Some(slot) = slots.get_mut(name) else {
                return Ok(None);
            };
            if let Some(wait) = slot.wake_wait(self.inner.ctx.min_wake_interval) {
                return Ok(Some(wait));
            }
            slot.woke();
        }
        tracing::info!(model = %name, "loading again for a request");
        // The requests waiting for it follow its state; nobody needs this receiver.
        drop(self.start_load(spec));
        Ok(None)
    }

    /// Parks every ready model idle for longer than its `keep_alive`.
    fn reap_idle(&self) {
        let default = self.inner.ctx.keep_alive;
        let mut parked = Vec::new();
        {
            let mut slots = self.slots();
            for (name, slot) in slots.iter_mut() {
                let keep = slot
                    .keep_alive()
                    .map(|s| (s > 0).then(|| Duration::from_secs(s)))
                    .unwrap_or(default);
                if keep.is_some_and(|k| slot.idle() && slot.stats.idle() >= k) {
                    slot.park("after its keep_alive");
                    parked.push(name.clone());
                }
            }
        }
        for name in parked {
            tracing::info!(model = %name, "unloaded after its keep_alive; the next request loads it again");
            self.notify(&name, ModelState::Unloaded);
        }
    }

    pub(super) fn spawn_reaper(&self) {
        let weak = std::sync::Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                Engine { inner }.reap_idle();
            }
        });
    }
}

/// Idle models in `pool` other than `except`, least recently used first, with their sizes.
fn lru_idle(slots: &HashMap<String, Slot>, except: &str, pool: Pool) -> Vec<(String, u64)> {
    let mut idle: Vec<(&String, &Slot)> = slots
        .iter()
        .filter(|(n, s)| *n != except && s.idle() && s.pool() == Some(pool))
        .collect();
    idle.sort_by_key(|(_, s)| std::cmp::Reverse(s.stats.idle()));
    idle.into_iter()
        .map(|(n, s)| (n.clone(), s.memory()))
        .collect()
}

/// Parks models from `candidates` in order until `used` is at most `limit`; returns the
/// parked names and what is used after.
fn park_until(
    slots: &mut HashMap<String, Slot>,
    candidates: Vec<(String, u64)>,
    mut used: u64,
    limit: u64,
) -> (Vec<String>, u64) {
    let mut parked = Vec::new();
    for (name, bytes) in candidates {
        if used <= limit {
            break;
        }
        if let Some(slot) = slots.get_mut(&name) {
            slot.park("for the memory budget");
            used = used.saturating_sub(bytes);
            parked.push(name);
        }
    }
    (parked, used)
}

/// Until a model is measured: its files, which its weights dominate.
pub(super) fn estimate(spec: &ModelSpec) -> u64 {
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let dir = spec.model_path.parent();
    let data: u64 = dir
        .and_then(|d| std::fs::read_dir(d).ok())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".data"))
        .map(|e| size(&e.path()))
        .sum();
    size(&spec.model_path) + data
}
