//! `model.toml`: what a model folder declares about itself. Every path in it is resolved inside
//! the folder, so no manifest can make the daemon read a file outside the repository.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

pub const MANIFEST_FILE: &str = "model.toml";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] crate::toml_file::TomlFileError),
    #[error("{key} = {value:?} is not allowed: {reason}")]
    UnsafePath {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid manifest: {0}")]
    Invalid(String),
    #[error("model file {path}: {source}")]
    ModelFile {
        path: PathBuf,
        #[source]
        source: crate::onnx_files::OnnxFileError,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Embedding,
    Tensor,
    TextGeneration,
    /// Texts to labelled scores: an encoder whose output is one logit per label.
    Classification,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Embedding => "embedding",
            Kind::Tensor => "tensor",
            Kind::TextGeneration => "text-generation",
            Kind::Classification => "classification",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub kind: Kind,
    #[serde(default = "default_file")]
    pub file: String,
    pub tokenizer: Option<String>,
    /// Unload after this many idle seconds; the next request reloads it (overrides
    /// `engine.keep_alive_s`; 0 keeps it loaded).
    pub keep_alive_s: Option<u64>,
    #[serde(default)]
    pub embedding: EmbeddingOptions,
    #[serde(default)]
    pub execution: Execution,
    #[serde(default)]
    pub batching: Batching,
    #[serde(default)]
    pub generation: GenerationManifest,
    #[serde(default)]
    pub classification: ClassificationManifest,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassificationManifest {
    /// One name per output logit; from config.json `id2label` when absent.
    pub labels: Vec<String>,
}

/// Overrides of what a text-generation model folder says about itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationManifest {
    pub context_length: Option<usize>,
    pub eos_token_ids: Option<Vec<u32>>,
    pub bos_token_id: Option<u32>,
    /// A Jinja chat template file inside the model folder.
    pub chat_template: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_k: Option<u32>,
    pub top_p: Option<f64>,
    pub min_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    /// Sequences decoded together; more wait in the queue.
    pub max_sequences: Option<usize>,
    /// Prompt tokens run in one step (default 512): a longer prompt runs in pieces, with the
    /// other sequences' decode steps (and the watchdog's probe) in between.
    pub prefill_chunk: Option<usize>,
    /// GroupQueryAttention graphs: write the KV cache in place, in a buffer with room for every
    /// position a sequence may reach. Default: `search.past_present_share_buffer` in
    /// genai_config.json.
    pub share_buffer: Option<bool>,
    /// Cache positions all sequences (and the prefix cache) may hold together, counted in the
    /// model's memory from the start; a sequence that does not fit waits for room. Default:
    /// `max_sequences` × the context length.
    pub kv_cache_tokens: Option<usize>,
    /// Tokens a prompt-lookup draft may have, checked in the decode step of a sequence that
    /// decodes alone (default 8, at most 32; 0: no drafts). Drafts change no text.
    pub speculative_tokens: Option<usize>,
}

fn default_file() -> String {
    "model.onnx".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Mean,
    Cls,
    /// The graph already pools: its first output is `[batch, dim]`.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingOptions {
    pub pooling: Pooling,
    pub normalize: bool,
    /// Tokens kept per text; longer texts are truncated and the reply says so.
    pub max_length: usize,
    /// Graph output holding the hidden states; the first output when absent.
    pub output: Option<String>,
}

impl Default for EmbeddingOptions {
    fn default() -> Self {
        EmbeddingOptions {
            pooling: Pooling::Mean,
            normalize: true,
            max_length: 256,
            output: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Tensorrt,
    Cuda,
    Cpu,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Tensorrt => "tensorrt",
            Provider::Cuda => "cuda",
            Provider::Cpu => "cpu",
        }
    }

    pub fn is_gpu(self) -> bool {
        !matches!(self, Provider::Cpu)
    }

    /// ONNX Runtime's name for it, as `GetAvailableProviders` lists it.
    pub fn ort_name(self) -> &'static str {
        match self {
            Provider::Tensorrt => "TensorrtExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
            Provider::Cpu => "CPUExecutionProvider",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Execution {
    /// Tried in order; the first that registers is used.
    pub providers: Vec<Provider>,
    pub intra_threads: usize,
    /// Let ONNX Runtime's threads spin after a run. Off by default: on small devices the spinning
    /// threads take the cores the reply path and other models need.
    pub spin: bool,
    /// Back the weights with transparent huge pages on the CPU (`huge_pages.rs`): decoding reads
    /// them all every step, and fewer TLB misses make it faster.
    pub huge_pages: bool,
    /// Fail the load instead of falling back from a GPU provider to the CPU.
    pub require_gpu: bool,
    /// The longest one run that cannot be split (a tensor request) may take before the
    /// watchdog counts the worker as wedged. Embedding batches and prompts run in pieces and
    /// need no allowance.
    pub max_run_ms: u64,
    pub cuda: CudaOptions,
    pub tensorrt: TensorRtOptions,
}

impl Default for Execution {
    fn default() -> Self {
        Execution {
            providers: vec![Provider::Cpu],
            intra_threads: 0,
            spin: false,
            huge_pages: true,
            require_gpu: false,
            max_run_ms: 300_000,
            cuda: CudaOptions::default(),
            tensorrt: TensorRtOptions::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CudaOptions {
    pub device_id: i32,
    /// Bytes the CUDA arena may use; unlimited when absent.
    pub memory_limit: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TensorRtOptions {
    pub device_id: i32,
    pub fp16: bool,
    /// Bytes TensorRT may use as builder workspace.
    pub max_workspace: Option<usize>,
    /// 0–5; higher builds slower engines that run faster.
    pub builder_optimization_level: Option<u8>,
    /// The shape profile, as ONNX Runtime takes it: `input_ids:1x1,attention_mask:1x1`. With
    /// all three set the engine is built at load for the whole range, instead of at the first
    /// request and again for every shape outside what it was built for.
    pub profile_min_shapes: Option<String>,
    pub profile_opt_shapes: Option<String>,
    pub profile_max_shapes: Option<String>,
}

impl Default for TensorRtOptions {
    fn default() -> Self {
        TensorRtOptions {
            device_id: 0,
            fp16: true,
            max_workspace: None,
            builder_optimization_level: None,
            profile_min_shapes: None,
            profile_opt_shapes: None,
            profile_max_shapes: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Batching {
    /// Most requests (texts, for embeddings) in one run.
    pub max_batch: usize,
    /// How long the worker waits for a batch to fill once it has one request. Requests that
    /// arrive while the model runs form the next batch anyway, so 0 (no wait) is the default.
    pub max_wait_ms: u64,
    /// Requests that may wait; beyond this, callers get `Overloaded` at once.
    pub queue: usize,
    /// Default deadline of a request on this model; none when absent.
    pub timeout_ms: Option<u64>,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            max_batch: 32,
            max_wait_ms: 0,
            queue: 256,
            timeout_ms: None,
        }
    }
}

/// A manifest together with the absolute, checked paths it names.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub model_path: PathBuf,
    pub tokenizer_path: Option<PathBuf>,
}

impl GenerationManifest {
    /// The sampling choices the manifest makes (its keys sit directly under `[generation]`,
    /// where unknown keys are errors, so they are listed there rather than flattened).
    pub fn sampling(&self) -> crate::sampling::Sampling {
        crate::sampling::Sampling {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            seed: None,
        }
    }
}

impl Manifest {
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let m: Manifest = crate::toml_file::parse(text, path)?;
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |s: &str| Err(ManifestError::Invalid(s.to_owned()));
        if self.execution.providers.is_empty() {
            return invalid("execution.providers is empty");
        }
        if self.execution.require_gpu && !self.execution.providers.iter().any(|p| p.is_gpu()) {
            return invalid(
                "execution.require_gpu is set but execution.providers lists no GPU provider",
            );
        }
        if self.execution.providers[1..].contains(&Provider::Tensorrt) {
            return invalid("execution.providers: tensorrt, when listed, comes first");
        }
        let t = &self.execution.tensorrt;
        let profile = [
            &t.profile_min_shapes,
            &t.profile_opt_shapes,
            &t.profile_max_shapes,
        ];
        if profile.iter().any(|p| p.is_some()) && !profile.iter().all(|p| p.is_some()) {
            return invalid(
                "execution.tensorrt: set profile_min_shapes, profile_opt_shapes and \
                 profile_max_shapes together",
            );
        }
        if self.batching.max_batch == 0 {
            return invalid("batching.max_batch must be at least 1");
        }
        if self.batching.queue == 0 {
            return invalid("batching.queue must be at least 1");
        }
        if matches!(self.kind, Kind::Embedding | Kind::Classification) {
            if self.tokenizer.is_none() {
                return invalid("text models need tokenizer = \"tokenizer.json\"");
            }
            if self.embedding.max_length == 0 {
                return invalid("embedding.max_length must be at least 1");
            }
        }
        Ok(())
    }
}

impl ModelSpec {
    /// Reads `<dir>/model.toml` and resolves its paths inside `dir`.
    pub fn load(name: &str, dir: &Path) -> Result<ModelSpec, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let text = crate::toml_file::read(&path)?;
        let manifest = Manifest::parse(&text, &path)?;
        let model_path = resolve_inside(dir, "file", &manifest.file)?;
        let tokenizer_path = manifest
            .tokenizer
            .as_deref()
            .map(|t| resolve_inside(dir, "tokenizer", t))
            .transpose()?;
        Ok(ModelSpec {
            name: name.to_owned(),
            dir: dir.to_owned(),
            manifest,
            model_path,
            tokenizer_path,
        })
    }
}

impl ModelSpec {
    /// Reads the ONNX model file (`onnx_files.rs`) and checks every external-data file it names
    /// like the manifest's own paths: relative, no `..`, and inside the model folder after
    /// symlinks. Returns what the file holds.
    pub fn inspect_model(&self) -> Result<crate::onnx_files::ModelFile, ManifestError> {
        let model = crate::onnx_files::inspect(&self.model_path).map_err(|source| {
            ManifestError::ModelFile {
                path: self.model_path.clone(),
                source,
            }
        })?;
        let root = self
            .dir
            .canonicalize()
            .map_err(|source| ManifestError::Read {
                path: self.dir.clone(),
                source,
            })?;
        // Locations are relative to the model file, which may sit in a subfolder.
        let base = self
            .model_path
            .parent()
            .and_then(|p| p.strip_prefix(&root).ok())
            .ok_or_else(|| ManifestError::UnsafePath {
                key: "file",
                value: self.model_path.display().to_string(),
                reason: "it is no longer inside the model folder".into(),
            })?;
        for loc in &model.external_data {
            if Path::new(loc).is_absolute() {
                return Err(ManifestError::UnsafePath {
                    key: "external data",
                    value: loc.clone(),
                    reason: "paths must be relative to the model file".into(),
                });
            }
            let rel = base.join(loc);
            resolve_inside(&self.dir, "external data", &rel.to_string_lossy())?;
        }
        Ok(model)
    }
}

/// Resolves `rel` inside `dir`: no absolute path, no `..`, and no symlink that leads out.
pub fn resolve_inside(dir: &Path, key: &'static str, rel: &str) -> Result<PathBuf, ManifestError> {
    let unsafe_path = |reason: String| ManifestError::UnsafePath {
        key,
        value: rel.to_owned(),
        reason,
    };
    let p = Path::new(rel);
    if rel.is_empty() || p.is_absolute() {
        return Err(unsafe_path(
            "paths must be relative to the model folder".into(),
        ));
    }
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(unsafe_path("paths may not contain `..`".into()));
    }
    let root = dir
        .canonicalize()
        .map_err(|e| unsafe_path(format!("model folder {}: {e}", dir.display())))?;
    let full = root
        .join(p)
        .canonicalize()
        .map_err(|e| unsafe_path(format!("{}: {e}", dir.join(p).display())))?;
    if !full.starts_with(&root) {
        return Err(unsafe_path(format!(
            "it resolves to {}, outside the model folder",
            full.display()
        )));
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(s, Path::new("model.toml"))
    }

    #[test]
    fn full_example_parses() {
        let m = parse(
            r#"
kind = "embedding"
file = "model.onnx"
tokenizer = "tokenizer.json"
[embedding]
pooling = "mean"
normalize = true
max_length = 256
[execution]
providers = ["tensorrt", "cuda", "cpu"]
intra_threads = 2
require_gpu = false
[execution.cuda]
device_id = 0
memory_limit = 1000000
[batching]
max_batch = 32
max_wait_ms = 2
queue = 256
"#,
        )
        .unwrap();
        assert_eq!(m.execution.providers.len(), 3);
        assert_eq!(m.embedding.pooling, Pooling::Mean);
    }

    #[test]
    fn unknown_key_and_kind_are_rejected() {
        let e = parse("kind = \"tensor\"\nfiel = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fiel") && e.contains("line 2"), "{e}");
        assert!(parse("kind = \"llm\"\n").is_err());
    }

    #[test]
    fn embedding_needs_a_tokenizer() {
        assert!(parse("kind = \"embedding\"\n")
            .unwrap_err()
            .to_string()
            .contains("tokenizer"));
    }

    #[test]
    fn paths_stay_inside_the_folder() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("m");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("model.onnx"), b"x").unwrap();
        std::fs::write(root.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret"), dir.join("link")).unwrap();

        assert!(resolve_inside(&dir, "file", "model.onnx").is_ok());
        assert!(resolve_inside(&dir, "file", "./model.onnx").is_ok());
        for bad in ["../secret", "/etc/passwd", "link", "a/../../secret", ""] {
            let e = resolve_inside(&dir, "file", bad).unwrap_err();
            assert!(matches!(e, ManifestError::UnsafePath { .. }), "{bad}: {e}");
        }
    }
}
