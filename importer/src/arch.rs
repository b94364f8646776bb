//! The architecture facts the graph needs, from GGUF metadata, checked against what the importer
//! supports (as models/importer/inferd_import/arch.py does for the Python importer).

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};
use crate::rope::{llama3_factors, LongRope};

#[derive(Debug, Clone, PartialEq)]
pub struct Arch {
    /// `llama`, `mistral`, `phi3`, `qwen2`, `qwen3` or `gemma2`.
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
    /// q and k are RMS-normalized per head before the rotary embedding (Qwen3).
    pub qk_norm: bool,
    /// Each position attends to itself and the `w − 1` before it only (Mistral's sliding window;
    /// Gemma 2's on its even layers).
    pub sliding_window: Option<usize>,
    /// Gemma 2: the window on even layers only; embeddings scaled by √hidden; norms around the
    /// attention and the MLP outputs too (`post_attention_norm`, `post_ffw_norm`); a GELU (tanh)
    /// gated MLP; attention scores and logits soft-capped (`cap · tanh(x / cap)`).
    pub gemma: Option<Gemma>,
    pub bos_token_id: Option<u64>,
    pub eos_token_ids: Vec<u64>,
    /// Each rotary frequency's divisor (Llama 3.1's "llama3" rope scaling, GGUF's
    /// `rope_freqs.weight`); empty for the plain rotary embedding.
    pub rope_freq_factors: Vec<f64>,
    /// The leading dimensions of each head that rotate (Phi-4-mini's partial rotary embedding:
    /// fewer than `head_dim`); the rest pass through.
    pub rotary_dim: usize,
    /// Phi-3-128k's and Phi-4-mini's scaling (`rope.rs`).
    pub longrope: Option<LongRope>,
}

const SUPPORTED: &str = "llama: Llama (SmolLM2, TinyLlama, Llama 2, Llama 3.x with its llama3 rope scaling); mistral: Mistral (with its sliding window); phi3: Phi-3 and Phi-4-mini (fused projections, longrope, partial rotary); qwen2: Qwen2 (Qwen2.5, DeepSeek-R1-Distill-Qwen); qwen3: Qwen3; gemma2: Gemma 2";

/// The supported family closest to an unsupported architecture name (a GGUF
/// `general.architecture` or a transformers class), for the refusal to point at: the same
/// family's supported generation, else the plain Llama decoder most others derive from.
pub fn nearest(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    const BY_PREFIX: [(&str, &str); 9] = [
        ("gemma", "gemma2"),
        ("qwen3", "qwen3"),
        ("qwen", "qwen2"),
        ("phi", "phi3"),
        ("mistral", "mistral"),
        ("ministral", "mistral"),
        ("mixtral", "mistral"),
        ("deepseek", "qwen2"),
        ("smollm3", "llama"),
    ];
    BY_PREFIX
        .iter()
        .find(|(prefix, _)| n.starts_with(prefix))
        .map_or("llama", |(_, family)| family)
}

fn unsupported_architecture(name: &str) -> Error {
    Error::Unsupported(format!(
        "architecture {name:?}; the nearest supported one is {}. Supported: {SUPPORTED}",
        nearest(name)
    ))
}

/// What Gemma 2 adds to a Llama decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma {
    /// The norms' weights are stored as `w` and scale by `1 + w` (transformers); llama.cpp's
    /// converter stores `1 + w` already.
    pub norm_offset: f32,
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// Queries scale by `query_pre_attn_scalar^−½` (not always `head_dim^−½`).
    pub query_scale: f32,
}

impl Arch {
    /// A small Llama, for unit tests to adjust.
    #[cfg(test)]
    pub fn test_default() -> Arch {
        Arch {
            family: "llama".into(),
            vocab_size: 32,
            hidden_size: 8,
            intermediate_size: 16,
            num_layers: 1,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 4,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            context_length: 64,
            tie_word_embeddings: true,
            attention_bias: false,
            qk_norm: false,
            sliding_window: None,
            gemma: None,
            bos_token_id: None,
            eos_token_ids: vec![2],
            rope_freq_factors: Vec::new(),
            rotary_dim: 4,
            longrope: None,
        }
    }

    /// Whether layer `i` attends within the sliding window only.
    pub fn windowed(&self, i: usize) -> bool {
        self.sliding_window.is_some() && (self.gemma.is_none() || i.is_multiple_of(2))
    }

    /// The queries' scale: `head_dim^−½`, or Gemma 2's own.
    pub fn query_scale(&self) -> f32 {
        self.gemma
            .as_ref()
            .map_or((1.0 / (self.head_dim as f64).sqrt()) as f32, |g| {
                g.query_scale
            })
    }
}

impl Arch {
    pub fn from_gguf(g: &Gguf) -> Result<Arch> {
        let family = g
            .metadata
            .get("general.architecture")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if !matches!(
            family.as_str(),
            "llama" | "mistral" | "phi3" | "qwen2" | "qwen3" | "gemma2"
        ) {
            return Err(unsupported_architecture(&family));
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
        let scaling = get("rope.scaling.type")
            .and_then(Value::as_str)
            .unwrap_or("none");
        if !matches!(scaling, "none" | "longrope" | "su") {
            return Err(Error::Unsupported(format!(
                "rope scaling {scaling:?}; supported: none, Llama 3's rope_freqs and Phi-3's longrope"
            )));
        }
        let head = get("attention.key_length")
            .and_then(Value::as_u64)
            .map_or(hidden / heads.max(1), |v| v as usize);
        let rotary_dim = get("rope.dimension_count")
            .and_then(Value::as_u64)
            .map_or(head, |r| r as usize);
        let floats = |name: &str| -> Result<Option<Vec<f64>>> {
            g.tensor(name)
                .map(|t| {
                    t.format
                        .floats(g.data(t))
                        .map(|v| v.into_iter().map(f64::from).collect())
                        .ok_or_else(|| Error::Unsupported(format!("{name} is not a float tensor")))
                })
                .transpose()
        };
        let context_length = need("context_length")?;
        // Phi-3's longrope as the converter writes it: both factor lists as tensors.
        let longrope = match (
            floats("rope_factors_short.weight")?,
            floats("rope_factors_long.weight")?,
        ) {
            (Some(short), Some(long)) => {
                let original = get("rope.scaling.original_context_length")
                    .and_then(Value::as_u64)
                    .map_or(context_length, |v| v as usize);
                Some(LongRope {
                    short,
                    long,
                    original_context: original,
                    attention_factor: get("rope.scaling.attn_factor")
                        .and_then(Value::as_f64)
                        .unwrap_or_else(|| {
                            LongRope::default_attention_factor(context_length, original)
                        }),
                })
            }
            (None, None) => None,
            _ => {
                return Err(Error::Corrupt(
                    "longrope needs both rope_factors_short and rope_factors_long".into(),
                ))
            }
        };
        // Llama 3.1's scaling, as the converter writes it: a divisor per rotary frequency.
        let rope_freq_factors = floats("rope_freqs.weight")?.unwrap_or_default();
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
            context_length,
            tie_word_embeddings: g.tensor("output.weight").is_none(),
            attention_bias: g.tensor("blk.0.attn_q.bias").is_some(),
            qk_norm: g.tensor("blk.0.attn_q_norm.weight").is_some(),
            sliding_window: get("attention.sliding_window")
                .and_then(Value::as_u64)
                .map(|w| w as usize),
            gemma: (family == "gemma2").then(|| {
                let cap = |k: &str| get(k).and_then(Value::as_f64).map(|c| c as f32);
                Gemma {
                    norm_offset: 0.0,
                    attn_softcap: cap("attn_logit_softcapping"),
                    final_softcap: cap("final_logit_softcapping"),
                    // GGUF has no query_pre_attn_scalar; llama.cpp uses head_dim (2B and 9B).
                    query_scale: (1.0 / (head as f64).sqrt()) as f32,
                }
            }),
            bos_token_id: g
                .metadata
                .get("tokenizer.ggml.bos_token_id")
                .and_then(Value::as_u64),
            eos_token_ids: g
                .metadata
                .get("tokenizer.ggml.eos_token_id")
                .and_then(Value::as_u64)
                .into_iter()
                .collect(),
            rope_freq_factors,
            rotary_dim,
            longrope,
            family,
        };
        a.check()
    }

    /// From a transformers `config.json`; `tensor` says whether the checkpoint has a tensor
    /// (by GGUF name): a missing `lm_head` means a tied head, q biases mean attention biases.
    pub fn from_hf(cfg: &serde_json::Value, tensor: impl Fn(&str) -> bool) -> Result<Arch> {
        let archs: Vec<&str> = cfg["architectures"]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        let family = match (archs.first().copied(), cfg["model_type"].as_str()) {
            (Some("LlamaForCausalLM"), _) | (None, Some("llama")) => "llama",
            (Some("Qwen2ForCausalLM"), _) | (None, Some("qwen2")) => "qwen2",
            (Some("Qwen3ForCausalLM"), _) | (None, Some("qwen3")) => "qwen3",
            (Some("MistralForCausalLM"), _) | (None, Some("mistral")) => "mistral",
            (Some("Phi3ForCausalLM"), _) | (None, Some("phi3")) => "phi3",
            (Some("Gemma2ForCausalLM"), _) | (None, Some("gemma2")) => "gemma2",
            (a, t) => return Err(unsupported_architecture(a.or(t).unwrap_or("(none)"))),
        };
        let scaling = &cfg["rope_scaling"];
        let kind = scaling["rope_type"].as_str().or(scaling["type"].as_str());
        if !scaling.is_null()
            && !matches!(kind, None | Some("default" | "llama3" | "longrope" | "su"))
        {
            return Err(Error::Unsupported(format!(
                "rope_scaling {scaling}; supported: the default rotary embedding, llama3 and longrope"
            )));
        }
        if cfg["use_sliding_window"].as_bool() == Some(true) {
            return Err(Error::Unsupported(
                "use_sliding_window (Qwen2's per-layer window); Mistral's sliding window is supported".into(),
            ));
        }
        let need = |key: &str| {
            cfg[key]
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| Error::Corrupt(format!("config.json lacks {key:?}")))
        };
        let (heads, hidden) = (need("num_attention_heads")?, need("hidden_size")?);
        let ids = |v: &serde_json::Value| match v {
            serde_json::Value::Array(a) => a.iter().filter_map(serde_json::Value::as_u64).collect(),
            v => v.as_u64().into_iter().collect(),
        };
        let mut a = Arch {
            family: family.into(),
            vocab_size: need("vocab_size")?,
            hidden_size: hidden,
            intermediate_size: need("intermediate_size")?,
            num_layers: need("num_hidden_layers")?,
            num_heads: heads,
            num_kv_heads: cfg["num_key_value_heads"]
                .as_u64()
                .map_or(heads, |v| v as usize),
            head_dim: cfg["head_dim"]
                .as_u64()
                .map_or(hidden / heads.max(1), |v| v as usize),
            rms_norm_eps: cfg["rms_norm_eps"].as_f64().unwrap_or(1e-6) as f32,
            rope_theta: cfg["rope_theta"].as_f64().unwrap_or(10000.0),
            context_length: cfg["max_position_embeddings"]
                .as_u64()
                .map_or(2048, |v| v as usize),
            tie_word_embeddings: cfg["tie_word_embeddings"].as_bool().unwrap_or(false)
                || !tensor("output.weight"),
            attention_bias: tensor("blk.0.attn_q.bias"),
            qk_norm: tensor("blk.0.attn_q_norm.weight"),
            sliding_window: match family {
                "mistral" | "phi3" | "gemma2" => cfg["sliding_window"].as_u64().map(|w| w as usize),
                _ => None,
            },
            gemma: (family == "gemma2").then(|| {
                let cap = |k: &str| cfg[k].as_f64().map(|c| c as f32);
                let scalar = cfg["query_pre_attn_scalar"]
                    .as_f64()
                    .unwrap_or_else(|| cfg["head_dim"].as_f64().unwrap_or(256.0));
                Gemma {
                    norm_offset: 1.0,
                    attn_softcap: cap("attn_logit_softcapping"),
                    final_softcap: cap("final_logit_softcapping"),
                    query_scale: (1.0 / scalar.sqrt()) as f32,
                }
            }),
            bos_token_id: cfg["bos_token_id"].as_u64(),
            eos_token_ids: ids(&cfg["eos_token_id"]),
            rope_freq_factors: Vec::new(),
            rotary_dim: 0,
            longrope: None,
        };
        let partial = cfg["partial_rotary_factor"].as_f64().unwrap_or(1.0);
        a.rotary_dim = (a.head_dim as f64 * partial) as usize;
        match kind {
            Some("llama3") => {
                a.rope_freq_factors = llama3_factors(scaling, a.rope_theta, a.rotary_dim)?
            }
            Some("longrope" | "su") => a.longrope = Some(LongRope::from_hf(cfg, a.context_length)?),
            _ => {}
        }
        a.check()
    }

    fn check(self) -> Result<Arch> {
        let sizes = [
            self.hidden_size,
            self.intermediate_size,
            self.num_layers,
            self.num_heads,
            self.head_dim,
            self.context_length,
        ];
        if sizes.contains(&0) {
            return Err(Error::Corrupt(format!(
                "the model's configuration gives a size of 0: {self:?}"
            )));
        }
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
        if self.rotary_dim == 0 || self.rotary_dim > self.head_dim || self.rotary_dim % 2 == 1 {
            return Err(Error::Unsupported(format!(
                "a rotary embedding over {} of {} dimensions (it must be even and within the head)",
                self.rotary_dim, self.head_dim
            )));
        }
        let half = self.rotary_dim / 2;
        let lists = [Some(&self.rope_freq_factors).filter(|f| !f.is_empty())]
            .into_iter()
            .chain(
                self.longrope
                    .iter()
                    .flat_map(|l| [Some(&l.short), Some(&l.long)]),
            )
            .flatten();
        for list in lists {
            if list.len() != half {
                return Err(Error::Corrupt(format!(
                    "{} rope frequency factors for a rotary embedding of {} dimensions",
                    list.len(),
                    self.rotary_dim
                )));
            }
        }
        if self.vocab_size == 0 {
            return Err(Error::Corrupt(
                "no vocabulary size (neither vocab_size nor tokenizer.ggml.tokens)".into(),
            ));
        }
        Ok(self)
    }
}

impl Arch {
    /// The rotary embedding's inverse frequencies, after any rope scaling (longrope's short
    /// factors: `inv_freq_long` has the others).
    pub fn inv_freq(&self) -> Vec<f64> {
        let divisors = match &self.longrope {
            Some(l) => &l.short,
            None => &self.rope_freq_factors,
        };
        crate::rope::inv_freq(self.rope_theta, self.rotary_dim, divisors)
    }

    /// Longrope's inverse frequencies beyond the original context.
    pub fn inv_freq_long(&self) -> Option<Vec<f64>> {
        let l = self.longrope.as_ref()?;
        Some(crate::rope::inv_freq(
            self.rope_theta,
            self.rotary_dim,
            &l.long,
        ))
    }

    /// config.json for the written folder, in transformers' terms.
    pub fn hf_config(&self) -> serde_json::Value {
        let arch = match self.family.as_str() {
            "qwen2" => "Qwen2ForCausalLM",
            "qwen3" => "Qwen3ForCausalLM",
            "mistral" => "MistralForCausalLM",
            "phi3" => "Phi3ForCausalLM",
            "gemma2" => "Gemma2ForCausalLM",
            _ => "LlamaForCausalLM",
        };
        let mut cfg = serde_json::json!({
            "architectures": [arch],
            "model_type": self.family,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.context_length,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_ids,
        });
        if self.rotary_dim != self.head_dim {
            cfg["partial_rotary_factor"] = (self.rotary_dim as f64 / self.head_dim as f64).into();
        }
        if let Some(l) = &self.longrope {
            cfg["original_max_position_embeddings"] = l.original_context.into();
            cfg["rope_scaling"] = serde_json::json!({"rope_type": "longrope", "short_factor": l.short,
                "long_factor": l.long, "attention_factor": l.attention_factor});
        }
        cfg
    }

    /// genai_config.json, so onnxruntime-genai runs the same folder.
    pub fn genai_config(&self, threads: u32, layout: crate::Layout) -> serde_json::Value {
        let eos = match self.eos_token_ids.as_slice() {
            [one] => serde_json::json!(one),
            many => serde_json::json!(many),
        };
        let mut inputs = serde_json::json!({
            "input_ids": "input_ids", "attention_mask": "attention_mask",
            "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value",
        });
        if layout == crate::Layout::Optimum {
            inputs["position_ids"] = "position_ids".into();
        }
        serde_json::json!({
            "model": {
                "bos_token_id": self.bos_token_id,
                "context_length": self.context_length,
                "decoder": {
                    "session_options": {"log_id": "onnxruntime-genai", "provider_options": [], "intra_op_num_threads": threads},
                    "filename": "model.onnx",
                    "head_size": self.head_dim,
                    "hidden_size": self.hidden_size,
                    "inputs": inputs,
                    "outputs": {
                        "logits": "logits", "present_key_names": "present.%d.key", "present_value_names": "present.%d.value",
                    },
                    "num_attention_heads": self.num_heads,
                    "num_hidden_layers": self.num_layers,
                    "num_key_value_heads": self.num_kv_heads,
                },
                "eos_token_id": eos,
                "pad_token_id": self.eos_token_ids.first().copied().unwrap_or(0),
                "type": self.family,
                "vocab_size": self.vocab_size,
            },
            "search": {
                "diversity_penalty": 0.0, "do_sample": false, "early_stopping": true, "length_penalty": 1.0,
                "max_length": self.context_length, "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1,
                "num_return_sequences": 1, "past_present_share_buffer": false, "repetition_penalty": 1.0,
                "temperature": 1.0, "top_k": 1, "top_p": 1.0,
            },
        })
    }
}
