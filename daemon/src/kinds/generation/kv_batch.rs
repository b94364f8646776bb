//! The shared KV cache of continuous batching: one `[rows, kv_heads, len, head_dim]` tensor per
//! cache input, each row a sequence. A decode step runs every row at once, so the weights are
//! read once per step rather than once per sequence; its `present` output is the next step's
//! cache, uncopied.
//!
//! Where a row's positions sit depends on the graph (`Align`). Graphs that take `position_ids`
//! (the optimum layout) get rows right-aligned behind left padding that the attention mask
//! hides. GroupQueryAttention (the onnxruntime-genai builder's layout) takes no positions: it
//! counts each row's length from its attention mask (`seqlens_k`), reads that row's cache from
//! position 0 and writes its new token after it, so its rows are left-aligned with padding on
//! the right, as onnxruntime-genai batches them.
//!
//! The cache is copied only when the set of rows changes: a sequence joins after running its
//! prompt alone, or leaves when it is over (and the padding no row needs is trimmed).

use half::f16;
use ort::session::Session;
use ort::value::{DynValue, PrimitiveTensorElementType, Tensor as OrtTensor};

use super::forward::{self, Output, Step};
use super::CacheLayout;
use crate::error::Result;
use inferd_client::DType;

/// Which end of the cache a row's positions sit at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Align {
    /// Behind left padding: graphs with `position_ids`.
    #[default]
    Right,
    /// From position 0, padding on the right: GroupQueryAttention.
    Left,
}

#[derive(Default)]
pub struct KvBatch {
    align: Align,
    past: Vec<DynValue>,
    /// Positions per row, padding included.
    len: usize,
    /// Real (unpadded) positions of each row.
    valid: Vec<usize>,
}

/// Where a destination row comes from: (source tensor, row in it, positions to keep).
type Pick = (usize, usize, usize);

impl KvBatch {
    pub fn new(align: Align) -> KvBatch {
        KvBatch {
            align,
            ..Default::default()
        }
    }

    pub fn rows(&self) -> usize {
        self.valid.len()
    }

    /// Adds a row from a sequence's own `[1, h, len, d]` cache.
    pub fn join(&mut self, l: &CacheLayout, past: Vec<DynValue>, len: usize) -> Result<()> {
        let mut picks: Vec<Pick> = self
            .valid
            .iter()
            .enumerate()
            .map(|(r, &v)| (0, r, v))
            .collect();
        picks.push((1, 0, len));
        let new_len = self.len.max(len);
        self.past = if self.valid.is_empty() {
            past
        } else {
            let old = std::mem::take(&mut self.past);
            old.iter()
                .zip(&past)
                .map(|(o, p)| gather(l, self.align, &[o, p], &picks, new_len))
                .collect::<Result<_>>()?
        };
        self.len = new_len;
        self.valid.push(len);
        Ok(())
    }

    /// Keeps the rows marked true, in order, and trims padding that no row needs any more.
    pub fn retain(&mut self, l: &CacheLayout, keep: &[bool]) -> Result<()> {
        let picks: Vec<Pick> = self
            .valid
            .iter()
            .enumerate()
            .filter(|(r, _)| keep[*r])
            .map(|(r, &v)| (0, r, v))
            .collect();
        if picks.len() == self.valid.len() {
            return Ok(());
        }
        let new_len = picks.iter().map(|p| p.2).max().unwrap_or(0);
        let old = std::mem::take(&mut self.past);
        self.valid = picks.iter().map(|p| p.2).collect();
        self.len = new_len;
        if !picks.is_empty() {
            self.past = old
                .iter()
                .map(|o| gather(l, self.align, &[o], &picks, new_len))
                .collect::<Result<_>>()?;
        }
        Ok(())
    }

    /// Drops every row (after a failed step, whose cache was consumed).
    pub fn clear(&mut self) {
        *self = KvBatch::new(self.align);
    }

    /// One decode step: `ids[r]` is row r's next token, at position `valid[r]` of its sequence.
    pub fn step(
        &mut self,
        session: &mut Session,
        l: &CacheLayout,
        ids: Vec<i64>,
    ) -> Result<Output> {
        let total = self.len + 1;
        let mut mask = Vec::with_capacity(self.rows() * total);
        for &v in &self.valid {
            let (pad, real) = (total - v - 1, v + 1);
            match self.align {
                Align::Right => {
                    mask.extend(std::iter::repeat_n(0i64, pad));
                    mask.extend(std::iter::repeat_n(1i64, real));
                }
                Align::Left => {
                    mask.extend(std::iter::repeat_n(1i64, real));
                    mask.extend(std::iter::repeat_n(0i64, pad));
                }
            }
        }
        let step = Step {
            rows: self.rows(),
            len: 1,
            positions: self.valid.iter().map(|&v| v as i64).collect(),
            ids,
            mask,
        };
        let out = forward::run(session, l, step, std::mem::take(&mut self.past));
        match out {
            Ok(mut out) => {
                self.past = std::mem::take(&mut out.present);
                self.len += 1;
                self.valid.iter_mut().for_each(|v| *v += 1);
                Ok(out)
            }
            Err(e) => {
                self.clear();
                Err(e)
            }
        }
    }
}

/// Builds a `[picks, h, len, d]` cache tensor, each picked row at the `align` end. Sources are
/// aligned alike (a sequence's own cache is full, so either alignment reads it whole).
fn gather(
    l: &CacheLayout,
    align: Align,
    sources: &[&DynValue],
    picks: &[Pick],
    len: usize,
) -> Result<DynValue> {
    match l.dtype {
        DType::Float16 => gather_typed::<f16>(l, align, sources, picks, len),
        _ => gather_typed::<f32>(l, align, sources, picks, len),
    }
}

fn gather_typed<T>(
    l: &CacheLayout,
    align: Align,
    sources: &[&DynValue],
    picks: &[Pick],
    len: usize,
) -> Result<DynValue>
where
    T: PrimitiveTensorElementType + Copy + Default + std::fmt::Debug + 'static,
{
    let srcs = sources
        .iter()
        .map(|v| {
            let (shape, data) = v.try_extract_tensor::<T>()?;
            Ok((data, shape[2] as usize))
        })
        .collect::<Result<Vec<_>>>()?;
    let (h, d) = (l.kv_heads, l.head_dim);
    let mut dst = vec![T::default(); picks.len() * h * len * d];
    for (row, &(src, r, keep)) in picks.iter().enumerate() {
        let (data, t) = srcs[src];
        place(&mut dst, (row, len), data, (r, t), keep, (h, d), align);
    }
    Ok(OrtTensor::from_array((
        vec![picks.len() as i64, h as i64, len as i64, d as i64],
        dst,
    ))?
    .into_dyn())
}

/// Copies the `keep` positions at the `align` end of `src` row `r` (of `t` positions) to the
/// same end of `dst` row `row` (of `len`), for each of `h` heads of width `d`.
fn place<T: Copy>(
    dst: &mut [T],
    (row, len): (usize, usize),
    src: &[T],
    (r, t): (usize, usize),
    keep: usize,
    (h, d): (usize, usize),
    align: Align,
) {
    let (from, to) = match align {
        Align::Right => (t - keep, len - keep),
        Align::Left => (0, 0),
    };
    for head in 0..h {
        let s = ((r * h + head) * t + from) * d;
        let o = ((row * h + head) * len + to) * d;
        dst[o..o + keep * d].copy_from_slice(&src[s..s + keep * d]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_right_aligned_per_head() {
        // src: 1 row, 2 heads, t = 3, d = 1: head0 = [1,2,3], head1 = [4,5,6]; keep the last 2.
        let src = [1, 2, 3, 4, 5, 6];
        let mut dst = [0; 2 * 2 * 4];
        place(&mut dst, (1, 4), &src, (0, 3), 2, (2, 1), Align::Right);
        assert_eq!(dst, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 0, 0, 5, 6]);
    }

    #[test]
    fn gqa_rows_are_left_aligned_per_head() {
        // A batch row of 3 positions whose first 2 are real, into a row of 4: [a, b, _, _].
        let src = [1, 2, 9, 4, 5, 9];
        let mut dst = [0; 2 * 2 * 4];
        place(&mut dst, (1, 4), &src, (0, 3), 2, (2, 1), Align::Left);
        assert_eq!(dst, [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 4, 5, 0, 0]);
    }
}
