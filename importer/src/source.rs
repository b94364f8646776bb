//! Where a decoder's weights come from, in GGUF's tensor names (`blk.{i}.attn_q.weight`, …): a
//! GGUF file, or a Hugging Face checkpoint folder whose names `hf.rs` maps, so the graph is
//! built one way for both.

use std::borrow::Cow;

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::gguf::{Gguf, TensorInfo};

pub trait Source {
    fn tensors(&self) -> &[TensorInfo];

    /// The tensor's bytes: in place in a mapped file, or made on demand (random weights).
    fn data(&self, t: &TensorInfo) -> Cow<'_, [u8]>;

    /// Whether llama's q/k rows are in llama.cpp's rotary order (GGUF files), to be undone.
    fn rotary_permuted(&self) -> bool;

    fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors().iter().find(|t| t.name == name)
    }
}

impl Source for Gguf {
    fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    fn data(&self, t: &TensorInfo) -> Cow<'_, [u8]> {
        Cow::Borrowed(Gguf::data(self, t))
    }

    fn rotary_permuted(&self) -> bool {
        true
    }
}

/// Phi-3's fused projections as the separate ones the graph reads: each layer's `attn_qkv`
/// (q, k and v rows, one after another) and `ffn_gate_up` (gate, then up; a GGUF's `ffn_up` of
/// twice the width) become views of their rows, with no copy.
pub fn unfuse(tensors: &mut Vec<TensorInfo>, a: &Arch) -> Result<()> {
    let (q, kv) = (a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim);
    let ffn = a.intermediate_size;
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors.drain(..) {
        // Rows are the outermost dimension (GGUF lists dimensions innermost first).
        let rows = t.dims.last().map_or(0, |&r| r as usize);
        let Some((prefix, module, kind)) = t
            .name
            .rsplit_once('.')
            .and_then(|(rest, kind)| rest.rsplit_once('.').map(|(p, m)| (p, m, kind)))
        else {
            out.push(t);
            continue;
        };
        let parts: &[(&str, usize)] = match module {
            "attn_qkv" => &[("attn_q", q), ("attn_k", kv), ("attn_v", kv)],
            "ffn_gate_up" => &[("ffn_gate", ffn), ("ffn_up", ffn)],
            "ffn_up" if rows == 2 * ffn => &[("ffn_gate", ffn), ("ffn_up", ffn)],
            _ => {
                out.push(t);
                continue;
            }
        };
        let want: usize = parts.iter().map(|p| p.1).sum();
        if rows != want {
            return Err(Error::Corrupt(format!(
                "{} has {rows} rows, but the configuration implies {want}",
                t.name
            )));
        }
        let row_bytes = t.len / rows;
        let mut at = 0;
        for &(name, n) in parts {
            let mut dims = t.dims.clone();
            *dims.last_mut().expect("a tensor with rows") = n as u64;
            out.push(TensorInfo {
                name: format!("{prefix}.{name}.{kind}"),
                dims,
                format: t.format,
                file: t.file,
                start: t.start + at * row_bytes,
                len: n * row_bytes,
            });
            at += n;
        }
    }
    *tensors = out;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::Format;

    fn tensor(name: &str, rows: u64, cols: u64) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dims: vec![cols, rows],
            format: Format::F32,
            file: 0,
            start: 1000,
            len: (rows * cols * 4) as usize,
        }
    }

    #[test]
    fn fused_projections_become_views_of_their_rows() {
        let a = Arch {
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 8,
            intermediate_size: 16,
            ..Arch::test_default()
        };
        let mut t = vec![
            tensor("blk.0.attn_qkv.weight", 32 + 16 + 16, 8),
            tensor("blk.0.ffn_up.weight", 32, 8),
            tensor("blk.0.ffn_down.weight", 8, 16),
        ];
        unfuse(&mut t, &a).unwrap();
        let names: Vec<_> = t
            .iter()
            .map(|t| (t.name.as_str(), t.start, t.dims[1]))
            .collect();
        assert_eq!(
            names,
            [
                ("blk.0.attn_q.weight", 1000, 32),
                ("blk.0.attn_k.weight", 1000 + 32 * 32, 16),
                ("blk.0.attn_v.weight", 1000 + 48 * 32, 16),
                ("blk.0.ffn_gate.weight", 1000, 16),
                ("blk.0.ffn_up.weight", 1000 + 16 * 32, 16),
                ("blk.0.ffn_down.weight", 1000, 8),
            ]
        );
        let mut bad = vec![tensor("blk.0.attn_qkv.weight", 60, 8)];
        assert!(unfuse(&mut bad, &a).unwrap_err().to_string().contains("64"));
    }
}
