//! The architecture facts the graph needs, from GGUF metadata, checked against what the importer
//! supports (as models/importer/inferd_import/arch.py does for the Python importer).

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Arch {
    /// `llama` or `qwen2`.
    pub family: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f64,
    pub context_length: usize,
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2).
    pub attention_bias: bool,
}

const SUPPORTED: &str = "llama: Llama (SmolLM2, TinyLlama, Llama 2/3 without rope scaling); qwen2: Qwen2 (Qwen2.5, DeepSeek-R1-Distill-Qwen)";

impl Arch {
    pub fn from_gguf(g: &Gguf) -> Result<Arch> {
        let family = g
            .metadata
            .get("general.architecture")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if !matches!(family.as_str(), "llama" | "qwen2") {
            return Err(Error::Unsupported(format!(
                "architecture {family:?}. Supported: {SUPPORTED}"
            )));
        }
        let get = |key: &str| g.metadata.get(&format!("{family}.{key}"));
        let need = |key: &str| {
            get(key)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| Error::Corrupt(format!("GGUF metadata lacks {family}.{key}")))
        };
        let heads = need("attention.head_count")?;
        let hidden = need("embedding_length")?;
        let tokens = match g.metadata.get("tokenizer.ggml.tokens") {
            Some(Value::Array(t)) => t.len(),
            _ => 0,
        };
        let a = Arch {
            vocab_size: get("vocab_size")
                .and_then(Value::as_u64)
                .map_or(tokens, |v| v as usize),
            hidden_size: hidden,
            intermediate_size: need("feed_forward_length")?,
            num_layers: need("block_count")?,
            num_heads: heads,
            num_kv_heads: get("attention.head_count_kv")
                .and_then(Value::as_u64)
                .map_or(heads, |v| v as usize),
            head_dim: get("attention.key_length")
                .and_then(Value::as_u64)
                .map_or(hidden / heads.max(1), |v| v as usize),
            rms_norm_eps: get("attention.layer_norm_rms_epsilon")
                .and_then(Value::as_f64)
                .ok_or_else(|| {
                    Error::Corrupt(format!(
                        "GGUF metadata lacks {family}.attention.layer_norm_rms_epsilon"
                    ))
                })? as f32,
            rope_theta: get("rope.freq_base")
                .and_then(Value::as_f64)
                .unwrap_or(10000.0),
            context_length: need("context_length")?,
            tie_word_embeddings: g.tensor("output.weight").is_none(),
            attention_bias: g.tensor("blk.0.attn_q.bias").is_some(),
            family,
        };
        a.check()
    }

    fn check(self) -> Result<Arch> {
        if self.num_kv_heads == 0 || !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(Error::Unsupported(format!(
                "{} attention heads are not a multiple of {} KV heads",
                self.num_heads, self.num_kv_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::Unsupported(format!(
                "head_dim {} must be even for rotary embeddings",
                self.head_dim
            )));
        }
        if self.vocab_size == 0 {
            return Err(Error::Corrupt(
                "no vocabulary size (neither vocab_size nor tokenizer.ggml.tokens)".into(),
            ));
        }
        Ok(self)
    }
}
