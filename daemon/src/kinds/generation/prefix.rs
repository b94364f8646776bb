//! The prompt-prefix cache: the KV cache of recent long prompts, so a request that starts with
//! the same tokens (an assistant's system prompt, a growing chat) skips recomputing them.
//!
//! Entries own copies of the prompt's cache; a hit copies the shared prefix out (a memcpy of
//! the prefix, far cheaper than running the model over it).

use half::f16;
use ort::value::{DynValue, Tensor as OrtTensor};

use crate::error::Result;
use inferd_client::DType;

/// Prompts shorter than this are not worth caching.
pub const MIN_TOKENS: usize = 32;
const ENTRIES: usize = 4;

#[derive(Default)]
pub struct PrefixCache {
    /// Most recently used last.
    entries: Vec<(Vec<u32>, Vec<DynValue>)>,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    /// The longest cached prefix of `tokens` (at least `MIN_TOKENS`, and leaving one token to
    /// run), with its cache copied out.
    pub fn lookup(
        &mut self,
        tokens: &[u32],
        dtype: DType,
    ) -> Result<Option<(usize, Vec<DynValue>)>> {
        let best = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (t, _))| {
                (
                    i,
                    common_prefix(t, tokens).min(tokens.len().saturating_sub(1)),
                )
            })
            .max_by_key(|&(_, n)| n);
        let Some((i, n)) = best.filter(|&(_, n)| n >= MIN_TOKENS) else {
            return Ok(None);
        };
        let entry = self.entries.remove(i);
        let past = entry
            .1
            .iter()
            .map(|v| slice_positions(v, n, dtype))
            .collect::<Result<_>>();
        self.entries.push(entry);
        Ok(Some((n, past?)))
    }

    /// Remembers a prompt's cache (already copied by the caller).
    pub fn insert(&mut self, tokens: Vec<u32>, past: Vec<DynValue>) {
        self.entries.retain(|(t, _)| *t != tokens);
        if self.entries.len() == ENTRIES {
            self.entries.remove(0);
        }
        self.entries.push((tokens, past));
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
