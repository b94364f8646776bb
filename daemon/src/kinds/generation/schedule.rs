//! Who runs next: free slots go to interactive requests first (pausing background sequences
//! beyond their share when none is free), paused sequences resume before new background
//! requests, and a sequence starts only when its cache fits under `generation.kv_cache_tokens`
//! (`kv_room`).

use std::sync::atomic::Ordering;

use ort::value::DynValue;

use super::sequence::Sequence;
use super::TextGeneration;
use crate::work::job::{Job, Priority};
use crate::work::queue::Queue;

impl TextGeneration {
    /// Whether a sequence that needs `need` positions fits beside the running ones.
    pub(super) fn fits(&mut self, need: usize) -> bool {
        self.make_room(Some(need), 0)
    }

    /// Keeps a prompt's cache for later requests if it fits beside the running sequences'.
    pub(super) fn remember_prefix(&mut self, tokens: Vec<u32>, caller: &str, past: Vec<DynValue>) {
        if self.make_room(None, tokens.len()) {
            self.prefixes.insert(tokens, caller, past);
        }
    }

    /// Positions the running sequences' caches take, with one more `joining` them.
    pub(super) fn footprint(&self, joining: Option<usize>) -> usize {
        let running = self.alone.iter().chain(&self.batched).map(Sequence::need);
        self.room.footprint(running.chain(joining))
    }

    /// Whether the running sequences, one `joining` them and `keep` more positions fit,
    /// evicting prefix-cache entries (least recently used first) to make room.
    fn make_room(&mut self, joining: Option<usize>, keep: usize) -> bool {
        let wanted = self.footprint(joining) + keep;
        if wanted > self.room.tokens {
            return false; // no eviction could make room: keep the prefix cache
        }
        while wanted + self.prefixes.held() > self.room.tokens {
            self.prefixes.evict_oldest();
        }
        true
    }

    fn running_background(&self) -> usize {
        self.alone
            .iter()
            .chain(&self.batched)
            .filter(|s| s.priority == Priority::Background)
            .count()
    }

    /// Pauses up to `want` background sequences, newest first, keeping `min_background`
    /// running; returns how many slots it freed.
    fn pause_background(&mut self, want: usize) -> usize {
        let n = want.min(
            self.running_background()
                .saturating_sub(self.min_background),
        );
        let mut left = n;
        let mut keep = vec![true; self.batched.len()];
        for (i, seq) in self.batched.iter().enumerate().rev() {
            if left > 0 && seq.priority == Priority::Background {
                keep[i] = false;
                left -= 1;
            }
        }
        let mut paused = self.leave(&keep);
        let mut i = self.alone.len();
        while left > 0 && i > 0 {
            i -= 1;
            if self.alone[i].priority == Priority::Background {
                paused.push(self.alone.remove(i));
                left -= 1;
            }
        }
        for mut seq in paused {
            seq.pause();
            self.paused.push_back(seq);
        }
        tracing::debug!(model = %self.name, n, "paused background sequences for interactive work");
        n
    }

    /// Fills free slots: interactive requests first (pausing background sequences when none
    /// is free), background's guaranteed slots next, then paused sequences before new
    /// background requests.
    pub(super) fn schedule(&mut self, queue: &Queue<Job>) {
        // Under cache pressure, sequences start in the order they came as room frees up.
        let waiting = self.paused.front().map(Sequence::need);
        if waiting.is_some_and(|need| !self.fits(need)) {
            return;
        }
        let mut free = self.max_sequences.saturating_sub(self.active());
        let interactive = queue.waiting(Priority::Interactive);
        if interactive > free {
            free += self.pause_background(interactive - free);
        }
        let owed = self
            .min_background
            .saturating_sub(self.running_background())
            .min(free);
        let mut admitted = queue.try_take_lane(Priority::Interactive, free - owed);
        free -= admitted.len();
        let mut resumed = 0;
        while free > 0 {
            match self.paused.front().map(Sequence::need) {
                Some(need) if self.fits(need) => {}
                _ => break,
            }
            let mut seq = self.paused.pop_front().expect("looked at above");
            let need = seq.need();
            match self.cache_for(seq.tokens(), seq.caller(), need) {
                Ok(cache) => {
                    seq.resume(cache);
                    self.alone.push(seq);
                }
                Err(e) => seq.fail(e),
            }
            free -= 1;
            resumed += 1;
        }
        // Background's guaranteed slots go to background requests before anyone else.
        let owed_left = owed.saturating_sub(resumed).min(free);
        let owed_jobs = queue.try_take_lane(Priority::Background, owed_left);
        free -= owed_jobs.len();
        admitted.extend(owed_jobs);
        admitted.extend(queue.try_take(free));
        for job in admitted {
            self.admit(job);
        }
    }

    /// Answers paused sequences whose caller cancelled, left or ran out of time.
    pub(super) fn reap_paused(&mut self, queue: &Queue<Job>) {
        let before = self.paused.len();
        self.paused.retain_mut(|s| !s.interrupted());
        let gone = before - self.paused.len();
        queue.stats.served.fetch_add(gone as u64, Ordering::Relaxed);
    }
}
