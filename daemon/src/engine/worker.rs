//! A model's worker: one OS thread that loads the session, owns it, and serves its queue.
//!
//! `Session::run` takes `&mut self`, so ownership by one thread needs no lock, and inference never
//! blocks the async runtime.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::context::LoadContext;
use super::load::{self, Loaded};
use super::providers::Mode;
use crate::error::LoadError;
use crate::manifest::ModelSpec;
use crate::pool::Pool;
use crate::work::job::Job;
use crate::work::queue::{BatchPolicy, Queue};

/// Starts the thread. `on_loaded` reports the load result and says whether to serve; it returns
/// false when the load was superseded meanwhile (unloaded, or a newer version started).
pub fn spawn(
    spec: ModelSpec,
    ctx: LoadContext,
    mode: Mode,
    queue: Arc<Queue<Job>>,
    on_loaded: impl FnOnce(Result<Loaded, LoadError>) -> bool + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("model-{}", spec.name))
        .spawn(move || {
            let started = std::time::Instant::now();
            // Under a memory budget, loads take turns so each one's growth is its own; without
            // one, a slow load must not hold up the others. TensorRT engine builds take
            // minutes and never wait; what overlaps one is estimated instead.
            let exclusive = ctx.budgeted() && mode == Mode::Serve;
            let planned = ctx.planned_pool(&spec.manifest.execution);
            // The library loads with the first model, outside what the model is measured by.
            if let Err(e) = ctx.runtime.env() {
                queue.close();
                on_loaded(Err(e.into()));
                return;
            }
            let (loaded, grew) = measured(exclusive, planned, || {
                catch_unwind(AssertUnwindSafe(|| load::load(&spec, &ctx, mode)))
                    .unwrap_or_else(|_| Err(LoadError::Panicked))
            });
            let (mut model, mut info) = match loaded {
                Ok(ok) => ok,
                Err(e) => {
                    queue.close();
                    on_loaded(Err(e));
                    return;
                }
            };
            let kv = info.kv.map_or(0, |k| k.limit_bytes);
            info.memory_bytes = grew.get(info.pool).map(|b| b + kv);
            info.estimate_bytes = super::budget::estimate(&spec) + kv;
            crate::metrics::get().loaded(&spec.name, started.elapsed().as_secs_f64());
            tracing::info!(
                model = %spec.name,
                provider = info.placement.provider.as_str(),
                ms = started.elapsed().as_millis() as u64,
                mb = info.memory_bytes.map(|b| b >> 20),
                pool = %info.pool,
                "model loaded"
            );
            if !on_loaded(Ok(info)) {
                queue.close();
                return;
            }
            let b = &spec.manifest.batching;
            let policy = BatchPolicy {
                max_batch: b.max_batch,
                max_wait: Duration::from_millis(b.max_wait_ms),
            };
            model.serve(&queue, policy);
            tracing::debug!(model = %spec.name, "worker stopped");
        })
}

/// How much each measured pool grew during a load; empty when another load overlapped it (the
/// growth was not its own).
struct Growth(Vec<(Pool, u64)>);

impl Growth {
    fn get(&self, pool: Pool) -> Option<u64> {
        self.0.iter().find(|(p, _)| *p == pool).map(|(_, b)| *b)
    }
}

/// Runs a load and measures host RAM and, when the load should land on a GPU, that device's
/// memory around it. `exclusive` loads take turns, so theirs is always measured.
fn measured<T>(exclusive: bool, planned: Pool, load: impl FnOnce() -> T) -> (T, Growth) {
    static LOADING: Mutex<()> = Mutex::new(());
    static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    let _turn = exclusive.then(|| LOADING.lock().unwrap_or_else(|p| p.into_inner()));
    let others_running = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) > 0;
    let mine = STARTED.fetch_add(1, Ordering::SeqCst) + 1;
    let mut pools = vec![Pool::Host];
    if planned != Pool::Host {
        pools.push(planned);
    }
    let before: Vec<Option<u64>> = pools.iter().map(|p| p.used()).collect();
    let out = load();
    let grew: Vec<(Pool, u64)> = pools
        .into_iter()
        .zip(before)
        .filter_map(|(p, before)| Some((p, p.used()?.saturating_sub(before?))))
        .collect();
    let overlapped = others_running || STARTED.load(Ordering::SeqCst) != mine;
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    (out, Growth(if overlapped { Vec::new() } else { grew }))
}
