//! One run of the decoder graph: `ids` [B, S] after a cache of `past` positions, returning the
//! last position's logits of every row and the `present.*` cache, which becomes the next
//! step's `past_key_values.*` as it is (no copy).

use std::borrow::Cow;

use ort::session::{Session, SessionInputValue};
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
}

pub struct Output {
    /// [rows, vocab]
    pub logits: Vec<f32>,
    pub vocab: usize,
    pub present: Vec<DynValue>,
}

/// Each row's last position's logits, as f32 (fp16 graphs, such as the builder's CUDA exports,
/// give fp16 logits).
fn last_logits(v: &DynValue, rows: usize) -> Result<(Vec<f32>, usize)> {
    fn last<T: Copy>(
        shape: &[i64],
        data: &[T],
        rows: usize,
        f: impl Fn(T) -> f32,
    ) -> (Vec<f32>, usize) {
        let vocab = *shape.last().unwrap_or(&0) as usize;
        let per_row = data.len() / rows.max(1);
        let logits = (0..rows)
            .flat_map(|r| &data[(r + 1) * per_row - vocab..(r + 1) * per_row])
            .map(|&x| f(x))
            .collect();
        (logits, vocab)
    }
    if let Ok((shape, data)) = v.try_extract_tensor::<f32>() {
        return Ok(last(shape, data, rows, |x| x));
    }
    let (shape, data) = v.try_extract_tensor::<half::f16>()?;
    Ok(last(shape, data, rows, f32::from))
}

pub fn run(session: &mut Session, l: &CacheLayout, s: Step, past: Vec<DynValue>) -> Result<Output> {
    let (b, n) = (s.rows as i64, s.len as i64);
    let total = (s.mask.len() / s.rows) as i64;
    let mut inputs: Vec<(Cow<'static, str>, SessionInputValue<'static>)> = vec![
        (
            "input_ids".into(),
            OrtTensor::from_array((vec![b, n], s.ids))?
                .into_dyn()
                .into(),
        ),
        (
            "attention_mask".into(),
            OrtTensor::from_array((vec![b, total], s.mask))?
                .into_dyn()
                .into(),
        ),
    ];
    if l.position_ids {
        inputs.push((
            "position_ids".into(),
            OrtTensor::from_array((vec![b, n], s.positions))?
                .into_dyn()
                .into(),
        ));
    }
    if l.logits_to_keep {
        inputs.push((
            KEEP.into(),
            OrtTensor::from_array((vec![1i64], vec![1i64]))?
                .into_dyn()
                .into(),
        ));
    }
    for (name, v) in l.past.iter().zip(past) {
        inputs.push((name.clone().into(), v.into()));
    }
    let mut out = session.run(inputs)?;
    let (logits, vocab) = last_logits(&out["logits"], s.rows)?;
    let present = l
        .present
        .iter()
        .map(|n| {
            out.remove(n)
                .ok_or_else(|| Error::Internal(format!("model produced no {n}")))
        })
        .collect::<Result<_>>()?;
    Ok(Output {
        logits,
        vocab,
        present,
    })
}
