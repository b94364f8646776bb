//! `inferctl import`: GGUF files and Hugging Face checkpoint folders are imported natively (the
//! `inferd-import` crate, no Python): a GGUF's own quantization transcoded, or fp32, fp16 or
//! int4, in either layout. Random weights (for tests and benchmarks) run the Python importer in
//! models/importer, in the environment `make` prepares, its progress and errors passed through.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use inferd_import::folder::{import_gguf, import_hf, Options};
use inferd_import::progress::Step;
use inferd_import::{Layout, Precision};

use crate::progress::Bars;

use clap::Args;

#[derive(Args)]
pub struct ImportArgs {
    /// A .gguf file or a Hugging Face checkpoint folder
    source: Option<String>,
    /// Model name in the repository
    #[arg(long)]
    name: String,
    /// native (a GGUF file's own quantization; the default for GGUF files), fp32, fp16 or
    /// int4 (the default for Hugging Face folders)
    #[arg(long)]
    precision: Option<String>,
    /// optimum (the default) or genai (onnxruntime-genai's model builder layout)
    #[arg(long)]
    layout: Option<String>,
    /// Model repository [default: $INFERD_MODELS, else ~/.cache/inferd/models]
    #[arg(long)]
    models: Option<PathBuf>,
    /// Replace an existing model folder
    #[arg(long)]
    force: bool,
    /// Build deterministic random weights from an architecture config.json
    #[arg(long, value_name = "CONFIG")]
    random: Option<String>,
    /// With --random: where the tokenizer comes from
    #[arg(long, value_name = "SOURCE")]
    tokenizer: Option<String>,
    /// With --random: the seed
    #[arg(long)]
    seed: Option<u64>,
}

fn cache() -> PathBuf {
    std::env::var_os("INFERD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/inferd"))
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The importer's Python: `$INFERD_PYTHON`, else the venv `make` prepared in the cache.
fn python() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("INFERD_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let p = cache().join("venv/bin/python");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "the importer's Python environment {} is missing: run `make models` in the inferd source tree, or set INFERD_PYTHON to a python with inferd-import installed",
            p.display()
        ))
    }
}

/// Runs the importer; returns its exit status code (2: the import failed, and said why).
pub fn run(a: ImportArgs) -> Result<i32, String> {
    let models = a
        .models
        .clone()
        .or_else(|| std::env::var_os("INFERD_MODELS").map(PathBuf::from))
        .unwrap_or_else(|| cache().join("models"));
    let path = a.source.as_deref().map(Path::new);
    let precision = match (path.is_some_and(Path::is_file), a.precision.as_deref()) {
        (true, None | Some("native")) => Some(Precision::Native),
        (false, Some("native")) => return Err("--precision native is for GGUF files, which carry their own quantization; use fp32, fp16 or int4".into()),
        (false, None) | (_, Some("int4")) => Some(Precision::Int4),
        (_, Some("fp32")) => Some(Precision::Fp32),
        (_, Some("fp16")) => Some(Precision::Fp16),
        _ => None,
    };
    let layout = match a.layout.as_deref() {
        None | Some("optimum") => Layout::Optimum,
        Some("genai") => Layout::Genai,
        Some(l) => return Err(format!("--layout {l}: use optimum or genai")),
    };
    // Random weights are still the Python importer's.
    let native = a.random.is_none();
    match (path, precision) {
        (Some(p), _) if !p.exists() => {
            eprintln!("inferd-import: no such file or folder: {}", p.display());
            Ok(2)
        }
        (Some(p), Some(precision)) if native => {
            Ok(import_natively(p, (precision, layout), &a, models))
        }
        _ => python_import(a, models),
    }
}

/// The Rust importer: a GGUF file, or a Hugging Face checkpoint folder.
fn import_natively(
    src: &Path,
    (precision, layout): (Precision, Layout),
    a: &ImportArgs,
    models: PathBuf,
) -> i32 {
    let started = Instant::now();
    let o = Options {
        models,
        name: a.name.clone(),
        force: a.force,
        threads: 2,
        precision,
        layout,
    };
    let mut bars = Bars::new();
    let mut report = |s: Step<'_>| bars.show(s);
    let done = if src.is_dir() {
        import_hf(src, &o, &mut report)
    } else {
        import_gguf(src, &o, &mut report)
    };
    match done {
        Ok((dir, arch)) => {
            eprintln!(
                "imported {} as {} ({}, {}, {} layers) in {:.1} s",
                src.display(),
                dir.display(),
                precision.name(),
                arch.family,
                arch.num_layers,
                started.elapsed().as_secs_f64()
            );
            if layout == Layout::Genai && precision != Precision::Fp16 {
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

fn python_import(a: ImportArgs, models: PathBuf) -> Result<i32, String> {
    let mut cmd = Command::new(python()?);
    cmd.args(["-m", "inferd_import"]);
    cmd.args(a.source.iter());
    let precision = a.precision.as_deref().unwrap_or("int4");
    cmd.args(["--name", &a.name, "--precision", precision]);
    cmd.arg("--models").arg(&models);
    if a.force {
        cmd.arg("--force");
    }
    if let Some(l) = &a.layout {
        cmd.args(["--layout", l]);
    }
    if let Some(r) = &a.random {
        cmd.args(["--random", r]);
    }
    if let Some(t) = &a.tokenizer {
        cmd.args(["--tokenizer", t]);
    }
    if let Some(s) = a.seed {
        cmd.args(["--seed", &s.to_string()]);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run the importer: {e}"))?;
    Ok(status.code().unwrap_or(1))
}
