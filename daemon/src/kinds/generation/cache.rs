//! KV cache tensors: `[rows, kv_heads, positions, head_dim]`, allocated by ONNX Runtime in the
//! memory the session computes in (so a graph can write into one as its output, and a GPU
//! session's cache never crosses to the host), and rows copied between them.
//!
//! A row's positions for one head are contiguous, and its heads lie `positions × head_dim`
//! apart, so moving a row is one strided copy of `kv_heads` blocks: a loop of `memcpy` on the
//! host, `cuMemcpy2D` on a GPU.

use std::ffi::c_void;

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::value::{DynTensor, DynTensorValueType, DynValue, TensorElementType};

use super::CacheLayout;
use crate::error::{Error, Result};
use crate::gpu::{self, Copy2d};
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

/// Where a destination row comes from: (source tensor, row in it, positions to keep).
pub type Pick = (usize, usize, usize);

/// The memory cache tensors live in: host RAM, or a CUDA device's.
pub struct KvMemory {
    allocator: Allocator,
    /// The CUDA device ordinal when the cache is in GPU memory.
    cuda: Option<i32>,
}

impl KvMemory {
    pub fn host() -> KvMemory {
        KvMemory {
            allocator: Allocator::default(),
            cuda: None,
        }
    }

    /// GPU memory of CUDA device `ordinal`, through the session's own allocator for it.
    pub fn cuda(session: &Session, ordinal: i32) -> Result<KvMemory> {
        let info = MemoryInfo::new(
            AllocationDevice::CUDA,
            ordinal,
            AllocatorType::Device,
            MemoryType::Default,
        )?;
        Ok(KvMemory {
            allocator: Allocator::new(session, info)?,
            cuda: Some(ordinal),
        })
    }

    /// Where a graph's `present` outputs should land.
    pub fn info(&self) -> &MemoryInfo<'_> {
        self.allocator.memory_info()
    }

    /// e.g. `host`, `gpu:0`: for logs.
    pub fn describe(&self) -> String {
        self.cuda
            .map_or_else(|| "host".to_owned(), |d| format!("gpu:{d}"))
    }

    /// A zeroed tensor, and the copies (already offset into it) that fill it.
    fn fill(
        &self,
        elem: TensorElementType,
        shape: [usize; 4],
        copies: &[Copy2d],
    ) -> Result<DynValue> {
        let mut t = DynTensor::new(&self.allocator, elem, shape)?;
        let bytes = shape.iter().product::<usize>() * elem_size(elem);
        let base = t.data_ptr_mut();
        let copies: Vec<Copy2d> = copies
            .iter()
            .map(|c| Copy2d {
                // `dst` was an offset into the tensor.
                dst: base.cast::<u8>().wrapping_add(c.dst as usize).cast(),
                ..*c
            })
            .collect();
        match self.cuda {
            // An empty cache (no positions yet) has no memory to fill.
            Some(_) if bytes == 0 => {}
            // SAFETY: every block lies inside its tensor (`gather` checks rows, positions and
            // each source's shape and type), and ONNX Runtime's CUDA allocator zeroes nothing,
            // so the whole tensor is zeroed.
            Some(d) => unsafe { gpu::device_fill(d, Some((base, bytes)), &copies) }
                .map_err(|e| Error::Internal(e.to_string()))?,
            // SAFETY: as above; ort zeroes host tensors it allocates.
            None => copies.iter().for_each(|c| unsafe { host_copy(c) }),
        }
        Ok(t.into_dyn())
    }
}

fn elem_size(elem: TensorElementType) -> usize {
    match elem {
        TensorElementType::Float16 => 2,
        _ => 4,
    }
}

fn elem(l: &CacheLayout) -> TensorElementType {
    match l.dtype {
        DType::Float16 => TensorElementType::Float16,
        _ => TensorElementType::Float32,
    }
}

/// # Safety
/// Both sides' blocks must lie in live, non-overlapping host memory.
unsafe fn host_copy(c: &Copy2d) {
    for i in 0..c.height {
        // SAFETY: the caller's promise.
        unsafe {
            std::ptr::copy_nonoverlapping(
                c.src.cast::<u8>().add(i * c.src_pitch),
                c.dst.cast::<u8>().add(i * c.dst_pitch),
                c.width,
            )
        };
    }
}

/// A zeroed `[rows, kv_heads, len, head_dim]` cache tensor.
pub fn zeros(l: &CacheLayout, rows: usize, len: usize) -> Result<DynValue> {
    l.memory
        .fill(elem(l), [rows, l.kv_heads, len, l.head_dim], &[])
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
    let e = elem_size(elem(l));
    let srcs = sources
        .iter()
        .map(|v| {
            let t = v
                .view()
                .downcast::<DynTensorValueType>()
                .map_err(|_| Error::Internal("a KV cache value is not a tensor".into()))?;
            let shape = t.shape();
            let fits = shape.len() == 4
                && shape[1] as usize == l.kv_heads
                && shape[3] as usize == l.head_dim
                && *t.data_type() == elem(l);
            if !fits {
                return Err(Error::Internal(format!(
                    "a KV cache tensor of shape {shape:?} ({:?}) is not [rows, {}, positions, {}] ({:?})",
                    t.data_type(),
                    l.kv_heads,
                    l.head_dim,
                    elem(l)
                )));
            }
            Ok((t.data_ptr(), shape[2] as usize, shape[0] as usize))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut copies = Vec::with_capacity(picks.len());
    for (row, &(s, r, keep)) in picks.iter().enumerate() {
        let (ptr, t, rows) = srcs[s];
        if keep == 0 {
            continue;
        }
        if r >= rows || keep > t || keep > len {
            return Err(Error::Internal(format!(
                "KV row copy out of bounds: row {r} of {rows}, {keep} of {t} positions into {len}"
            )));
        }
        let mut c = row_copy(
            (row, len),
            (r, t),
            keep,
            (l.kv_heads, l.head_dim * e),
            align,
        );
        c.src = ptr.cast::<u8>().wrapping_add(c.src as usize).cast();
        copies.push(c);
    }
    l.memory
        .fill(elem(l), [picks.len(), l.kv_heads, len, l.head_dim], &copies)
}

/// The copy of the `keep` positions at the `align` end of source row `r` (of `t` positions) to
/// the same end of destination row `row` (of `len`), for `h` heads of `w` bytes a position.
/// Its `src` and `dst` are byte offsets into the two tensors.
fn row_copy(
    (row, len): (usize, usize),
    (r, t): (usize, usize),
    keep: usize,
    (h, w): (usize, usize),
    align: Align,
) -> Copy2d {
    let (from, to) = match align {
        Align::Right => (t - keep, len - keep),
        Align::Left => (0, 0),
    };
    Copy2d {
        src: ((r * h * t + from) * w) as *const c_void,
        src_pitch: t * w,
        dst: ((row * h * len + to) * w) as *mut c_void,
        dst_pitch: len * w,
        width: keep * w,
        height: h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `row_copy` on host arrays of one-byte positions (head_dim × elem = 1).
    fn apply(
        dst: &mut [u8],
        src: &[u8],
        at: (usize, usize),
        from: (usize, usize),
        keep: usize,
        h: usize,
        align: Align,
    ) {
        let c = row_copy(at, from, keep, (h, 1), align);
        let c = Copy2d {
            src: src.as_ptr().wrapping_add(c.src as usize).cast(),
            dst: dst.as_mut_ptr().wrapping_add(c.dst as usize).cast(),
            ..c
        };
        // SAFETY: the offsets stay inside both arrays for these shapes.
        unsafe { host_copy(&c) };
    }

    #[test]
    fn rows_are_right_aligned_per_head() {
        // src: 1 row, 2 heads, t = 3: head0 = [1,2,3], head1 = [4,5,6]; keep the last 2.
        let src = [1, 2, 3, 4, 5, 6];
        let mut dst = [0; 2 * 2 * 4];
        apply(&mut dst, &src, (1, 4), (0, 3), 2, 2, Align::Right);
        assert_eq!(dst, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 0, 0, 5, 6]);
    }

    #[test]
    fn gqa_rows_are_left_aligned_per_head() {
        // A batch row of 3 positions whose first 2 are real, into a row of 4: [a, b, _, _].
        let src = [1, 2, 9, 4, 5, 9];
        let mut dst = [0; 2 * 2 * 4];
        apply(&mut dst, &src, (1, 4), (0, 3), 2, 2, Align::Left);
        assert_eq!(dst, [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 4, 5, 0, 0]);
    }

    #[test]
    fn a_later_source_row_is_found_by_its_offset() {
        // 2 rows of 2 heads × 2 positions; row 1 = [5,6 | 7,8] into a 1-row, 3-position buffer.
        let src = [1, 2, 3, 4, 5, 6, 7, 8];
        let mut dst = [0; 2 * 3];
        apply(&mut dst, &src, (0, 3), (1, 2), 2, 2, Align::Left);
        assert_eq!(dst, [5, 6, 0, 7, 8, 0]);
    }
}
