//! A Hugging Face tokenizer.json rebuilt from GGUF `tokenizer.ggml.*` metadata, so the result
//! tokenizes as the model's own tokenizer.json does (tested against its ids on llama.cpp's
//! vocabulary files):
//!
//! - `gpt2` (byte-level BPE): the text split the model's tokenizer.json uses, named by
//!   `tokenizer.ggml.pre` (`pretokenizer.rs`); an unknown name falls back to GPT-2's split with
//!   a warning;
//! - `llama` (SentencePiece BPE, as in Llama 2, Mistral, Phi-3 and Gemma): GGUFLlamaConverter,
//!   with merges rebuilt from the piece scores, byte fallback and the `▁` normalizer (no dummy
//!   prefix where `tokenizer.ggml.add_space_prefix` is false, as in Gemma).

use std::collections::HashMap;

use serde_json::{json, Map, Value as Json};

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};
use crate::pretokenizer::{byte_level_parts, ByteLevelParts, KNOWN};

const CONTROL: u64 = 3;
const USER_DEFINED: u64 = 4;
const SPACE: &str = "\u{2581}";

/// tokenizer.json, and the tokenizer_config.json entries that go with it.
pub struct TokenizerFiles {
    pub tokenizer_json: Json,
    pub config: Map<String, Json>,
    pub chat_template: Option<String>,
    /// What the import output should tell the user (an unknown pre-tokenizer name).
    pub warnings: Vec<String>,
}

fn strings(g: &Gguf, key: &str) -> Vec<String> {
    match g.metadata.get(key) {
        Some(Value::Array(v)) => v
            .iter()
            .map(|x| x.as_str().unwrap_or("").to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

fn bpe(tokens: &[String], merges: Vec<[String; 2]>) -> Map<String, Json> {
    let vocab: Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let mut m = Map::new();
    for (k, v) in [
        ("type", json!("BPE")),
        ("dropout", Json::Null),
        ("unk_token", Json::Null),
        ("continuing_subword_prefix", json!("")),
        ("end_of_word_suffix", json!("")),
        ("fuse_unk", json!(false)),
        ("byte_fallback", json!(false)),
        ("ignore_merges", json!(false)),
        ("vocab", Json::Object(vocab)),
        ("merges", json!(merges)),
    ] {
        m.insert(k.into(), v);
    }
    m
}

fn split_merges(g: &Gguf) -> Option<Vec<[String; 2]>> {
    let m = strings(g, "tokenizer.ggml.merges");
    (!m.is_empty()).then(|| {
        m.iter()
            .map(|s| {
                let (a, b) = s.split_once(' ').unwrap_or((s, ""));
                [a.to_owned(), b.to_owned()]
            })
            .collect()
    })
}

/// (normalizer, pre_tokenizer, decoder, model)
type Parts = (Json, Json, Json, Map<String, Json>);

/// Byte-level BPE split as `pre` names it; GPT-2's split, with a warning, for a name the table
/// does not know (llama.cpp falls back the same way, with its own warning).
fn gpt2(g: &Gguf, tokens: &[String], pre: Option<&str>, warnings: &mut Vec<String>) -> Parts {
    let merges = split_merges(g).unwrap_or_default();
    let Some(name) = pre else {
        // Written by a converter from before llama.cpp named the splits; it warns too.
        warnings.push("the GGUF names no pre-tokenizer (tokenizer.ggml.pre): its text is split as GPT-2's is, so token ids may differ from the model's own tokenizer. Import the Hugging Face checkpoint folder, or a GGUF from a newer converter, to be sure.".into());
        return gpt2_parts(
            tokens,
            merges,
            byte_level_parts("default").expect("in the table"),
        );
    };
    let parts = byte_level_parts(name).unwrap_or_else(|| {
        warnings.push(format!(
            "the GGUF's pre-tokenizer {name:?} is not known to this importer (known: {}); its text is split as GPT-2's is, so token ids may differ from the model's own tokenizer. Import the Hugging Face checkpoint folder, which carries tokenizer.json, to be sure.",
            KNOWN.join(", ")
        ));
        byte_level_parts("gpt-2").expect("gpt-2 is in the table")
    });
    gpt2_parts(tokens, merges, parts)
}

fn gpt2_parts(tokens: &[String], merges: Vec<[String; 2]>, parts: ByteLevelParts) -> Parts {
    let ByteLevelParts {
        normalizer,
        pre_tokenizer,
        ignore_merges,
    } = parts;
    let mut model = bpe(tokens, merges);
    model.insert("ignore_merges".into(), json!(ignore_merges));
    let decoder = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
    (normalizer, pre_tokenizer, decoder, model)
}

/// BPE merges equivalent to SentencePiece's rule (merge the adjacent pair whose joined piece
/// scores highest): every split of every piece into two known pieces, ordered by the joined
/// piece's score (transformers' GGUFTokenizerSkeleton order).
pub fn spm_merges(tokens: &[String], scores: &[f64]) -> Vec<[String; 2]> {
    let score: HashMap<&str, f64> = tokens
        .iter()
        .zip(scores)
        .map(|(t, &s)| (t.as_str(), s))
        .collect();
    // Each piece once, in the order it first appears (as a Python dict of them iterates).
    let mut merges: Vec<(String, String, f64)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for piece in tokens {
        if !seen.insert(piece.as_str()) {
            continue;
        }
        let piece_score = score[piece.as_str()];
        let chars: Vec<(usize, char)> = piece.char_indices().collect();
        let mut local: Vec<(String, String, f64)> = (1..chars.len())
            .map(|k| chars[k].0)
            .filter_map(|at| {
                let (l, r) = piece.split_at(at);
                (score.contains_key(l) && score.contains_key(r))
                    .then(|| (l.to_owned(), r.to_owned(), piece_score))
            })
            .collect();
        // Stable sorts, as Python's, by (left score, right score) descending.
        local.sort_by(|a, b| {
            (score[b.0.as_str()], score[b.1.as_str()])
                .partial_cmp(&(score[a.0.as_str()], score[a.1.as_str()]))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        merges.extend(local);
    }
    merges.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap_or(std::cmp::Ordering::Equal));
    merges.into_iter().map(|(l, r, _)| [l, r]).collect()
}

fn sentencepiece(g: &Gguf, tokens: &[String]) -> Result<Parts> {
    let scores: Vec<f64> = match g.metadata.get("tokenizer.ggml.scores") {
        Some(Value::Array(v)) => v.iter().filter_map(Value::as_f64).collect(),
        _ => Vec::new(),
    };
    if scores.len() != tokens.len() {
        return Err(Error::Unsupported(
            "GGUF SentencePiece vocabulary has no tokenizer.ggml.scores to rebuild its merges from"
                .into(),
        ));
    }
    let merges = split_merges(g).unwrap_or_else(|| spm_merges(tokens, &scores));
    let mut model = bpe(tokens, merges);
    let unk = g
        .metadata
        .get("tokenizer.ggml.unknown_token_id")
        .and_then(Value::as_u64);
    model.insert(
        "unk_token".into(),
        unk.and_then(|u| tokens.get(u as usize))
            .map_or(Json::Null, |t| json!(t)),
    );
    model.insert("fuse_unk".into(), json!(true));
    model.insert("byte_fallback".into(), json!(true));
    let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": SPACE});
    let (normalizer, mut decoders) = match g.metadata.get("tokenizer.ggml.add_space_prefix") {
        // Gemma's: spaces escaped, no dummy prefix to strip again.
        Some(Value::Bool(false)) => (replace, Vec::new()),
        _ => (
            json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SPACE}, replace]}),
            vec![json!({"type": "Strip", "content": " ", "start": 1, "stop": 0})],
        ),
    };
    decoders.splice(
        0..0,
        [
            json!({"type": "ByteFallback"}),
            json!({"type": "Fuse"}),
            json!({"type": "Replace", "pattern": {"String": SPACE}, "content": " "}),
        ],
    );
    Ok((
        normalizer,
        Json::Null,
        json!({"type": "Sequence", "decoders": decoders}),
        model,
    ))
}

pub fn from_gguf(g: &Gguf) -> Result<TokenizerFiles> {
    let kind = g
        .metadata
        .get("tokenizer.ggml.model")
        .and_then(Value::as_str)
        .unwrap_or("");
    let tokens = strings(g, "tokenizer.ggml.tokens");
    let pre = g.metadata.get("tokenizer.ggml.pre").and_then(Value::as_str);
    let mut warnings = Vec::new();
    let ((normalizer, pre, decoder, model), add_bos_default) = match kind {
        "gpt2" => (gpt2(g, &tokens, pre, &mut warnings), false),
        "llama" => (sentencepiece(g, &tokens)?, true),
        other => {
            return Err(Error::Unsupported(format!(
                "GGUF tokenizer model {other:?} (byte-level BPE 'gpt2' and SentencePiece 'llama' are supported); import the Hugging Face checkpoint folder instead, which carries tokenizer.json"
            )))
        }
    };
    let types: Vec<u64> = match g.metadata.get("tokenizer.ggml.token_type") {
        Some(Value::Array(v)) => v.iter().map(|x| x.as_u64().unwrap_or(1)).collect(),
        _ => vec![1; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(Error::Corrupt(format!(
            "{} token types for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    let added: Vec<Json> = types
        .iter()
        .enumerate()
        .filter(|(_, &t)| t == CONTROL || t == USER_DEFINED)
        .map(|(i, &t)| {
            json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": t == CONTROL})
        })
        .collect();
    let id = |key: &str| {
        g.metadata
            .get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
    };
    let name = |key: &str| {
        id(key)
            .and_then(|i| tokens.get(i))
            .map_or(Json::Null, |t| json!(t))
    };
    let bos_id = id("tokenizer.ggml.bos_token_id");
    let add_bos = match g.metadata.get("tokenizer.ggml.add_bos_token") {
        Some(Value::Bool(b)) => *b,
        _ => add_bos_default,
    };
    let a = json!({"Sequence": {"id": "A", "type_id": 0}});
    let b = json!({"Sequence": {"id": "B", "type_id": 1}});
    let (mut single, mut pair, mut special) =
        (vec![a.clone()], vec![a.clone(), b.clone()], Map::new());
    if let (true, Some(bos_id)) = (add_bos, bos_id) {
        let bos = tokens.get(bos_id).cloned().unwrap_or_default();
        let st = |type_id| json!({"SpecialToken": {"id": bos, "type_id": type_id}});
        single = vec![st(0), a.clone()];
        pair = vec![st(0), a, st(1), b];
        special.insert(
            bos.clone(),
            json!({"id": bos, "ids": [bos_id], "tokens": [bos]}),
        );
    }
    let tokenizer_json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre,
        "post_processor": {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special},
        "decoder": decoder,
        "model": model,
    });
    let mut config = Map::new();
    config.insert("bos_token".into(), name("tokenizer.ggml.bos_token_id"));
    config.insert("eos_token".into(), name("tokenizer.ggml.eos_token_id"));
    config.insert("pad_token".into(), name("tokenizer.ggml.padding_token_id"));
    config.insert("unk_token".into(), name("tokenizer.ggml.unknown_token_id"));
    config.insert("add_bos_token".into(), json!(add_bos));
    Ok(TokenizerFiles {
        tokenizer_json,
        config,
        chat_template: g
            .metadata
            .get("tokenizer.chat_template")
            .and_then(Value::as_str)
            .map(str::to_owned),
        warnings,
    })
}
