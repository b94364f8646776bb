//! The prompt-prefix cache: the KV cache of recent long prompts, so a request that starts with
//! the same tokens (an assistant's system prompt, a growing chat) skips recomputing them.
//!
//! Entries own copies of the prompt's cache, in the memory the session computes in; a hit
//! copies the shared prefix out (far cheaper than running the model over it).
//!
//! A prefix is reused only for the caller whose prompt it was (a D-Bus uid, an MQTT reply
//! topic, a route). Shared across callers, the cache would be an oracle: a faster first token,
//! or `cached_prompt_tokens`, would tell one client what another one asked.

use ort::value::DynValue;

use super::cache;
use super::cache::Align;
use super::CacheLayout;
use crate::error::Result;

/// Prompts shorter than this are not worth caching.
pub const MIN_TOKENS: usize = 32;
const ENTRIES: usize = 4;

struct Entry {
    caller: String,
    tokens: Vec<u32>,
    past: Vec<DynValue>,
}

#[derive(Default)]
pub struct PrefixCache {
    /// Most recently used last.
    entries: Vec<Entry>,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    /// The longest prefix of `tokens` that `caller` has cached (at least `MIN_TOKENS`, and
    /// leaving one token to run), with its cache copied out into `room` positions (a share
    /// buffer's; at least the prefix). An unknown caller (empty) shares with nobody.
    pub fn lookup(
        &mut self,
        tokens: &[u32],
        caller: &str,
        l: &CacheLayout,
        room: usize,
    ) -> Result<Option<(usize, Vec<DynValue>)>> {
        if caller.is_empty() {
            return Ok(None);
        }
        let best = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.caller == caller)
            .map(|(i, e)| {
                (
                    i,
                    common_prefix(&e.tokens, tokens).min(tokens.len().saturating_sub(1)),
                )
            })
            .max_by_key(|&(_, n)| n);
        let Some((i, n)) = best.filter(|&(_, n)| n >= MIN_TOKENS) else {
            return Ok(None);
        };
        let entry = self.entries.remove(i);
        let past = entry
            .past
            .iter()
            .map(|v| cache::gather(l, Align::Left, &[v], &[(0, 0, n)], room.max(n)))
            .collect::<Result<_>>();
        self.entries.push(entry);
        Ok(Some((n, past?)))
    }

    /// Positions the entries hold (they count against `generation.kv_cache_tokens`).
    pub fn held(&self) -> usize {
        self.entries.iter().map(|e| e.tokens.len()).sum()
    }

    /// Drops the least recently used entry; false when there is none.
    pub fn evict_oldest(&mut self) -> bool {
        !self.entries.is_empty() && {
            self.entries.remove(0);
            true
        }
    }

    /// Remembers `caller`'s prompt cache (already copied by the caller).
    pub fn insert(&mut self, tokens: Vec<u32>, caller: &str, past: Vec<DynValue>) {
        if caller.is_empty() {
            return;
        }
        self.entries
            .retain(|e| !(e.tokens == tokens && e.caller == caller));
        if self.entries.len() == ENTRIES {
            self.entries.remove(0);
        }
        self.entries.push(Entry {
            caller: caller.to_owned(),
            tokens,
            past,
        });
    }
}

/// A copy of the first `len` positions of a `[1, heads, T, head_dim]` cache tensor, in the
/// same memory.
pub fn slice_positions(l: &CacheLayout, v: &DynValue, len: usize) -> Result<DynValue> {
    cache::gather(l, Align::Left, &[v], &[(0, 0, len)], len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefixes() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
    }
}
