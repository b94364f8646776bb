//! Speculative decoding by prompt lookup: the sequence's last few tokens are looked up earlier
//! in its own prompt and text, and the tokens that followed there are fed after the next input
//! as a draft. One graph run then scores every drafted position; the sequence takes its tokens
//! position by position, exactly as separate steps would (same sampler, same draws, same
//! constraint), and stops at the first token that differs from the draft. The cache of the
//! positions it did not take is dropped (`KvBatch::rollback`). The text is the text of plain
//! decoding: only the number of graph runs changes.
//!
//! A draft is free to find but not free to check. On a GPU, or with float weights on a CPU,
//! running a few more positions costs about as much as one (the weights are read once either
//! way); ONNX Runtime's int4 `MatMulNBits` on a CPU, though, takes a slower kernel for more than
//! one row, so a short draft can cost 1.75× a step. So the model measures what each number of
//! positions per run costs, each sequence keeps a running estimate of how often its drafts are
//! right (updated by steps that do not draft too: their draft's first token is checked against
//! the token drawn), and a step drafts only as many tokens as pay for their run on average.
//! Text that quotes its context (summaries, answers from documents, code edits) drafts well;
//! free text drafts seldom, and on an int4 CPU graph mostly runs one token a step, as before.
//!
//! Only a sequence decoding alone drafts: in a batched step every row feeds one token.

use std::time::Duration;

/// The longest and shortest run of last tokens looked up.
const NGRAM: std::ops::RangeInclusive<usize> = 2..=3;

/// Weight of one event in the running acceptance estimate.
const RATE_WEIGHT: f64 = 0.15;
/// Weight of one run in the running cost of its size.
const COST_WEIGHT: f64 = 0.2;

/// What followed the latest earlier occurrence of the last `n` tokens (longest `n` first), at
/// most `max` tokens.
pub fn lookup(tokens: &[u32], max: usize) -> &[u32] {
    if max == 0 {
        return &[];
    }
    for n in NGRAM.rev() {
        let Some(end) = tokens.len().checked_sub(n) else {
            continue;
        };
        let tail = &tokens[end..];
        if let Some(at) = (0..end).rev().find(|&s| &tokens[s..s + n] == tail) {
            let from = at + n;
            return &tokens[from..(from + max).min(tokens.len())];
        }
    }
    &[]
}

/// How often a sequence's drafts are right, per drafted token: a running estimate.
#[derive(Debug, Clone, Copy)]
pub struct Acceptance(f64);

impl Default for Acceptance {
    fn default() -> Self {
        Acceptance(0.5)
    }
}

impl Acceptance {
    pub fn rate(self) -> f64 {
        self.0
    }

    /// `taken` drafted tokens were right; the one after them, if `missed`, was not.
    pub fn record(&mut self, taken: usize, missed: bool) {
        for _ in 0..taken {
            self.0 += RATE_WEIGHT * (1.0 - self.0);
        }
        if missed {
            self.0 -= RATE_WEIGHT * self.0;
        }
    }
}

/// A model's drafting policy: the most tokens a draft may have, and the measured cost of a run
/// by the positions it feeds.
#[derive(Debug)]
pub struct Speculation {
    max_draft: usize,
    /// Seconds, a running average; index: positions per run − 1.
    costs: Vec<Option<f64>>,
}

impl Speculation {
    pub fn new(max_draft: usize) -> Self {
        Speculation {
            max_draft,
            costs: vec![None; max_draft + 1],
        }
    }

    pub fn max_draft(&self) -> usize {
        self.max_draft
    }

    /// A run of `positions` costs what was measured, or, not measured yet, at least what the
    /// largest smaller run measured costs (more positions never cost less).
    fn cost(&self, positions: usize) -> Option<f64> {
        self.costs[..positions].iter().rev().find_map(|c| *c)
    }

    /// How many of `available` drafted tokens to feed for a sequence whose drafts are right
    /// at `rate`: the number that gives the most expected tokens per second. A size never
    /// measured is taken to cost what the largest smaller one does, so it is tried where it
    /// could pay, and then known.
    pub fn plan(&self, available: usize, rate: f64) -> usize {
        let Some(one) = self.cost(1) else {
            return 0; // a plain step first: the measure of every other size
        };
        let (mut best, mut best_rate) = (0, 1.0 / one);
        let (mut expected, mut all_right) = (1.0, 1.0);
        for d in 1..=available.min(self.max_draft) {
            all_right *= rate;
            expected += all_right;
            let r = expected / self.cost(1 + d).unwrap_or(one);
            if r > best_rate {
                (best, best_rate) = (d, r);
            }
        }
        best
    }

    /// A run of `positions` positions took `took`.
    pub fn observe(&mut self, positions: usize, took: Duration) {
        let secs = took.as_secs_f64();
        let cost = &mut self.costs[positions - 1];
        *cost = Some(cost.map_or(secs, |c| c + COST_WEIGHT * (secs - c)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_continues_the_latest_occurrence_of_the_longest_tail() {
        // "… 1 2 3 9 …  … 2 3 7 8 …  … 1 2 3": the 3-gram [1 2 3] wins over the later 2-gram.
        let t = [1, 2, 3, 9, 5, 2, 3, 7, 8, 1, 2, 3];
        assert_eq!(lookup(&t, 4), &[9, 5, 2, 3]);
        assert_eq!(lookup(&t, 2), &[9, 5]);
        // Only a 2-gram: its latest occurrence.
        let t = [4, 5, 1, 5, 1, 6, 9, 5, 1];
        assert_eq!(lookup(&t, 3), &[6, 9, 5]);
        // The draft stops where the text does.
        let t = [7, 8, 7, 8];
        assert_eq!(lookup(&t, 5), &[7, 8]);
    }

    #[test]
    fn lookup_finds_nothing_without_a_repeated_tail() {
        assert!(lookup(&[1, 2, 3, 4, 5], 4).is_empty());
        assert!(lookup(&[1, 1], 4).is_empty());
        assert!(lookup(&[], 4).is_empty());
        assert!(lookup(&[1, 2, 1, 2], 0).is_empty());
    }

    #[test]
    fn acceptance_moves_toward_what_happens() {
        let mut a = Acceptance::default();
        a.record(4, false);
        assert!(a.rate() > 0.7, "{a:?}");
        let mut b = Acceptance::default();
        for _ in 0..10 {
            b.record(0, true);
        }
        assert!(b.rate() < 0.15, "{b:?}");
    }

    fn measured(costs: &[f64]) -> Speculation {
        let mut s = Speculation::new(costs.len() - 1);
        for (i, &c) in costs.iter().enumerate() {
            s.observe(i + 1, Duration::from_secs_f64(c));
        }
        s
    }

    #[test]
    fn the_first_run_is_plain_and_unmeasured_sizes_are_tried() {
        let mut s = Speculation::new(4);
        assert_eq!(s.plan(4, 0.9), 0);
        s.observe(1, Duration::from_millis(10));
        assert_eq!(
            s.plan(4, 0.5),
            4,
            "unmeasured sizes cost what one position does"
        );
        assert_eq!(s.plan(2, 0.5), 2, "no more than there is");
        assert_eq!(s.plan(4, 0.0), 0, "drafts that are never right never pay");
    }

    #[test]
    fn a_draft_is_fed_only_where_it_pays_for_its_run() {
        // Float weights: five positions cost 1.1× one.
        let cheap = measured(&[10.0, 10.2, 10.4, 10.7, 11.0]);
        assert_eq!(cheap.plan(4, 0.6), 4);
        assert_eq!(cheap.plan(4, 0.3), 2, "the third token is right too seldom");
        // int4 on a CPU: more than one row costs 1.75× and up.
        let dear = measured(&[10.0, 17.5, 19.0, 20.5, 21.5]);
        assert_eq!(dear.plan(4, 0.3), 0);
        assert_eq!(dear.plan(4, 0.9), 4);
    }

    #[test]
    fn an_unmeasured_size_costs_at_least_the_largest_measured_smaller_one() {
        // Two positions cost 1.75× one: a run of five is not tried for a middling draft.
        let mut s = measured(&[10.0, 17.5]);
        s.max_draft = 4;
        s.costs.resize(5, None);
        assert_eq!(s.cost(5), Some(17.5));
        assert_eq!(s.plan(4, 0.3), 0);
        assert_eq!(s.plan(4, 0.8), 4, "tried where it could pay");
        s.observe(5, Duration::from_secs_f64(40.0));
        assert_eq!(s.plan(4, 0.8), 3, "then known");
    }

    #[test]
    fn costs_are_running_averages() {
        let mut s = measured(&[10.0]);
        s.observe(1, Duration::from_secs_f64(20.0));
        assert_eq!(s.cost(1), Some(12.0));
    }
}
