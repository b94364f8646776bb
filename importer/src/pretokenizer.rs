//! How byte-level BPE vocabularies split text before merging, by llama.cpp's
//! `tokenizer.ggml.pre` name: each entry is what the model's own tokenizer.json holds
//! (normalizer, pre-tokenizer, `ignore_merges`), so a GGUF's token ids equal the model's. The
//! patterns are the tokenizer.json ones, which llama.cpp's llama-vocab.cpp quotes beside its
//! adapted copies. Tested on llama.cpp's vocabulary files against the ids the models' own
//! tokenizers gave (models/importer/tests/test_gguf_tokenizers.py).

use serde_json::{json, Value as Json};

const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
// The characters are written as escapes: an editor's Unicode normalization would change
// them (ώ U+1F7D becomes U+03CE), and with them the split.
const DEEPSEEK_LLM: [&str; 5] = [
    "[\r\n]",
    "\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+",
    "\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+",
    "\\s+$",
    "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
];
const DEEPSEEK_CODER: [&str; 4] = [
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
];

/// The names llama.cpp writes for each split below.
pub const KNOWN: &[&str] = &[
    "default",
    "gpt-2",
    "phi-2",
    "mpt",
    "olmo",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "qwen2",
    "deepseek-r1-qwen",
    "qwen35",
    "deepseek-llm",
    "deepseek-coder",
    "starcoder",
    "refact",
    "smollm",
];

/// A tokenizer.json's byte-level parts for one `pre` name.
pub struct ByteLevelParts {
    pub normalizer: Json,
    pub pre_tokenizer: Json,
    pub ignore_merges: bool,
}

fn byte_level(use_regex: bool) -> Json {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn split(pattern: &str) -> Json {
    json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false})
}

fn digits(individual: bool) -> Json {
    json!({"type": "Digits", "individual_digits": individual})
}

fn sequence(mut steps: Vec<Json>, last: Json) -> Json {
    steps.push(last);
    json!({"type": "Sequence", "pretokenizers": steps})
}

fn splits_then_digits(patterns: &[&str], individual: bool) -> Json {
    let steps = patterns
        .iter()
        .map(|p| split(p))
        .chain([digits(individual)]);
    sequence(steps.collect(), byte_level(false))
}

/// The parts for `pre`, or `None` for a name this table does not know (the caller falls back
/// to GPT-2's split and says so).
pub fn byte_level_parts(pre: &str) -> Option<ByteLevelParts> {
    let plain = |pre_tokenizer| ByteLevelParts {
        normalizer: Json::Null,
        pre_tokenizer,
        ignore_merges: false,
    };
    let nfc = |pattern| ByteLevelParts {
        normalizer: json!({"type": "NFC"}),
        pre_tokenizer: sequence(vec![split(pattern)], byte_level(false)),
        ignore_merges: false,
    };
    Some(match pre {
        "default" | "gpt-2" | "phi-2" | "mpt" | "olmo" => plain(byte_level(true)),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => ByteLevelParts {
            ignore_merges: true,
            ..plain(sequence(vec![split(LLAMA3)], byte_level(false)))
        },
        "qwen2" | "deepseek-r1-qwen" => nfc(QWEN2),
        // Qwen3.5's tokenizer.json has no normalizer, unlike Qwen2's.
        "qwen35" => plain(sequence(vec![split(QWEN35)], byte_level(false))),
        // Their tokenizer.json split numbers last: in runs (llm) or one digit each (coder).
        "deepseek-llm" => plain(splits_then_digits(&DEEPSEEK_LLM, false)),
        "deepseek-coder" => plain(splits_then_digits(&DEEPSEEK_CODER, true)),
        "starcoder" | "refact" | "smollm" => plain(sequence(vec![digits(true)], byte_level(true))),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_has_parts_and_others_none() {
        for name in KNOWN {
            assert!(byte_level_parts(name).is_some(), "{name}");
        }
        assert!(byte_level_parts("falcon").is_none());
        assert!(byte_level_parts("").is_none());
    }

    #[test]
    fn llama3_ignores_merges_and_qwen2_normalizes() {
        assert!(byte_level_parts("llama-bpe").unwrap().ignore_merges);
        assert_eq!(
            byte_level_parts("deepseek-r1-qwen").unwrap().normalizer,
            json!({"type": "NFC"})
        );
        assert!(!byte_level_parts("smollm").unwrap().ignore_merges);
    }
}
