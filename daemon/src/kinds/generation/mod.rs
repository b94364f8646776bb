//! `text-generation`: KV-cache decoding of decoder-only LLMs exported in the optimum layout
//! (`position_ids` input) or by the onnxruntime-genai builder (no `position_ids`).
//!
//! Prompts arrive tokenized (`prompt.rs`, run by the engine before the queue). A new sequence
//! runs its prompt alone, with its own cache (or a copy of a cached prefix), at most
//! `prefill_chunk` tokens a step, so a long prompt never holds up the others' decode steps.
//! It then joins the continuous batch (`kv_batch`): every decode step runs all joined sequences
//! at once, their rows aligned as the graph needs (behind left padding for graphs with
//! `position_ids`, from position 0 for GroupQueryAttention, which counts each row's length
//! from the attention mask). Graphs that can do neither keep one cache per sequence and are
//! stepped in turn, a token each, so no request waits for another to finish. A new request
//! starts at the next step; a finished, cancelled or abandoned one leaves at the end of its
//! step and its cache is freed.
//!
//! Priorities: free slots go to interactive requests first. When every slot is busy and an
//! interactive request waits, background sequences beyond the guaranteed minimum
//! (`engine.background_share` of the slots) are paused: they give up their cache and slot but
//! keep their tokens, and resume (cache recomputed) when a slot frees, before new background
//! requests. The text of a paused sequence is the same as if it had never paused.

mod cache;
mod constrain;
mod facts;
mod forward;
mod kv_batch;
mod kv_room;
mod prefix;
mod prompt;
mod sampler;
mod schedule;
mod sequence;
mod speculate;
mod template;
pub mod text;
mod tools;

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ort::session::Session;
use ort::value::DynValue;
use tokenizers::Tokenizer;

use self::cache::KvMemory;
use self::facts::Facts;
use self::kv_batch::{Align, KvBatch};
pub use self::kv_room::KvFacts;
use self::kv_room::KvRoom;
pub use self::prompt::PromptEncoder;
use self::sequence::Sequence;
use self::speculate::Speculation;
use self::template::ChatTemplate;
use super::Model;
use crate::error::{Error, LoadError, Result};
use crate::manifest::ModelSpec;
use crate::onnx_files::ModelFile;
use crate::pool::Pool;
use crate::tensor::Spec;
use crate::work::job::{Event, Job};
use crate::work::queue::{BatchPolicy, Queue};
use inferd_client::DType;

/// Shape facts of the graph's KV cache.
struct CacheLayout {
    past: Vec<String>,
    present: Vec<String>,
    kv_heads: usize,
    head_dim: usize,
    dtype: DType,
    position_ids: bool,
    /// How sequences share a batched step: rows right-aligned (graphs with `position_ids`) or
    /// left-aligned (GroupQueryAttention); `None`: the graph cannot batch, and sequences are
    /// stepped in turn.
    batch: Option<Align>,
    /// GroupQueryAttention writes the cache in place: each sequence's (and the batch's) cache
    /// has room for all the positions it may reach, and is bound as both past and present.
    shared: bool,
    /// The graph takes `num_logits_to_keep` (inferd's importer writes it, with a default): fed
    /// 1, a prompt's LM head runs for its last position only.
    logits_to_keep: bool,
    /// Where cache tensors live: the memory the session computes in.
    memory: KvMemory,
}

/// Drafted tokens a step checks at most, by default and at all (`generation.speculative_tokens`).
const DEFAULT_DRAFT: usize = 8;
const MAX_DRAFT: usize = 32;

pub struct TextGeneration {
    name: String,
    session: Session,
    /// For detokenizing; the `PromptEncoder` shares it.
    tokenizer: Arc<Tokenizer>,
    facts: Facts,
    layout: CacheLayout,
    max_sequences: usize,
    /// Prompt tokens one step runs at most (`generation.prefill_chunk`).
    prefill_chunk: usize,
    /// Sequences stepped with their own cache: new ones (prompt not run yet), and all of them
    /// when the graph cannot batch.
    alone: Vec<Sequence>,
    /// Sequences in the continuous batch, row for row with `kv`.
    batched: Vec<Sequence>,
    /// Sequences without a cache, oldest first: background ones that gave their slot to
    /// interactive work, and new ones waiting for cache room (`kv_room`).
    paused: VecDeque<Sequence>,
    /// Slots background work keeps while interactive work waits (its minimum share).
    min_background: usize,
    kv: KvBatch,
    room: KvRoom,
    prefixes: prefix::PrefixCache,
    /// Prompt-lookup drafts for a sequence decoding alone (`speculate.rs`).
    speculation: Speculation,
    batch_sizes: prometheus_client::metrics::histogram::Histogram,
    /// Drafted tokens taken and not taken.
    drafted: crate::metrics::Drafted,
}

fn genai_config(dir: &std::path::Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("genai_config.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn genai_dim(dir: &std::path::Path, key: &str) -> Option<usize> {
    genai_config(dir)?["model"]["decoder"][key]
        .as_u64()
        .map(|x| x as usize)
}

/// The session's own memory for the cache: a GPU session's stays on its device.
fn kv_memory(name: &str, session: &Session, pool: Pool) -> KvMemory {
    // A simulated TensorRT session (tests) computes on the host.
    let Pool::Gpu(device) = pool else {
        return KvMemory::host();
    };
    if crate::gpu::simulation().is_some() {
        return KvMemory::host();
    }
    KvMemory::cuda(session, device).unwrap_or_else(|e| {
        tracing::warn!(model = %name, error = %e, "no CUDA allocator for the KV cache; it is kept in host memory and copied to the GPU every step");
        KvMemory::host()
    })
}

impl TextGeneration {
    /// The worker's model, and the encoder the engine tokenizes prompts with.
    pub fn new(
        spec: &ModelSpec,
        session: Session,
        inputs: &[Spec],
        graph: &ModelFile,
        pool: Pool,
        background_share: f64,
    ) -> Result<(Self, PromptEncoder), LoadError> {
        let bad = |m: String| LoadError::Graph(m);
        let has = |n: &str| inputs.iter().any(|s| s.name == n);
        for n in ["input_ids", "attention_mask"] {
            if !has(n) {
                return Err(bad(format!("text-generation model has no {n:?} input")));
            }
        }
        let layers = (0..)
            .take_while(|i| has(&format!("past_key_values.{i}.key")))
            .count();
        if layers == 0 || !session.outputs().iter().any(|o| o.name() == "logits") {
            return Err(bad("expected inputs past_key_values.{i}.key/value and output logits (optimum or onnxruntime-genai layout)".into()));
        }
        let past0 = inputs
            .iter()
            .find(|s| s.name == "past_key_values.0.key")
            .expect("counted above");
        let dim = |i: usize, key: &str| {
            past0
                .shape
                .get(i)
                .filter(|d| **d > 0)
                .map(|d| *d as usize)
                .or_else(|| genai_dim(&spec.dir, key))
                .ok_or_else(|| {
                    bad(format!(
                        "cannot tell {key} from the graph; add it to genai_config.json"
                    ))
                })
        };
        let dtype = match past0.dtype {
            Some(d @ (DType::Float32 | DType::Float16)) => d,
            other => return Err(bad(format!("KV cache of type {other:?} is not supported"))),
        };
        let layout = CacheLayout {
            past: (0..layers)
                .flat_map(|i| {
                    [
                        format!("past_key_values.{i}.key"),
                        format!("past_key_values.{i}.value"),
                    ]
                })
                .collect(),
            present: (0..layers)
                .flat_map(|i| [format!("present.{i}.key"), format!("present.{i}.value")])
                .collect(),
            kv_heads: dim(1, "num_key_value_heads")?,
            head_dim: dim(3, "head_size")?,
            dtype,
            position_ids: has("position_ids"),
            batch: if has("position_ids") {
                Some(Align::Right)
            } else if graph.uses("GroupQueryAttention") {
                Some(Align::Left)
            } else {
                None
            },
            // As onnxruntime-genai does: when its config asks for it (the builder's does), or
            // the manifest.
            shared: graph.uses("GroupQueryAttention")
                && spec.manifest.generation.share_buffer.unwrap_or_else(|| {
                    genai_config(&spec.dir).is_some_and(|c| {
                        c["search"]["past_present_share_buffer"] == serde_json::Value::Bool(true)
                    })
                }),
            logits_to_keep: has(forward::KEEP)
                || session
                    .overridable_initializers()
                    .iter()
                    .any(|i| i.name() == forward::KEEP),
            memory: kv_memory(&spec.name, &session, pool),
        };
        let tok_path = spec
            .tokenizer_path
            .clone()
            .ok_or_else(|| bad("text-generation model without a tokenizer".into()))?;
        let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| LoadError::Tokenizer {
            path: tok_path.clone(),
            message: e.to_string(),
        })?;
        let tokenizer = Arc::new(tokenizer);
        let mut facts = facts::read(&spec.dir, &spec.manifest.generation)?;
        let template = facts
            .chat_template
            .as_deref()
            .map(ChatTemplate::new)
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        let max_sequences = spec.manifest.generation.max_sequences.unwrap_or(8).max(1);
        let room = KvRoom::new(
            &layout,
            match spec.manifest.generation.kv_cache_tokens {
                Some(0) => return Err(bad("generation.kv_cache_tokens must be at least 1".into())),
                Some(n) => n,
                None => max_sequences * facts.context_length,
            },
        );
        // No single request may need more than all the room there is.
        if room.tokens < facts.context_length {
            facts.context_length = room.tokens;
            facts.context_is_kv_room = true;
        }
        let grammars =
            constrain::Grammars::new(tokenizer.clone(), tok_path, facts.eos.first().copied());
        let encoder = PromptEncoder::new(
            &spec.name,
            tokenizer.clone(),
            template,
            facts.clone(),
            grammars,
        );
        let layout_align = layout.batch.unwrap_or_default();
        tracing::debug!(
            model = %spec.name,
            batch = ?layout.batch,
            share_buffer = layout.shared,
            kv_cache = %layout.memory.describe(),
            kv_cache_tokens = room.tokens,
            kv_cache_mib = room.bytes() >> 20,
            layers,
            "text generation decode path"
        );
        let model = TextGeneration {
            prefill_chunk: spec.manifest.generation.prefill_chunk.unwrap_or(512).max(1),
            name: spec.name.clone(),
            session,
            tokenizer,
            layout,
            max_sequences,
            // At least one slot is always left for interactive work.
            min_background:
                ((background_share.clamp(0.0, 1.0) * max_sequences as f64 - 1e-9).ceil() as usize)
                    .min(max_sequences - 1),
            facts,
            alone: Vec::new(),
            batched: Vec::new(),
            paused: VecDeque::new(),
            kv: KvBatch::new(layout_align),
            room,
            prefixes: Default::default(),
            speculation: Speculation::new(
                spec.manifest
                    .generation
                    .speculative_tokens
                    .unwrap_or(DEFAULT_DRAFT)
                    .min(MAX_DRAFT),
            ),
            batch_sizes: crate::metrics::get().batch_sizes(&spec.name),
            drafted: crate::metrics::get().drafted(&spec.name),
        };
        Ok((model, encoder))
    }

    /// A fresh cache for one sequence: empty, or with a share buffer, room for `need`
    /// positions.
    fn empty_past(&self, need: usize) -> Result<Vec<DynValue>> {
        let l = &self.layout;
        let room = if l.shared { need } else { 0 };
        l.past.iter().map(|_| cache::zeros(l, 1, room)).collect()
    }

    fn admit(&mut self, job: Job) {
        let Job::Generate {
            req,
            mut events,
            cancel,
        } = job
        else {
            let msg = format!("model {:?} is a text-generation model; use Generate, Chat, Complete or ChatComplete", self.name);
            crate::work::queue::Queued::fail(job, Error::InvalidInput(msg));
            return;
        };
        let need = req.prompt.tokens.len() + req.prompt.max_new;
        if !self.fits(need) {
            // Starts, like a paused sequence resumes, once running ones have made room.
            let mut seq = Sequence::new(*req, events, cancel, &self.facts, (0, Vec::new()));
            seq.pause();
            self.paused.push_back(seq);
            return;
        }
        let cache = match self.cache_for(&req.prompt.tokens, &req.caller, need) {
            Ok(c) => c,
            Err(e) => {
                events.send(Event::Failed(e));
                return;
            }
        };
        self.alone
            .push(Sequence::new(*req, events, cancel, &self.facts, cache));
    }

    /// A cache for `tokens`: the longest prefix `caller` has cached, or an empty one.
    fn cache_for(
        &mut self,
        tokens: &[u32],
        caller: &str,
        need: usize,
    ) -> Result<(usize, Vec<DynValue>)> {
        let l = &self.layout;
        // A share buffer needs room after the prefix for what is still to come.
        let room = if l.shared { need } else { 0 };
        match self.prefixes.lookup(tokens, caller, l, room)? {
            Some(hit) => Ok(hit),
            None => self.empty_past(need).map(|p| (0, p)),
        }
    }

    /// What the caches take at most, per token, and in full-context streams.
    pub fn kv_facts(&self) -> KvFacts {
        KvFacts {
            limit_bytes: self.room.bytes(),
            bytes_per_token: self.room.bytes_per_position,
            full_context_streams: (self.room.tokens / self.facts.context_length.max(1)) as u32,
        }
    }

    /// Cache bytes the running sequences and the prefix cache take now.
    fn kv_in_use(&self) -> u64 {
        let positions = self.footprint(None) + self.prefixes.held();
        positions as u64 * self.room.bytes_per_position
    }

    fn active(&self) -> usize {
        self.alone.len() + self.batched.len()
    }

    /// One step of every active sequence; finished ones leave and free their cache.
    fn step_all(&mut self, queue: &Queue<Job>) {
        let served = |n: usize| queue.stats.served.fetch_add(n as u64, Ordering::Relaxed);
        let mut i = 0;
        while i < self.alone.len() {
            let seq = &mut self.alone[i];
            let done = seq.step_alone(
                &mut self.session,
                &self.layout,
                &self.tokenizer,
                &self.facts,
                self.prefill_chunk,
            );
            if let Some((tokens, past)) = seq.take_prefill(&self.layout) {
                let caller = seq.caller().to_owned();
                self.remember_prefix(tokens, &caller, past);
            }
            if done {
                self.alone.swap_remove(i);
                served(1);
            } else if self.layout.batch.is_some() && !self.alone[i].prefilling() {
                let mut seq = self.alone.swap_remove(i);
                let (cached, need) = (seq.cached(), seq.need());
                match self.kv.join(&self.layout, seq.take_past(), cached, need) {
                    Ok(()) => self.batched.push(seq),
                    Err(e) => {
                        seq.fail_step(e);
                        served(1);
                    }
                }
            } else {
                i += 1;
            }
        }
        let before = self.batched.len();
        let rows = self.step_batch();
        if rows > 0 {
            self.batch_sizes.observe(rows as f64);
        }
        if rows > 1 {
            queue
                .stats
                .batched_tokens
                .fetch_add(rows as u64, Ordering::Relaxed);
        }
        served(before - self.batched.len());
    }

    /// One decode step of the continuous batch; returns the rows it ran.
    fn step_batch(&mut self) -> usize {
        if self.batched.is_empty() {
            return 0;
        }
        let keep: Vec<bool> = self.batched.iter_mut().map(|s| !s.interrupted()).collect();
        self.leave(&keep);
        if self.batched.is_empty() {
            return 0;
        }
        // A sequence decoding alone may check a draft in the same run (`speculate.rs`).
        let alone = self.batched.len() == 1;
        let (guess, fed) = match &self.batched[..] {
            [seq] => {
                let draft = seq.draft(self.speculation.max_draft());
                let n = self.speculation.plan(draft.len(), seq.acceptance());
                (draft.first().copied(), draft[..n].to_vec())
            }
            _ => (None, Vec::new()),
        };
        let len = 1 + fed.len();
        let mut ids: Vec<i64> = self.batched.iter().map(Sequence::next_input).collect();
        ids.extend(fed.iter().map(|&t| i64::from(t)));
        let started = std::time::Instant::now();
        let out = match self.kv.step(&mut self.session, &self.layout, ids, len) {
            Ok(out) => out,
            Err(e) => {
                for mut seq in self.batched.drain(..) {
                    seq.fail_step(Error::Internal(format!("batched decode step: {e}")));
                }
                return 0;
            }
        };
        if alone {
            self.speculation.observe(len, started.elapsed());
        }
        let (tok, facts) = (&self.tokenizer, &self.facts);
        let mut taken = 0;
        let keep: Vec<bool> = self
            .batched
            .iter_mut()
            .zip(out.logits.chunks(out.vocab * len))
            .map(|(seq, logits)| {
                let (done, t) = seq.accept_batched(logits, (&fed, guess), tok, facts);
                taken += t;
                !done
            })
            .collect();
        if !fed.is_empty() {
            self.drafted.record(taken, fed.len() - taken);
        }
        if alone && keep[0] {
            if let Err(e) = self.kv.rollback(&self.layout, fed.len() - taken) {
                self.batched[0]
                    .fail_step(Error::Internal(format!("dropping a draft's cache: {e}")));
                self.batched.clear();
                return 1;
            }
        }
        let rows = keep.len();
        self.leave(&keep);
        rows
    }

    /// Takes the sequences not marked `keep` out of the batch and its cache.
    fn leave(&mut self, keep: &[bool]) -> Vec<Sequence> {
        if keep.iter().all(|&k| k) {
            return Vec::new();
        }
        let mut flags = keep.iter();
        let (stay, gone) = std::mem::take(&mut self.batched)
            .into_iter()
            .partition(|_| *flags.next().expect("one flag per row"));
        self.batched = stay;
        if let Err(e) = self.kv.retain(&self.layout, keep) {
            for mut seq in self.batched.drain(..) {
                seq.fail_step(Error::Internal(format!(
                    "rebuilding the batched cache: {e}"
                )));
            }
            self.kv.clear();
        }
        gone
    }

    fn fail_all(&mut self, e: &Error) {
        let all = self.alone.drain(..).chain(self.batched.drain(..));
        for seq in all.chain(self.paused.drain(..)) {
            seq.fail(e.clone());
        }
        self.kv.clear();
    }
}

impl Model for TextGeneration {
    fn compatible(&self, _: &Job, _: &Job) -> bool {
        true
    }

    fn run(&mut self, batch: Vec<Job>, _queue: &Queue<Job>) {
        for job in batch {
            self.admit(job);
        }
    }

    fn serve(&mut self, queue: &Queue<Job>, _policy: BatchPolicy) {
        // The counter outlives a reload: a new version starts from its own (empty) caches.
        queue.stats.kv_bytes_in_use.store(0, Ordering::Relaxed);
        loop {
            queue.heartbeat();
            // Admission and scheduling run under the same guard as the decode step: a panic in
            // any of them fails the sequences in flight, and the worker goes on serving.
            match catch_unwind(AssertUnwindSafe(|| self.turn(queue))) {
                Ok(true) => {}
                Ok(false) => return,
                Err(_) => {
                    tracing::error!(model = %self.name, "a generation step panicked; failing the active sequences");
                    self.fail_all(&Error::Internal("the generation step panicked".into()));
                }
            }
            let stats = &queue.stats;
            stats.active.store(self.active() as u64, Ordering::Relaxed);
            stats
                .kv_bytes_in_use
                .store(self.kv_in_use(), Ordering::Relaxed);
        }
    }
}

impl TextGeneration {
    /// One turn of the worker: take and schedule work, then one step of every sequence.
    /// Returns false once the queue is closed and nothing is left.
    fn turn(&mut self, queue: &Queue<Job>) -> bool {
        self.reap_paused(queue);
        if self.active() == 0 && self.paused.is_empty() {
            let policy = BatchPolicy {
                max_batch: self.max_sequences,
                max_wait: std::time::Duration::ZERO,
            };
            match queue.next_batch(policy, |_, _| true) {
                Some(jobs) => jobs.into_iter().for_each(|job| self.admit(job)),
                None => return false,
            }
        } else {
            self.schedule(queue);
        }
        queue
            .stats
            .active
            .store(self.active() as u64, Ordering::Relaxed);
        if self.active() > 0 {
            queue.stats.touch(); // busy is not idle (keep_alive, memory budget)
        }
        self.step_all(queue);
        true
    }
}
