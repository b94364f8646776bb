//! `inferctl import`: runs the model importer (the Python package in models/importer) in the
//! environment `make` prepares, passing its progress bars and errors straight through.

use std::path::PathBuf;
use std::process::Command;

use clap::Args;

#[derive(Args)]
pub struct ImportArgs {
    /// A .gguf file or a Hugging Face checkpoint folder
    source: Option<String>,
    /// Model name in the repository
    #[arg(long)]
    name: String,
    /// fp32, fp16 or int4
    #[arg(long, default_value = "int4")]
    precision: String,
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

/// Runs the importer; returns its exit status code.
pub fn run(a: ImportArgs) -> Result<i32, String> {
    let models = a
        .models
        .or_else(|| std::env::var_os("INFERD_MODELS").map(PathBuf::from))
        .unwrap_or_else(|| cache().join("models"));
    let mut cmd = Command::new(python()?);
    cmd.args(["-m", "inferd_import"]);
    cmd.args(a.source.iter());
    cmd.args(["--name", &a.name, "--precision", &a.precision]);
    cmd.arg("--models").arg(&models);
    if a.force {
        cmd.arg("--force");
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
