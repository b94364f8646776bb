//! How many cache positions a model's sequences may hold at once (`generation.kv_cache_tokens`).
//!
//! KV caches grow with every sequence and every token, long after the load was measured. So the
//! model's `memory_bytes`, and with it the memory budget, counts them at their limit from the
//! start, and a sequence starts only when its whole cache fits under that limit: one that does
//! not waits for others to finish (a request that could never fit is refused before it is
//! queued, `prompt.rs`). Caches do not grow past the limit halfway through a reply.
//!
//! The limit counts each cache once. Transients come on top: without a share buffer a step
//! holds its cache's past and present together, and a sequence joining or leaving the batch
//! briefly holds the old batch cache and the new one (docs/operations.md says how much room to
//! leave).

use super::CacheLayout;

/// What a text-generation model's KV caches take: what `ListModels` and `Health()` report
/// per model, beside the bytes in use now (`Stats::kv_bytes_in_use`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvFacts {
    /// At most, all sequences and the prefix cache together: counted in `memory_bytes`.
    pub limit_bytes: u64,
    pub bytes_per_token: u64,
    /// Streams of the full context length that fit in the limit at once.
    pub full_context_streams: u32,
}

pub struct KvRoom {
    /// Positions all caches may hold together: sequences' and the prefix cache's.
    pub tokens: usize,
    /// Bytes one position takes across every layer's keys and values.
    pub bytes_per_position: u64,
    /// Rows of a batch are padded to the longest, so a batch holds rows × its longest need.
    padded: bool,
}

impl KvRoom {
    pub fn new(l: &CacheLayout, tokens: usize) -> KvRoom {
        let elem = if l.dtype == inferd_client::DType::Float16 {
            2
        } else {
            4
        };
        KvRoom {
            tokens,
            bytes_per_position: (l.past.len() * l.kv_heads * l.head_dim * elem) as u64,
            padded: l.batch.is_some(),
        }
    }

    /// What the limit takes in memory: counted in the model's `memory_bytes`.
    pub fn bytes(&self) -> u64 {
        self.tokens as u64 * self.bytes_per_position
    }

    /// Positions the caches of sequences with these needs take once they are all in the batch
    /// (or, where the graph cannot batch, each in its own cache).
    pub fn footprint(&self, needs: impl Iterator<Item = usize>) -> usize {
        if self.padded {
            let (rows, longest) = needs.fold((0, 0), |(n, m), x| (n + 1, m.max(x)));
            rows * longest
        } else {
            needs.sum()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(padded: bool, tokens: usize) -> KvRoom {
        KvRoom {
            tokens,
            bytes_per_position: 8,
            padded,
        }
    }

    #[test]
    fn a_batch_counts_every_row_at_its_longest() {
        let r = room(true, 100);
        assert_eq!(r.footprint([10, 40, 20].into_iter()), 120);
        assert_eq!(r.footprint(std::iter::empty()), 0);
        assert_eq!(r.bytes(), 800);
    }

    #[test]
    fn own_caches_count_what_each_needs() {
        let r = room(false, 100);
        assert_eq!(r.footprint([10, 40, 20].into_iter()), 70);
    }
}
