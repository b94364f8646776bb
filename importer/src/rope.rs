//! The rotary embedding's variants, as transformers computes them (`modeling_rope_utils.py`) and
//! llama.cpp's converter stores them: Llama 3.1's `llama3` frequency divisors, Phi-3's
//! `longrope` (two factor lists, switched by the sequence's length, and an attention factor),
//! and a partial rotary embedding (Phi-4-mini's `partial_rotary_factor`).

use crate::error::{Error, Result};

/// Phi-3-128k's and Phi-4-mini's scaling. Up to `original_context` positions a sequence rotates
/// with `short` divisors, beyond that with `long` ones (transformers' dynamic update: chosen by
/// the longest position in the step); cos and sin are scaled by `attention_factor` either way.
#[derive(Debug, Clone, PartialEq)]
pub struct LongRope {
    pub short: Vec<f64>,
    pub long: Vec<f64>,
    pub original_context: usize,
    pub attention_factor: f64,
}

impl LongRope {
    /// transformers' default attention factor for a context extended `factor` times.
    pub fn default_attention_factor(context: usize, original: usize) -> f64 {
        let factor = context as f64 / original as f64;
        if factor <= 1.0 {
            1.0
        } else {
            (1.0 + factor.ln() / (original as f64).ln()).sqrt()
        }
    }

    /// From config.json's `rope_scaling` (`type`/`rope_type` `longrope` or its old name `su`).
    pub fn from_hf(cfg: &serde_json::Value, context: usize) -> Result<LongRope> {
        let scaling = &cfg["rope_scaling"];
        let list = |k: &str| -> Result<Vec<f64>> {
            scaling[k]
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                .ok_or_else(|| Error::Corrupt(format!("rope_scaling (longrope) lacks {k:?}")))
        };
        let original = scaling["original_max_position_embeddings"]
            .as_u64()
            .or(cfg["original_max_position_embeddings"].as_u64())
            .ok_or_else(|| {
                Error::Corrupt("longrope needs original_max_position_embeddings".into())
            })? as usize;
        let attention_factor = scaling["attention_factor"]
            .as_f64()
            .unwrap_or_else(|| Self::default_attention_factor(context, original));
        Ok(LongRope {
            short: list("short_factor")?,
            long: list("long_factor")?,
            original_context: original,
            attention_factor,
        })
    }
}

/// The divisors of Llama 3.1's `llama3` scaling for each rotary frequency, as llama.cpp's converter
/// writes them into `rope_freqs.weight` (and transformers' `_compute_llama3_parameters`
/// computes): wavelengths shorter than `original / high_freq_factor` are kept, longer than
/// `original / low_freq_factor` divided by `factor`, and those between blended smoothly.
pub fn llama3_factors(scaling: &serde_json::Value, base: f64, dim: usize) -> Result<Vec<f64>> {
    let get = |k: &str| {
        scaling[k]
            .as_f64()
            .ok_or_else(|| Error::Corrupt(format!("rope_scaling (llama3) lacks {k:?}")))
    };
    let (factor, low, high) = (
        get("factor")?,
        get("low_freq_factor")?,
        get("high_freq_factor")?,
    );
    let old = get("original_max_position_embeddings")?;
    Ok((0..dim / 2)
        .map(|i| {
            let freq = 1.0 / base.powf((2 * i) as f64 / dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < old / high {
                1.0
            } else if wavelen > old / low {
                factor
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect())
}

/// `1 / (divisor_i · base^(2i / dim))` for each of the `dim / 2` rotary frequencies.
pub fn inv_freq(base: f64, dim: usize, divisors: &[f64]) -> Vec<f64> {
    (0..dim / 2)
        .map(|i| {
            let f = 1.0 / base.powf((2 * i) as f64 / dim as f64);
            f / divisors.get(i).copied().unwrap_or(1.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longrope_reads_phi3_configs_old_and_new() {
        // Phi-3-mini-128k: `su`, the original length at the top level, the factor implied.
        let cfg = serde_json::json!({
            "original_max_position_embeddings": 4096,
            "rope_scaling": {"type": "su", "short_factor": [1.0, 1.5], "long_factor": [2.0, 3.0]},
        });
        let r = LongRope::from_hf(&cfg, 131_072).unwrap();
        assert_eq!(
            (r.short.len(), r.long[1], r.original_context),
            (2, 3.0, 4096)
        );
        let want = (1.0 + (32.0f64).ln() / (4096.0f64).ln()).sqrt();
        assert!((r.attention_factor - want).abs() < 1e-12);
        // Newer configs: inside rope_scaling, with an explicit attention factor.
        let cfg = serde_json::json!({"rope_scaling": {"rope_type": "longrope", "short_factor": [1.0],
            "long_factor": [1.0], "original_max_position_embeddings": 8, "attention_factor": 1.25}});
        assert_eq!(LongRope::from_hf(&cfg, 16).unwrap().attention_factor, 1.25);
        assert_eq!(LongRope::default_attention_factor(8, 8), 1.0);
    }

    #[test]
    fn inv_freq_divides_each_frequency() {
        let f = inv_freq(10000.0, 4, &[1.0, 2.0]);
        assert_eq!(f[0], 1.0);
        assert!((f[1] - 0.01 / 2.0).abs() < 1e-15);
    }
}
