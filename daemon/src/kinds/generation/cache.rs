//! KV cache tensors: `[rows, kv_heads, positions, head_dim]`, allocated by ONNX Runtime (so a
//! graph can also be given one as an output to write into), and rows copied between them.

use half::f16;
use ort::memory::Allocator;
use ort::value::{DynTensor, DynValue, PrimitiveTensorElementType, TensorElementType};

use super::kv_batch::Align;
use super::CacheLayout;
use crate::error::Result;
use inferd_client::DType;

/// Where a destination row comes from: (source tensor, row in it, positions to keep).
pub type Pick = (usize, usize, usize);

/// A zeroed `[rows, kv_heads, len, head_dim]` cache tensor.
pub fn zeros(l: &CacheLayout, rows: usize, len: usize) -> Result<DynValue> {
    let elem = match l.dtype {
        DType::Float16 => TensorElementType::Float16,
        _ => TensorElementType::Float32,
    };
    let shape = [rows, l.kv_heads, len, l.head_dim];
    // ONNX Runtime zeroes what its CPU allocator hands out.
    Ok(DynTensor::new(&Allocator::default(), elem, shape)?.into_dyn())
}

/// A `[picks, kv_heads, len, head_dim]` cache tensor, each picked row at the `align` end (a
/// sequence's own cache is full, so either alignment reads it whole).
pub fn gather(
    l: &CacheLayout,
    align: Align,
    sources: &[&DynValue],
    picks: &[Pick],
    len: usize,
) -> Result<DynValue> {
    let mut dst = zeros(l, picks.len(), len)?;
    match l.dtype {
        DType::Float16 => fill::<f16>(&mut dst, l, align, sources, picks, len)?,
        _ => fill::<f32>(&mut dst, l, align, sources, picks, len)?,
    }
    Ok(dst)
}

fn fill<T>(
    dst: &mut DynValue,
    l: &CacheLayout,
    align: Align,
    sources: &[&DynValue],
    picks: &[Pick],
    len: usize,
) -> Result<()>
where
    T: PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static,
{
    let srcs = sources
        .iter()
        .map(|v| {
            let (shape, data) = v.try_extract_tensor::<T>()?;
            Ok((data, shape[2] as usize))
        })
        .collect::<Result<Vec<_>>>()?;
    let (_, out) = dst.try_extract_tensor_mut::<T>()?;
    for (row, &(src, r, keep)) in picks.iter().enumerate() {
        let (data, t) = srcs[src];
        place(
            out,
            (row, len),
            data,
            (r, t),
            keep,
            (l.kv_heads, l.head_dim),
            align,
        );
    }
    Ok(())
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
