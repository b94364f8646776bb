//! `inferctl import`: the native importer (the `inferd-import` crate, no Python). A GGUF file
//! keeps its own quantization (transcoded) or becomes fp32, fp16 or int4; a Hugging Face
//! checkpoint folder, or random weights for an architecture config, becomes fp32, fp16 or int4;
//! in the optimum or the genai layout. A progress bar per stage on a terminal, lines otherwise.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use inferd_import::folder::{import_gguf, import_hf, import_random, Options};
use inferd_import::progress::Step;
use inferd_import::{Layout, Precision};

use crate::progress::Bars;

/// Where an import goes and what it becomes (shared by `import` and `pull`).
#[derive(Args)]
pub struct Target {
    /// Model name in the repository
    #[arg(long)]
    pub name: Option<String>,
    /// native (a GGUF file's own quantization; the default for GGUF files), fp32, fp16 or
    /// int4 (the default for checkpoint folders and --random)
    #[arg(long)]
    precision: Option<String>,
    /// optimum (the default) or genai (onnxruntime-genai's model builder layout)
    #[arg(long)]
    layout: Option<String>,
    /// Model repository [default: $INFERD_MODELS, else $INFERD_CACHE/models, else
    /// ~/.cache/inferd/models]
    #[arg(long)]
    models: Option<PathBuf>,
    /// Replace an existing model folder
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct ImportArgs {
    /// A .gguf file or a Hugging Face checkpoint folder
    source: Option<PathBuf>,
    #[command(flatten)]
    target: Target,
    /// Build deterministic random weights from an architecture config.json
    #[arg(
        long,
        value_name = "CONFIG",
        conflicts_with = "source",
        requires = "tokenizer"
    )]
    random: Option<PathBuf>,
    /// With --random: where the tokenizer comes from (a .gguf file or a checkpoint folder)
    #[arg(long, value_name = "SOURCE")]
    tokenizer: Option<PathBuf>,
    /// With --random: the seed
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// What is imported.
pub enum Input<'a> {
    Gguf(&'a Path),
    Folder(&'a Path),
    Random(&'a Path, &'a Path),
}

/// Runs the import; returns its exit status code (2: the import failed, and said why).
pub fn run(a: ImportArgs) -> Result<i32, String> {
    let input =
        match (&a.source, &a.random, &a.tokenizer) {
            (Some(p), _, _) if !p.exists() => {
                eprintln!("inferd-import: no such file or folder: {}", p.display());
                return Ok(2);
            }
            (Some(p), _, _) if p.is_dir() => Input::Folder(p),
            (Some(p), _, _) => Input::Gguf(p),
            (None, Some(config), Some(tok)) => Input::Random(config, tok),
            _ => return Err(
                "give a .gguf file or a checkpoint folder, or --random CONFIG --tokenizer SOURCE"
                    .into(),
            ),
        };
    let name = a.target.name.clone().ok_or("--name is required")?;
    run_on(input, &a.target, &name, a.seed)
}

/// The user's cache folder: $INFERD_CACHE, else ~/.cache/inferd.
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("INFERD_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/inferd")))
}

/// Imports `input` as `name` as `t` asks; the exit status code.
pub fn run_on(input: Input<'_>, t: &Target, name: &str, seed: u64) -> Result<i32, String> {
    let models = t
        .models
        .clone()
        .or_else(|| std::env::var_os("INFERD_MODELS").map(PathBuf::from))
        .or_else(|| cache_dir().map(|c| c.join("models")))
        .ok_or("no model repository: pass --models DIR or set INFERD_MODELS")?;
    let precision = match (&input, t.precision.as_deref()) {
        (Input::Gguf(_), None | Some("native")) => Precision::Native,
        (_, None | Some("int4")) => Precision::Int4,
        (_, Some("fp32")) => Precision::Fp32,
        (_, Some("fp16")) => Precision::Fp16,
        (_, Some("native")) => return Err("--precision native is for GGUF files, which carry their own quantization; use fp32, fp16 or int4".into()),
        (_, Some(p)) => return Err(format!("--precision {p}: use native, fp32, fp16 or int4")),
    };
    let layout = match t.layout.as_deref() {
        None | Some("optimum") => Layout::Optimum,
        Some("genai") => Layout::Genai,
        Some(l) => return Err(format!("--layout {l}: use optimum or genai")),
    };
    let o = Options {
        models,
        name: name.to_owned(),
        force: t.force,
        threads: 2,
        precision,
        layout,
    };
    Ok(import(input, &o, seed))
}

fn import(input: Input<'_>, o: &Options, seed: u64) -> i32 {
    let started = Instant::now();
    let mut bars = Bars::new();
    let mut report = |s: Step<'_>| bars.show(s);
    let (done, what) = match input {
        Input::Gguf(p) => (import_gguf(p, o, &mut report), p.display().to_string()),
        Input::Folder(p) => (import_hf(p, o, &mut report), p.display().to_string()),
        Input::Random(config, tok) => (
            import_random(config, tok, seed, o, &mut report),
            format!("random weights for {} (seed {seed})", config.display()),
        ),
    };
    match done {
        Ok(done) => {
            eprintln!(
                "imported {what} as {} ({}, {}, {} layers) in {:.1} s",
                done.dir.display(),
                o.precision.name(),
                done.arch.family,
                done.arch.num_layers,
                started.elapsed().as_secs_f64()
            );
            for w in &done.warnings {
                eprintln!("warning: {w}");
            }
            if o.layout == Layout::Genai && o.precision != Precision::Fp16 {
                // GroupQueryAttention has CUDA kernels for fp16 and bf16 only (docs/models.md).
                eprintln!("note: on CUDA, ONNX Runtime would run GroupQueryAttention (float32) on the CPU; for the GPU, import with --precision fp16 or --layout optimum");
            }
            0
        }
        Err(e) => {
            eprintln!("inferd-import: {e}");
            2
        }
    }
}
