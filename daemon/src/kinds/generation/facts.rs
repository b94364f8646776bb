//! What a text-generation model folder says about itself: context length, EOS/BOS ids, the chat
//! template and sampling defaults, from genai_config.json, generation_config.json,
//! tokenizer_config.json, chat_template.jinja and config.json. The manifest overrides them all.

use std::path::Path;

use serde_json::Value;

use crate::error::LoadError;
use crate::manifest::{resolve_inside, GenerationManifest};
use crate::work::job::Sampling;

#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub context_length: usize,
    /// The context length is the KV cache's room (`generation.kv_cache_tokens`), smaller than
    /// the model's own: a request over it is told that.
    pub context_is_kv_room: bool,
    pub eos: Vec<u32>,
    pub bos: Option<u32>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub chat_template: Option<String>,
    pub max_tokens: u32,
    /// The model's sampling defaults (the manifest's, else generation_config.json's); a
    /// request's options go over them.
    pub sampling: Sampling,
}

fn read_json(dir: &Path, name: &str) -> Result<Value, LoadError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| LoadError::ModelFiles(format!("{}: invalid JSON: {e}", path.display()))),
        Err(_) => Ok(Value::Null),
    }
}

fn ids(v: &Value) -> Option<Vec<u32>> {
    match v {
        Value::Number(n) => n.as_u64().map(|x| vec![x as u32]),
        Value::Array(a) => a.iter().map(|x| x.as_u64().map(|x| x as u32)).collect(),
        _ => None,
    }
}

/// A token in tokenizer_config.json is a string or `{"content": "..."}`.
fn token_text(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::to_owned)
        .or_else(|| v["content"].as_str().map(str::to_owned))
}

pub fn read(dir: &Path, m: &GenerationManifest) -> Result<Facts, LoadError> {
    let genai = read_json(dir, "genai_config.json")?;
    let gen = read_json(dir, "generation_config.json")?;
    let tok = read_json(dir, "tokenizer_config.json")?;
    let cfg = read_json(dir, "config.json")?;

    let template = match &m.chat_template {
        Some(file) => {
            let path = resolve_inside(dir, "generation.chat_template", file)?;
            Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| LoadError::ModelFiles(format!("{}: {e}", path.display())))?,
            )
        }
        None => std::fs::read_to_string(dir.join("chat_template.jinja"))
            .ok()
            .or_else(|| tok["chat_template"].as_str().map(str::to_owned)),
    };
    let context_length = m
        .context_length
        .or_else(|| {
            genai["model"]["context_length"]
                .as_u64()
                .map(|x| x as usize)
        })
        .or_else(|| cfg["max_position_embeddings"].as_u64().map(|x| x as usize))
        .or_else(|| tok["model_max_length"].as_u64().map(|x| x as usize))
        .ok_or_else(|| {
            LoadError::ModelFiles(
                "no context length: set [generation] context_length in model.toml".into(),
            )
        })?;
    let eos = m
        .eos_token_ids
        .clone()
        .or_else(|| ids(&gen["eos_token_id"]))
        .or_else(|| ids(&genai["model"]["eos_token_id"]))
        .or_else(|| ids(&cfg["eos_token_id"]))
        .unwrap_or_default();
    if eos.is_empty() {
        return Err(LoadError::ModelFiles(
            "no EOS token id: set [generation] eos_token_ids in model.toml".into(),
        ));
    }
    // Sampling defaults come from generation_config.json only: genai_config.json's `search`
    // section holds onnxruntime-genai's own defaults, not the model's.
    let num = |k: &str| gen[k].as_f64();
    // As in transformers, sampling is off unless the model's generation config turns it on.
    let sampling = gen["do_sample"] == Value::Bool(true);
    let files = Sampling {
        temperature: Some(if sampling {
            num("temperature").unwrap_or(1.0)
        } else {
            0.0
        }),
        top_k: num("top_k").map(|x| x as u32),
        top_p: num("top_p"),
        min_p: None,
        repetition_penalty: num("repetition_penalty"),
        seed: None,
    };
    Ok(Facts {
        context_length,
        context_is_kv_room: false,
        bos: m
            .bos_token_id
            .or_else(|| ids(&gen["bos_token_id"]).and_then(|v| v.first().copied())),
        bos_token: token_text(&tok["bos_token"]),
        eos_token: token_text(&tok["eos_token"]),
        chat_template: template,
        max_tokens: m
            .max_tokens
            .or_else(|| gen["max_new_tokens"].as_u64().map(|x| x as u32))
            .unwrap_or(512),
        sampling: m.sampling().or(files),
        eos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_then_manifest_overrides() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("genai_config.json"), r#"{"model":{"context_length":8192,"eos_token_id":2},"search":{"do_sample":false,"top_k":1}}"#).unwrap();
        std::fs::write(
            d.path().join("generation_config.json"),
            r#"{"eos_token_id":[2,0],"bos_token_id":1,"temperature":0.6,"do_sample":false}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("tokenizer_config.json"),
            r#"{"chat_template":"{{x}}","bos_token":{"content":"<s>"},"eos_token":"</s>"}"#,
        )
        .unwrap();
        let f = read(d.path(), &GenerationManifest::default()).unwrap();
        assert_eq!(
            (f.context_length, f.eos.clone(), f.bos),
            (8192, vec![2, 0], Some(1))
        );
        assert_eq!(f.chat_template.as_deref(), Some("{{x}}"));
        assert_eq!(
            (f.bos_token.as_deref(), f.eos_token.as_deref()),
            (Some("<s>"), Some("</s>"))
        );
        assert_eq!(
            f.sampling.temperature,
            Some(0.0),
            "do_sample = false means greedy"
        );
        std::fs::write(
            d.path().join("generation_config.json"),
            r#"{"eos_token_id":2,"do_sample":true,"temperature":0.6}"#,
        )
        .unwrap();
        assert_eq!(
            read(d.path(), &GenerationManifest::default())
                .unwrap()
                .sampling
                .temperature,
            Some(0.6)
        );
        assert_eq!(
            f.sampling.top_k, None,
            "genai's search defaults are not the model's"
        );
        let m = GenerationManifest {
            context_length: Some(100),
            eos_token_ids: Some(vec![7]),
            temperature: Some(0.9),
            ..Default::default()
        };
        let f = read(d.path(), &m).unwrap();
        assert_eq!(
            (f.context_length, f.eos, f.sampling.temperature),
            (100, vec![7], Some(0.9))
        );
    }

    #[test]
    fn missing_eos_is_a_clear_load_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("config.json"),
            r#"{"max_position_embeddings":64}"#,
        )
        .unwrap();
        let e = read(d.path(), &GenerationManifest::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("eos_token_ids"), "{e}");
    }
}
