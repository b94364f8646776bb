//! One run of the decoder graph: `ids` [B, S] after a cache of `past` positions, returning the
//! last positions' logits of every row and leaving the cache of every position in `past`.

use ort::memory::Allocator;
use ort::session::Session;
use ort::value::{DynValue, Tensor as OrtTensor};

use super::CacheLayout;
use crate::error::{Error, Result};

/// The optional input that limits the LM head to the last positions.
pub const KEEP: &str = "num_logits_to_keep";

pub struct Step {
    pub rows: usize,
    /// Tokens per row.
    pub len: usize,
    pub ids: Vec<i64>,
    /// [rows, past + len]: 0 marks left padding.
    pub mask: Vec<i64>,
    /// [rows, len]: each token's position in its own sequence.
    pub positions: Vec<i64>,
    /// The last positions of each row whose logits are wanted: 1, or with a draft to check,
    /// every position fed.
    pub keep: usize,
}

pub struct Output {
    /// [rows, keep, vocab]
    pub logits: Vec<f32>,
    pub vocab: usize,
}

/// Each row's last `keep` positions' logits, as f32 (fp16 graphs, such as the builder's CUDA
/// exports, give fp16 logits).
fn last_logits(v: &DynValue, rows: usize, keep: usize) -> Result<(Vec<f32>, usize)> {
    fn last<T: Copy>(
        shape: &[i64],
        data: &[T],
        (rows, keep): (usize, usize),
        f: impl Fn(T) -> f32,
    ) -> (Vec<f32>, usize) {
        let vocab = *shape.last().unwrap_or(&0) as usize;
        let per_row = data.len() / rows.max(1);
        let logits = (0..rows)
            .flat_map(|r| &data[(r + 1) * per_row - keep * vocab..(r + 1) * per_row])
            .map(|&x| f(x))
            .collect();
        (logits, vocab)
    }
    if let Ok((shape, data)) = v.try_extract_tensor::<f32>() {
        return Ok(last(shape, data, (rows, keep), |x| x));
    }
    let (shape, data) = v.try_extract_tensor::<half::f16>()?;
    Ok(last(shape, data, (rows, keep), f32::from))
}

/// Runs one step: `past` is the cache before it and, on return, the cache after it, in the
/// memory the cache lives in (`KvMemory`): on a GPU, no cache tensor crosses to the host, and
/// only the logits do. Either the graph's `present.*` outputs replace `past` as they are, or,
/// with a share buffer, the graph writes into `past` in place: each tensor is bound as both its
/// past input and its present output (GroupQueryAttention takes that as "write in place"), so
/// nothing is copied or allocated for the cache at all. On an error the cache is gone (the
/// caller drops the sequences that used it).
pub fn run(
    session: &mut Session,
    l: &CacheLayout,
    s: Step,
    past: &mut Vec<DynValue>,
) -> Result<Output> {
    let rows = s.rows;
    let total = s.mask.len() / rows;
    let mut inputs: Vec<(&str, DynValue)> = vec![
        ("input_ids", tensor(vec![rows, s.len], s.ids)?),
        ("attention_mask", tensor(vec![rows, total], s.mask)?),
    ];
    if l.position_ids {
        inputs.push(("position_ids", tensor(vec![rows, s.len], s.positions)?));
    }
    if l.logits_to_keep {
        inputs.push((KEEP, tensor(vec![1], vec![s.keep as i64])?));
    }
    let mut binding = session.create_binding()?;
    for (name, v) in &inputs {
        binding.bind_input(*name, v)?;
    }
    for ((p, n), v) in l.past.iter().zip(&l.present).zip(past.iter_mut()) {
        binding.bind_input(p.as_str(), v)?;
        if l.shared {
            binding.bind_output(n.as_str(), &mut *v)?;
        } else {
            binding.bind_output_to_device(n.as_str(), l.memory.info())?;
        }
    }
    binding.bind_output_to_device("logits", Allocator::default().memory_info())?;
    let mut out = session.run_binding(&binding)?;
    let (logits, vocab) = last_logits(&out["logits"], rows, s.keep)?;
    if !l.shared {
        let presents = l
            .present
            .iter()
            .map(|n| {
                out.remove(n)
                    .ok_or_else(|| Error::Internal(format!("model produced no {n}")))
            })
            .collect::<Result<_>>()?;
        drop(out);
        drop(binding);
        *past = presents;
    }
    Ok(Output { logits, vocab })
}

fn tensor(shape: Vec<usize>, data: Vec<i64>) -> Result<DynValue> {
    Ok(OrtTensor::from_array((shape, data))?.into_dyn())
}
