//! Deterministic random weights for an architecture config (a transformers `config.json`): for
//! measuring speed and memory at a real model's shape without its weights (`--random`). Each
//! tensor is made when the graph reads it, from the seed and its name, so an import of a 7B shape
//! holds one tensor at a time, and the same seed gives the same weights in any order. (The Python
//! importer's `--random` draws from numpy's generator: the two give different weights.)

use std::borrow::Cow;
use std::path::Path;

use crate::arch::Arch;
use crate::blocks::Format;
use crate::error::Result;
use crate::gguf::TensorInfo;
use crate::hf::read_json;
use crate::source::Source;

pub struct RandomWeights {
    seed: u64,
    tensors: Vec<TensorInfo>,
}

/// SplitMix64: a small generator with good statistics, enough for test weights.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// FNV-1a, to seed each tensor from its name.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl RandomWeights {
    /// The config's architecture, and a source of weights for it.
    pub fn new(config: &Path, seed: u64) -> Result<(Arch, RandomWeights)> {
        let cfg = read_json(config, true)?.expect("required");
        let tied = cfg["tie_word_embeddings"].as_bool().unwrap_or(false);
        let family = cfg["model_type"].as_str().unwrap_or_default().to_owned();
        let bias = cfg["attention_bias"].as_bool().unwrap_or(family == "qwen2");
        let a = Arch::from_hf(&cfg, |name| match name {
            "output.weight" => !tied,
            "blk.0.attn_q.bias" => bias,
            "blk.0.attn_q_norm.weight" => family == "qwen3",
            _ => true,
        })?;
        let (h, hd, ffn) = (a.hidden_size, a.head_dim, a.intermediate_size);
        let (q, kv) = (a.num_heads * hd, a.num_kv_heads * hd);
        let mut shapes: Vec<(String, Vec<usize>)> = vec![
            ("token_embd.weight".into(), vec![h, a.vocab_size]),
            ("output_norm.weight".into(), vec![h]),
        ];
        if !a.tie_word_embeddings {
            shapes.push(("output.weight".into(), vec![h, a.vocab_size]));
        }
        for i in 0..a.num_layers {
            let mut layer = vec![
                ("attn_norm.weight", vec![h]),
                ("ffn_norm.weight", vec![h]),
                ("attn_q.weight", vec![h, q]),
                ("attn_k.weight", vec![h, kv]),
                ("attn_v.weight", vec![h, kv]),
                ("attn_output.weight", vec![q, h]),
                ("ffn_gate.weight", vec![h, ffn]),
                ("ffn_up.weight", vec![h, ffn]),
                ("ffn_down.weight", vec![ffn, h]),
            ];
            if a.gemma.is_some() {
                layer.extend([
                    ("post_attention_norm.weight", vec![h]),
                    ("post_ffw_norm.weight", vec![h]),
                ]);
            }
            if a.qk_norm {
                layer.extend([
                    ("attn_q_norm.weight", vec![hd]),
                    ("attn_k_norm.weight", vec![hd]),
                ]);
            }
            if a.attention_bias {
                layer.extend([
                    ("attn_q.bias", vec![q]),
                    ("attn_k.bias", vec![kv]),
                    ("attn_v.bias", vec![kv]),
                ]);
            }
            shapes.extend(layer.into_iter().map(|(n, d)| (format!("blk.{i}.{n}"), d)));
        }
        let tensors = shapes
            .into_iter()
            .map(|(name, dims)| {
                let elements: usize = dims.iter().product();
                TensorInfo {
                    name,
                    dims: dims.iter().map(|&d| d as u64).collect(),
                    format: Format::F32,
                    file: 0,
                    start: 0,
                    len: elements * 4,
                }
            })
            .collect();
        Ok((a, RandomWeights { seed, tensors }))
    }
}

impl Source for RandomWeights {
    fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Normal weights scaled by 1/√(inputs), as an initializer would; norms near 1; small biases.
    fn data(&self, t: &TensorInfo) -> Cow<'_, [u8]> {
        let mut rng = SplitMix(self.seed ^ name_hash(&t.name));
        let (n, inputs) = (t.len / 4, t.dims[0] as f64);
        let (offset, scale) = if t.name.ends_with("norm.weight") {
            (1.0, 0.1)
        } else if t.name.ends_with(".bias") {
            (0.0, 0.02)
        } else {
            (0.0, 1.0 / inputs.sqrt())
        };
        let mut out = Vec::with_capacity(t.len);
        for _ in 0..n {
            out.extend(((offset + scale * rng.normal()) as f32).to_le_bytes());
        }
        Cow::Owned(out)
    }

    fn rotary_permuted(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix;

    #[test]
    fn the_normal_draws_have_mean_0_and_variance_1() {
        let mut r = SplitMix(7);
        let xs: Vec<f64> = (0..100_000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
    }
}
