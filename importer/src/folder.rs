//! A complete model folder, written atomically: everything goes to a hidden folder next to the
//! destination, renamed into place only when complete, so the daemon (which skips hidden
//! folders) never sees a half-written model.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value as Json};

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::hf::HfFolder;
use crate::progress::{Report, Step};
use crate::random::RandomWeights;
use crate::source::Source;
use crate::tokenizer::TokenizerFiles;
use crate::{Layout, Precision};

pub struct Options {
    /// The model repository.
    pub models: PathBuf,
    pub name: String,
    /// Replace an existing folder of that name.
    pub force: bool,
    /// `intra_op_num_threads` written to genai_config.json.
    pub threads: u32,
    pub precision: Precision,
    pub layout: Layout,
}

struct Staging {
    dir: PathBuf,
    dest: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io(path.display().to_string(), e)
}

impl Staging {
    fn new(o: &Options) -> Result<Staging> {
        if o.name.is_empty() || o.name.starts_with('.') || o.name.contains('/') {
            return Err(Error::Refused(format!(
                "model name {:?}: use letters, digits, '-' and '_'",
                o.name
            )));
        }
        let dest = o.models.join(&o.name);
        if dest.exists() && !o.force {
            return Err(Error::Refused(format!(
                "{} already exists; pass --force to replace it",
                dest.display()
            )));
        }
        std::fs::create_dir_all(&o.models).map_err(io(&o.models))?;
        let dir = o
            .models
            .join(format!(".{}.importing-{}", o.name, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(io(&dir))?;
        Ok(Staging { dir, dest })
    }

    fn json(&self, name: &str, v: &Json) -> Result<()> {
        let path = self.dir.join(name);
        let text = serde_json::to_string_pretty(v).expect("JSON values serialize") + "\n";
        std::fs::write(&path, text).map_err(io(&path))
    }

    /// Renames the staging folder into place; a folder already there (with `force`) is put
    /// back if that fails.
    fn commit(self, force: bool) -> Result<PathBuf> {
        let name = self.dest.file_name().unwrap_or_default().to_string_lossy();
        let old = self
            .dest
            .with_file_name(format!(".{name}.replaced-{}", std::process::id()));
        let replacing = self.dest.exists();
        if replacing && !force {
            return Err(Error::Refused(format!(
                "{} appeared during the import; pass --force to replace it",
                self.dest.display()
            )));
        }
        if replacing {
            std::fs::rename(&self.dest, &old).map_err(io(&self.dest))?;
        }
        if let Err(e) = std::fs::rename(&self.dir, &self.dest) {
            if replacing {
                let _ = std::fs::rename(&old, &self.dest);
            }
            return Err(io(&self.dest)(e));
        }
        let _ = std::fs::remove_dir_all(&old);
        Ok(self.dest.clone())
    }
}

fn manifest(source: &str, precision: Precision) -> String {
    format!(
        "# Imported by inferd-import from {source} ({}).\n\
         kind = \"text-generation\"\n\
         file = \"model.onnx\"\n\
         tokenizer = \"tokenizer.json\"\n\
         \n\
         [execution]\n\
         # Decoding runs many small operators back to back: letting ONNX Runtime's threads spin\n\
         # between them is worth the CPU.\n\
         spin = true\n",
        match precision {
            Precision::Native => "native: the GGUF's own quantization",
            p => p.name(),
        }
    )
}

/// A finished import.
pub struct Imported {
    /// The published model folder.
    pub dir: PathBuf,
    pub arch: Arch,
    /// What the user should know about the result (`TokenizerFiles::warnings`).
    pub warnings: Vec<String>,
}

/// What a checkpoint gives besides its weights.
struct Parts {
    arch: Arch,
    tok: TokenizerFiles,
    generation: Map<String, Json>,
}

/// Imports a GGUF file as `o.models/o.name`, telling `report` how far it is: stages `read`,
/// `convert` (a step a tensor) and `write`.
pub fn import_gguf(src: &Path, o: &Options, report: Report<'_>) -> Result<Imported> {
    report(Step::of("read", 0, 1));
    let mut g = Gguf::open(src)?;
    let arch = Arch::from_gguf(&g)?;
    crate::source::unfuse(&mut g.tensors, &arch)?;
    let tok = crate::tokenizer::from_gguf(&g)?;
    let generation = Map::new();
    let parts = Parts {
        arch,
        tok,
        generation,
    };
    import(src, &g, parts, o, report)
}

/// Imports a Hugging Face checkpoint folder as `o.models/o.name`, with the same stages as
/// `import_gguf` (`Precision::Native` keeps its float weights as fp32).
pub fn import_hf(src: &Path, o: &Options, report: Report<'_>) -> Result<Imported> {
    report(Step::of("read", 0, 1));
    let mut f = HfFolder::open(src)?;
    let mut arch = Arch::from_hf(&f.config, |n| f.tensor(n).is_some())?;
    f.unfuse(&arch)?;
    let generation = f.generation()?;
    if let Some(bos) = generation.get("bos_token_id").and_then(Json::as_u64) {
        arch.bos_token_id = Some(bos);
    }
    match generation.get("eos_token_id") {
        Some(Json::Array(ids)) => {
            arch.eos_token_ids = ids.iter().filter_map(Json::as_u64).collect()
        }
        Some(id) if id.is_u64() => arch.eos_token_ids = id.as_u64().into_iter().collect(),
        _ => {}
    }
    let tok = f.tokenizer()?;
    let parts = Parts {
        arch,
        tok,
        generation,
    };
    import(src, &f, parts, o, report)
}

/// Imports random weights for an architecture config (`random.rs`) as `o.models/o.name`, with
/// the tokenizer of `tokenizer` (a GGUF file or a checkpoint folder).
pub fn import_random(
    config: &Path,
    tokenizer: &Path,
    seed: u64,
    o: &Options,
    report: Report<'_>,
) -> Result<Imported> {
    report(Step::of("read", 0, 1));
    let (arch, weights) = RandomWeights::new(config, seed)?;
    let tok = if tokenizer.is_dir() {
        crate::hf::tokenizer_files(tokenizer)?
    } else {
        crate::tokenizer::from_gguf(&Gguf::open(tokenizer)?)?
    };
    let parts = Parts {
        arch,
        tok,
        generation: Map::new(),
    };
    import(config, &weights, parts, o, report)
}

fn import(
    src: &Path,
    weights: &dyn Source,
    p: Parts,
    o: &Options,
    report: Report<'_>,
) -> Result<Imported> {
    let staging = Staging::new(o)?;
    report(Step::of("read", 1, 1));
    let a = &p.arch;
    let written = (|| {
        let source = src
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let total = weights.tensors().len();
        let (precision, layout) = (o.precision, o.layout);
        crate::write_decoder(
            weights,
            a,
            precision,
            layout,
            &source,
            &staging.dir,
            &mut *report,
        )?;
        report(Step::of("convert", total, total));
        report(Step::of("write", 0, 1));
        staging.json("tokenizer.json", &p.tok.tokenizer_json)?;
        let mut cfg = p.tok.config.clone();
        if let Some(t) = &p.tok.chat_template {
            cfg.insert("chat_template".into(), json!(t));
            let path = staging.dir.join("chat_template.jinja");
            std::fs::write(&path, t).map_err(io(&path))?;
        }
        cfg.entry("model_max_length")
            .or_insert(json!(a.context_length));
        cfg.entry("tokenizer_class")
            .or_insert(json!("PreTrainedTokenizerFast"));
        staging.json("tokenizer_config.json", &Json::Object(cfg))?;
        staging.json("config.json", &a.hf_config())?;
        let mut generation = p.generation.clone();
        generation.insert("bos_token_id".into(), json!(a.bos_token_id));
        generation.insert("eos_token_id".into(), json!(a.eos_token_ids));
        staging.json("generation_config.json", &Json::Object(generation))?;
        staging.json("genai_config.json", &a.genai_config(o.threads, o.layout))?;
        let path = staging.dir.join("model.toml");
        std::fs::write(&path, manifest(&source, o.precision)).map_err(io(&path))?;
        report(Step::of("write", 1, 1));
        Ok(())
    })();
    let dir = staging.dir.clone();
    match written.and_then(|()| staging.commit(o.force)) {
        Ok(dir) => Ok(Imported {
            dir,
            arch: p.arch,
            warnings: p.tok.warnings,
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}
