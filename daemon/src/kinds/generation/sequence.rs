//! One generation in flight: its tokens, its KV cache, its sampler, and the text pipeline that
//! turns tokens into `Delta` events (detokenizer → stop strings → reasoning split).

use std::collections::VecDeque;
use std::time::Instant;

use ort::session::Session;
use ort::value::DynValue;
use tokenizers::Tokenizer;
use tokio_util::sync::CancellationToken;

use super::facts::Facts;
use super::forward::{self, Step};
use super::sampler::Sampler;
use super::speculate::{self, Acceptance};
use super::text::{
    longest_suffix_prefix, Detokenizer, ReasoningSplitter, StopMatcher, THINK_CLOSE,
};
use super::tools::CallSplitter;
use super::CacheLayout;
use crate::constraint::Constrained;
use crate::error::{Error, Result};
use crate::work::job::{Channel, Event, Events, FinishReason, Generation, Priority, Usage};

pub struct Sequence {
    events: Events,
    pub priority: Priority,
    /// Whose prompt this is: its cache is shared with this caller's prompts only.
    caller: String,
    /// Text not sent yet: for a caller that does not stream, all of it until the end.
    held: Vec<(String, Channel)>,
    stream: bool,
    cancel: CancellationToken,
    deadline: Option<Instant>,
    tokens: Vec<u32>,
    /// Tokens already in the cache.
    cached: usize,
    /// Prompt tokens whose cache came from the prefix cache.
    reused: usize,
    /// Set by the step that ran the prompt, until the prefix cache has taken a copy.
    prefilled: bool,
    past: Vec<DynValue>,
    prompt_len: usize,
    max_new: usize,
    generated: usize,
    reasoning_tokens: usize,
    reasoning_budget: Option<usize>,
    /// Tokens to feed instead of sampling (a forced `</think>`).
    forced: VecDeque<u32>,
    sampler: Sampler,
    /// How often this sequence's drafts are right (`speculate.rs`).
    acceptance: Acceptance,
    /// Structured output: masks each step's logits, and ends the text when complete.
    constraint: Option<Constrained>,
    /// Tools the model may call or not: the text that starts a call, and the constraint that
    /// becomes `constraint` once the generated text has it.
    trigger: Option<(String, Constrained)>,
    /// The generated text's tail, where the trigger is looked for.
    tail: String,
    /// Splits tool calls out of the content, when tools may be called.
    calls: Option<CallSplitter>,
    detok: Detokenizer,
    stops: StopMatcher,
    splitter: ReasoningSplitter,
    started: Instant,
    first_token: Option<Instant>,
}

impl Sequence {
    pub fn new(
        req: Generation,
        events: Events,
        cancel: CancellationToken,
        facts: &Facts,
        (reused, past): (usize, Vec<DynValue>),
    ) -> Self {
        let o = &req.options;
        let (tokens, max_new, thinking) =
            (req.prompt.tokens, req.prompt.max_new, req.prompt.thinking);
        let constraint = req.prompt.constraint;
        let (trigger, calls) = (req.prompt.trigger, req.prompt.calls.map(CallSplitter::new));
        Sequence {
            prompt_len: tokens.len(),
            tokens,
            cached: reused,
            reused,
            prefilled: false,
            past,
            max_new,
            generated: 0,
            reasoning_tokens: 0,
            reasoning_budget: o.reasoning_budget.map(|b| b as usize),
            forced: VecDeque::new(),
            sampler: Sampler::new(o.sampling.or(facts.sampling)),
            acceptance: Acceptance::default(),
            constraint,
            trigger,
            tail: String::new(),
            calls,
            detok: Detokenizer::default(),
            stops: StopMatcher::new(o.stop.clone()),
            splitter: ReasoningSplitter::new(o.reasoning, thinking),
            started: Instant::now(),
            first_token: None,
            deadline: req.deadline,
            priority: req.priority,
            caller: req.caller,
            held: Vec::new(),
            stream: req.stream,
            events,
            cancel,
        }
    }

    pub fn fail(mut self, e: Error) {
        self.events.send(Event::Failed(e));
    }

    /// Gives up the cache (and with it the batch slot); the tokens so far stay, so `resume`
    /// recomputes the cache and the text goes on exactly where it stopped.
    pub fn pause(&mut self) {
        self.past.clear();
        self.cached = 0;
        self.prefilled = false;
    }

    /// A fresh cache for a paused sequence: `reused` tokens of `past` (a prefix-cache hit, or
    /// empty) are already in it.
    pub fn resume(&mut self, (reused, past): (usize, Vec<DynValue>)) {
        self.cached = reused;
        self.past = past;
    }

    /// Prompt and generated tokens, what a resumed cache must cover.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn caller(&self) -> &str {
        &self.caller
    }

    /// Every position the sequence may reach: its prompt and its token budget (what a share
    /// buffer must hold).
    pub fn need(&self) -> usize {
        self.prompt_len + self.max_new
    }

    /// Ends the sequence if its caller left, cancelled it or ran out of time; returns true if
    /// it is over (and has been answered, where anyone is listening).
    pub fn interrupted(&mut self) -> bool {
        if self.events.is_closed() {
            return true; // the caller left: free the cache, answer nobody
        }
        if self.cancel.is_cancelled() {
            return self.finish(FinishReason::Cancelled);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return self.finish(FinishReason::Timeout);
        }
        false
    }

    /// Runs the tokens not yet cached with the sequence's own cache (the prompt, or every step
    /// where the graph cannot batch), at most `chunk` of them; returns true when the sequence
    /// is over. A prompt longer than `chunk` runs over several steps, so the worker answers
    /// the watchdog and steps the other sequences in between.
    pub fn step_alone(
        &mut self,
        session: &mut Session,
        layout: &CacheLayout,
        tok: &Tokenizer,
        facts: &Facts,
        chunk: usize,
    ) -> bool {
        if self.interrupted() {
            return true;
        }
        match self.forward(session, layout, chunk) {
            // A piece of the prompt ran: its logits are not the last token's.
            Ok(_) if self.cached < self.tokens.len() => false,
            Ok(logits) => self.accept(&logits, tok, facts),
            Err(e) => self.fail_step(e),
        }
    }

    /// Some of the prompt is still to run: more is uncached than the one token a decode step
    /// feeds, so the sequence cannot join a batched step yet.
    pub fn prefilling(&self) -> bool {
        self.tokens.len() > self.cached + 1
    }

    pub fn fail_step(&mut self, e: Error) -> bool {
        tracing::error!("decode step failed: {e}");
        self.events.send(Event::Failed(e));
        true
    }

    /// The token a batched step feeds for this sequence (its position is `cached()`).
    pub fn next_input(&self) -> i64 {
        self.tokens[self.cached] as i64
    }

    pub fn cached(&self) -> usize {
        self.cached
    }

    /// Hands the sequence's own cache to the shared batch.
    pub fn take_past(&mut self) -> Vec<DynValue> {
        std::mem::take(&mut self.past)
    }

    /// What prompt lookup drafts to follow `next_input()`: at most `max` tokens, and never
    /// past the token budget (the last token needs no draft after it).
    pub fn draft(&self, max: usize) -> &[u32] {
        let left = self.max_new.saturating_sub(self.generated + 1);
        speculate::lookup(&self.tokens, max.min(left))
    }

    pub fn acceptance(&self) -> f64 {
        self.acceptance.rate()
    }

    /// Takes the logits of a batched step that ran `next_input()` and then `fed`, a draft:
    /// position by position, as separate steps would, until a drawn token is not the draft's
    /// next one. `guess` is the draft of a step that fed none, checked against the token drawn
    /// to keep the acceptance estimate current. Returns whether the sequence is over, and how
    /// many drafted tokens it took (the cache of the others is to be dropped).
    pub fn accept_batched(
        &mut self,
        logits: &[f32],
        (fed, guess): (&[u32], Option<u32>),
        tok: &Tokenizer,
        facts: &Facts,
    ) -> (bool, usize) {
        let vocab = logits.len() / (1 + fed.len());
        let mut taken = 0;
        for row in logits.chunks(vocab) {
            self.cached += 1;
            if self.accept(row, tok, facts) {
                return (true, taken);
            }
            let drawn = self.tokens.last().copied();
            match fed.get(taken) {
                Some(&d) if Some(d) == drawn => taken += 1,
                Some(_) => {
                    self.acceptance.record(taken, true);
                    return (false, taken);
                }
                None => break, // the draft all taken, and the token after it drawn
            }
        }
        match guess {
            Some(g) if fed.is_empty() => {
                let right = self.tokens.last() == Some(&g);
                self.acceptance.record(usize::from(right), !right);
            }
            _ => self.acceptance.record(taken, false),
        }
        (false, taken)
    }

    /// Draws the next token, among those the constraint allows when there is one.
    fn draw(&mut self, logits: &[f32]) -> Result<u32> {
        let Some(c) = &mut self.constraint else {
            return Ok(self.sampler.sample(logits, &self.tokens));
        };
        let mut masked = logits.to_vec();
        c.mask(&mut masked)
            .map_err(|e| Error::Internal(format!("structured output: {e}")))?;
        let next = self.sampler.sample(&masked, &self.tokens);
        c.consume(next)
            .map_err(|e| Error::Internal(format!("structured output: {e}")))?;
        Ok(next)
    }

    /// Samples (or takes the forced token), streams its text; true when the sequence is over.
    fn accept(&mut self, logits: &[f32], tok: &Tokenizer, facts: &Facts) -> bool {
        let forced = self.forced.pop_front();
        let next = match forced {
            Some(t) => t,
            None => match self.draw(logits) {
                Ok(t) => t,
                Err(e) => return self.fail_step(e),
            },
        };
        self.first_token.get_or_insert_with(Instant::now);
        if forced.is_none() && facts.eos.contains(&next) {
            return self.finish(FinishReason::Stop);
        }
        self.tokens.push(next);
        self.generated += 1;
        if self.splitter.thinking() {
            self.reasoning_tokens += 1;
            if self
                .reasoning_budget
                .is_some_and(|b| self.reasoning_tokens >= b)
                && self.forced.is_empty()
            {
                let close = tok
                    .encode(THINK_CLOSE, false)
                    .map(|e| e.get_ids().to_vec())
                    .unwrap_or_default();
                self.forced.extend(close);
                self.reasoning_budget = None;
            }
        }
        let decode = |ids: &[u32]| tok.decode(ids, true).unwrap_or_default();
        if let Some(delta) = self.detok.push(next, decode) {
            self.watch_trigger(&delta);
            let (text, stopped) = self.stops.push(&delta);
            self.send(&text);
            if stopped {
                return self.finish_flushed(FinishReason::Stop);
            }
        }
        if self.constraint.as_ref().is_some_and(Constrained::done) {
            return self.finish(FinishReason::Stop);
        }
        if self.generated >= self.max_new {
            return self.finish(FinishReason::Length);
        }
        false
    }

    /// Starts a tool call's constraint once the text has the call's opening marker.
    fn watch_trigger(&mut self, delta: &str) {
        let Some((start, _)) = &self.trigger else {
            return;
        };
        self.tail.push_str(delta);
        if self.tail.contains(start.as_str()) {
            self.constraint = self.trigger.take().map(|(_, c)| c);
            return;
        }
        // Keep what could be the start of a marker split over deltas.
        let cut = self.tail.len() - longest_suffix_prefix(&self.tail, start);
        self.tail.drain(..cut);
    }

    /// Feeds up to `chunk` of the tokens not yet cached; returns the last position's logits.
    fn forward(
        &mut self,
        session: &mut Session,
        l: &CacheLayout,
        chunk: usize,
    ) -> Result<Vec<f32>> {
        let end = self.tokens.len().min(self.cached + chunk.max(1));
        let step = Step {
            rows: 1,
            len: end - self.cached,
            ids: self.tokens[self.cached..end]
                .iter()
                .map(|&t| t as i64)
                .collect(),
            mask: vec![1; end],
            positions: (self.cached as i64..end as i64).collect(),
            keep: 1,
        };
        let out = forward::run(session, l, step, &mut self.past)?;
        // The whole prompt, and nothing after it, is in the cache now.
        self.prefilled =
            self.cached < self.prompt_len && end == self.prompt_len && end == self.tokens.len();
        self.cached = end;
        Ok(out.logits)
    }

    /// After the prompt has run: the prompt and a copy of its cache, for the prefix cache.
    pub fn take_prefill(&mut self, l: &super::CacheLayout) -> Option<(Vec<u32>, Vec<DynValue>)> {
        if !std::mem::take(&mut self.prefilled) || self.prompt_len < super::prefix::MIN_TOKENS {
            return None;
        }
        let copies = self
            .past
            .iter()
            .map(|v| super::prefix::slice_positions(l, v, self.prompt_len))
            .collect::<Result<Vec<_>>>()
            .ok()?;
        Some((self.tokens[..self.prompt_len].to_vec(), copies))
    }

    fn send(&mut self, text: &str) {
        for (piece, channel) in self.splitter.push(text) {
            self.route(piece, channel);
        }
    }

    /// Content goes through the tool-call splitter when tools may be called.
    fn route(&mut self, piece: String, channel: Channel) {
        match (&mut self.calls, channel) {
            (Some(calls), Channel::Content) => {
                let now = calls.push(&piece);
                if !now.is_empty() {
                    self.emit(now, Channel::Content);
                }
            }
            _ => self.emit(piece, channel),
        }
    }

    /// A piece of text: sent now to a streaming caller; otherwise kept, joined with the pieces
    /// of its channel before it, until the end.
    fn emit(&mut self, text: String, channel: Channel) {
        if self.stream {
            self.events.send(Event::Delta { text, channel });
            return;
        }
        match self.held.last_mut() {
            // Each tool call is its own piece.
            Some((t, c)) if *c == channel && channel != Channel::ToolCall => t.push_str(&text),
            _ => self.held.push((text, channel)),
        }
    }

    fn finish(&mut self, reason: FinishReason) -> bool {
        let held = self.stops.flush();
        self.send(&held);
        self.finish_flushed(reason)
    }

    fn finish_flushed(&mut self, reason: FinishReason) -> bool {
        for (piece, channel) in self.splitter.flush() {
            self.route(piece, channel);
        }
        if let Some(mut calls) = self.calls.take() {
            for (piece, channel) in calls.flush() {
                self.emit(piece, channel);
            }
        }
        for (text, channel) in std::mem::take(&mut self.held) {
            self.events.send(Event::Delta { text, channel });
        }
        let now = Instant::now();
        let decode_secs = self
            .first_token
            .map(|f| now.duration_since(f).as_secs_f64())
            .unwrap_or(0.0);
        let usage = Usage {
            prompt_tokens: self.prompt_len as u32,
            cached_prompt_tokens: self.reused as u32,
            completion_tokens: self.generated as u32,
            reasoning_tokens: self.reasoning_tokens as u32,
            time_to_first_token_ms: self
                .first_token
                .map(|f| f.duration_since(self.started).as_secs_f64() * 1e3)
                .unwrap_or(0.0),
            tokens_per_second: if decode_secs > 0.0 && self.generated > 1 {
                (self.generated - 1) as f64 / decode_secs
            } else {
                0.0
            },
        };
        self.events.send(Event::Finished { reason, usage });
        true
    }
}
