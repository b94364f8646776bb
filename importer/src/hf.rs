//! A Hugging Face checkpoint folder: `config.json`, `*.safetensors` (sharded too; F32, F16 or
//! BF16), `tokenizer.json`, `tokenizer_config.json` (or `chat_template.jinja`),
//! `generation_config.json`. Every shard is memory-mapped and its tensors renamed to GGUF's
//! names, so the graph reads them as it reads a GGUF file's.

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde_json::{Map, Value as Json};

use crate::arch::Arch;
use crate::blocks::Format;
use crate::error::{Error, Result};
use crate::gguf::TensorInfo;
use crate::source::Source;
use crate::tokenizer::TokenizerFiles;

pub struct HfFolder {
    pub dir: PathBuf,
    pub config: Json,
    maps: Vec<Mmap>,
    tensors: Vec<TensorInfo>,
}

pub(crate) fn read_json(path: &Path, required: bool) -> Result<Option<Json>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Corrupt(format!("{}: invalid JSON: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Refused(format!(
            "{} has no {}",
            path.parent().unwrap_or(path).display(),
            path.file_name().unwrap_or_default().to_string_lossy()
        ))),
        Err(e) => Err(Error::Io(path.display().to_string(), e)),
    }
}

/// transformers' name of a decoder tensor → GGUF's; `None` for what the graph does not read.
/// Gemma 2's `post_attention_layernorm` is the norm of the attention's output, where Llama's is
/// the one before the MLP (Gemma 2 calls that `pre_feedforward_layernorm`).
fn gguf_name(hf: &str, gemma: bool) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(n.to_owned());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = part.rsplit_once('.')?;
    let short = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" if gemma => "post_attention_norm",
        "post_attention_layernorm" => "ffn_norm",
        "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.qkv_proj" => "attn_qkv",
        "mlp.gate_up_proj" => "ffn_gate_up",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.{kind}"))
}

/// The tensors of one `.safetensors` file: an 8-byte header length, a JSON header of names,
/// dtypes, shapes and data offsets, then the data.
fn shard(
    map: &Mmap,
    (file, gemma): (usize, bool),
    path: &Path,
    out: &mut Vec<TensorInfo>,
) -> Result<()> {
    let bad = |why: String| Error::Corrupt(format!("{}: {why}", path.display()));
    let n = map
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| bad("shorter than a safetensors header".into()))?;
    let data = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&d| d <= map.len())
        .ok_or_else(|| bad("its header runs past the end (truncated?)".into()))?;
    let header: Map<String, Json> =
        serde_json::from_slice(&map[8..data]).map_err(|e| bad(format!("invalid header: {e}")))?;
    for (name, t) in header {
        if name == "__metadata__" {
            continue;
        }
        let Some(gguf) = gguf_name(&name, gemma) else {
            continue;
        };
        let format = match t["dtype"].as_str() {
            Some("F32") => Format::F32,
            Some("F16") => Format::F16,
            Some("BF16") => Format::Bf16,
            other => {
                return Err(Error::Unsupported(format!(
                    "tensor {name} has dtype {}; supported: F32, F16, BF16",
                    other.unwrap_or("?")
                )))
            }
        };
        let shape: Option<Vec<u64>> = t["shape"]
            .as_array()
            .and_then(|s| s.iter().map(Json::as_u64).collect());
        let offsets = t["data_offsets"]
            .as_array()
            .and_then(|o| match o.as_slice() {
                [b, e] => Some((b.as_u64()? as usize, e.as_u64()? as usize)),
                _ => None,
            });
        let (Some(mut dims), Some((begin, end))) = (shape, offsets) else {
            return Err(bad(format!("tensor {name}: no shape or data offsets")));
        };
        dims.reverse();
        let elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        let len = elements.and_then(|e| format.bytes_for(e));
        let start = data.checked_add(begin);
        let fits = |len: usize, start: usize| {
            end.checked_sub(begin) == Some(len)
                && start.checked_add(len).is_some_and(|e| e <= map.len())
        };
        match (len, start) {
            (Some(len), Some(start)) if fits(len, start) => out.push(TensorInfo {
                name: gguf,
                dims,
                format,
                file,
                start,
                len,
            }),
            _ => {
                return Err(bad(format!(
                    "tensor {name}: its data does not fit its shape or the file"
                )))
            }
        }
    }
    Ok(())
}

impl HfFolder {
    pub fn open(dir: &Path) -> Result<HfFolder> {
        let config = read_json(&dir.join("config.json"), true)?.expect("required");
        let gemma = config["model_type"] == "gemma2";
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::Io(dir.display().to_string(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(Error::Refused(format!(
                "{} has no *.safetensors weights",
                dir.display()
            )));
        }
        let (mut maps, mut tensors) = (Vec::new(), Vec::new());
        for (i, path) in paths.iter().enumerate() {
            let io = |e| Error::Io(path.display().to_string(), e);
            let file = File::open(path).map_err(io)?;
            // SAFETY: as for GGUF files (gguf.rs): only read, every slice bounds-checked.
            let map = unsafe { Mmap::map(&file) }.map_err(io)?;
            shard(&map, (i, gemma), path, &mut tensors)?;
            maps.push(map);
        }
        Ok(HfFolder {
            dir: dir.to_owned(),
            config,
            maps,
            tensors,
        })
    }

    /// `generation_config.json`, or nothing.
    pub fn generation(&self) -> Result<Map<String, Json>> {
        Ok(
            match read_json(&self.dir.join("generation_config.json"), false)? {
                Some(Json::Object(m)) => m,
                _ => Map::new(),
            },
        )
    }

    pub fn tokenizer(&self) -> Result<TokenizerFiles> {
        tokenizer_files(&self.dir)
    }

    /// Phi-3's fused projections as separate ones (`source::unfuse`).
    pub fn unfuse(&mut self, a: &Arch) -> Result<()> {
        crate::source::unfuse(&mut self.tensors, a)
    }
}

/// A folder's tokenizer files as they are; the chat template from `chat_template.jinja` if there
/// is one, else `tokenizer_config.json`'s.
pub fn tokenizer_files(dir: &Path) -> Result<TokenizerFiles> {
    let tokenizer_json = read_json(&dir.join("tokenizer.json"), true)?.expect("required");
    let mut config = match read_json(&dir.join("tokenizer_config.json"), false)? {
        Some(Json::Object(m)) => m,
        _ => Map::new(),
    };
    let mut chat_template = config
        .remove("chat_template")
        .and_then(|t| t.as_str().map(str::to_owned));
    config.remove("added_tokens_decoder");
    let jinja = dir.join("chat_template.jinja");
    if let Ok(t) = std::fs::read_to_string(&jinja) {
        chat_template = Some(t);
    }
    Ok(TokenizerFiles {
        tokenizer_json,
        config,
        chat_template,
        warnings: Vec::new(),
    })
}

impl Source for HfFolder {
    fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    fn data(&self, t: &TensorInfo) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.maps[t.file][t.start..t.start + t.len])
    }

    fn rotary_permuted(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-tensor safetensors image: `header` as its JSON, then `data` bytes.
    fn image(header: &str, data: usize) -> Mmap {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend(header.as_bytes());
        b.resize(b.len() + data, 0);
        let mut m = memmap2::MmapMut::map_anon(b.len()).unwrap();
        m.copy_from_slice(&b);
        m.make_read_only().unwrap()
    }

    fn read(header: &str, data: usize) -> Result<Vec<TensorInfo>> {
        let mut out = Vec::new();
        shard(
            &image(header, data),
            (0, false),
            Path::new("x.safetensors"),
            &mut out,
        )
        .map(|()| out)
    }

    #[test]
    fn a_shard_maps_its_tensors_in_place_under_gguf_names() {
        let h = r#"{"model.norm.weight":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]},"__metadata__":{}}"#;
        let t = read(h, 8).unwrap();
        assert_eq!(
            (t[0].name.as_str(), t[0].format, t[0].len),
            ("output_norm.weight", Format::Bf16, 8)
        );
        assert_eq!(t[0].start, 8 + h.len());
    }

    #[test]
    fn bad_shards_are_errors_not_panics() {
        let t = r#"{"model.norm.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        let err = |r: Result<Vec<TensorInfo>>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(read(t, 8)).contains("does not fit"));
        assert!(err(read(&t.replace("16]", "12]"), 16)).contains("does not fit"));
        assert!(err(read(&t.replace("F32", "I8"), 16)).contains("dtype I8"));
        assert!(err(read("{not json", 0)).contains("invalid header"));
        let mut cut = image(t, 16).to_vec();
        cut[0] = 0xff; // a header longer than the file
        let mut m = memmap2::MmapMut::map_anon(cut.len()).unwrap();
        m.copy_from_slice(&cut);
        let mut out = Vec::new();
        let e = shard(
            &m.make_read_only().unwrap(),
            (0, false),
            Path::new("x"),
            &mut out,
        );
        assert!(e.unwrap_err().to_string().contains("truncated"));
    }

    #[test]
    fn transformers_names_map_to_gguf_names() {
        let n = |s| gguf_name(s, false);
        assert_eq!(
            n("model.layers.3.self_attn.k_proj.bias").as_deref(),
            Some("blk.3.attn_k.bias")
        );
        assert_eq!(
            n("model.layers.0.mlp.down_proj.weight").as_deref(),
            Some("blk.0.ffn_down.weight")
        );
        assert_eq!(n("lm_head.weight").as_deref(), Some("output.weight"));
        assert_eq!(n("model.layers.0.self_attn.rotary_emb.inv_freq"), None);
    }
}
