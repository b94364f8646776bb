//! The prompt-prefix cache: the KV cache of recent long prompts, so a request that starts with
//! the same tokens (an assistant's system prompt, a growing chat) skips recomputing them.
//!
//! Entries own copies of the prompt's cache; a hit copies the shared prefix out (a memcpy of
//! the prefix, far cheaper than running the model over it).
//!
//! A prefix is reused only for the caller whose prompt it was (a D-Bus uid, an MQTT reply
//! topic, a route). Shared across callers, the cache would be an oracle: a faster first token,
//! or `cached_prompt_tokens`, would tell one client what another one asked.

use half::f16;
use ort::value::{DynValue, Tensor as OrtTensor};

use crate::error::Result;
use inferd_client::DType;

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
    /// leaving one token to run), with its cache copied out. An unknown caller (empty) shares
    /// with nobody.
    pub fn lookup(
        &mut self,
        tokens: &[u32],
        caller: &str,
        dtype: DType,
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
            .map(|v| slice_positions(v, n, dtype))
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

/// A copy of the first `len` positions of a `[1, heads, T, head_dim]` cache tensor.
pub fn slice_positions(v: &DynValue, len: usize, dtype: DType) -> Result<DynValue> {
    fn slice<T: ort::value::PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static>(
        v: &DynValue,
        len: usize,
    ) -> Result<DynValue> {
        let (shape, data) = v.try_extract_tensor::<T>()?;
        let (heads, total, hd) = (shape[1] as usize, shape[2] as usize, shape[3] as usize);
        let mut out = Vec::with_capacity(heads * len * hd);
        for h in 0..heads {
            out.extend_from_slice(&data[h * total * hd..h * total * hd + len * hd]);
        }
        Ok(
            OrtTensor::from_array((vec![1i64, heads as i64, len as i64, hd as i64], out))?
                .into_dyn(),
        )
    }
    match dtype {
        DType::Float16 => slice::<f16>(v, len),
        _ => slice::<f32>(v, len),
    }
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
