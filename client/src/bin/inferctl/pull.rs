//! `inferctl pull REF`: download from the Hugging Face Hub (`hub.rs`) into the cache, import
//! (`import.rs`), then delete the download unless `--keep`.
//!
//! REF is `hf.co/ORG/REPO` (also `huggingface.co/…`, with or without `https://`), then
//! optionally `@REVISION` and `:FILE.gguf` or `:QUANT` (a GGUF chosen by its quantization's name,
//! such as `Q4_K_M`). A repository with no file named is a checkpoint folder when it has
//! `config.json` and safetensors, else its `Q4_K_M` GGUF, else its only GGUF.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::hub::Hub;
use crate::import::{cache_dir, run_on, Input, Target};
use crate::progress::Bars;

#[derive(Args)]
pub struct PullArgs {
    /// hf.co/ORG/REPO[@REVISION][:FILE.gguf | :QUANT]
    reference: String,
    #[command(flatten)]
    target: Target,
    /// Keep the downloaded files in the cache (under downloads/) after the import
    #[arg(long)]
    keep: bool,
}

/// What a reference names.
#[derive(Debug, PartialEq)]
struct Reference {
    repo: String,
    revision: String,
    pick: Option<String>,
}

fn parse(reference: &str) -> Result<Reference, String> {
    let bad = || {
        format!("{reference:?}: give hf.co/ORG/REPO[@REVISION][:FILE.gguf | :QUANT], such as hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M")
    };
    let rest = reference
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let rest = ["hf.co/", "huggingface.co/", "www.huggingface.co/"]
        .iter()
        .find_map(|h| rest.strip_prefix(h))
        .ok_or_else(bad)?;
    let (repo, pick) = match rest.split_once(':') {
        Some((r, p)) if !p.is_empty() => (r, Some(p.to_owned())),
        Some(_) => return Err(bad()),
        None => (rest, None),
    };
    let (repo, revision) = repo.split_once('@').unwrap_or((repo, "main"));
    let parts: Vec<&str> = repo.split('/').collect();
    let fine = |s: &str| {
        !s.is_empty()
            && s != ".."
            && s != "."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    if parts.len() != 2 || !parts.iter().all(|p| fine(p)) || !fine(revision) {
        return Err(bad());
    }
    Ok(Reference {
        repo: repo.to_owned(),
        revision: revision.to_owned(),
        pick,
    })
}

/// The files to fetch from `files`, and whether they make a checkpoint folder (else one GGUF).
fn choose(r: &Reference, files: &[String]) -> Result<(Vec<String>, bool), String> {
    let ggufs: Vec<&String> = files.iter().filter(|f| f.ends_with(".gguf")).collect();
    let split = |f: &str| f.contains("-of-0");
    let one = |f: &String| -> Result<(Vec<String>, bool), String> {
        if split(f) {
            return Err(format!("{f} is one part of a split GGUF; the importer reads whole files (join the parts with llama.cpp's gguf-split --merge, then inferctl import)"));
        }
        Ok((vec![f.clone()], false))
    };
    match &r.pick {
        Some(file) if file.ends_with(".gguf") => match files.iter().find(|f| *f == file) {
            Some(f) => one(f),
            None => Err(format!("{} has no file {file}", r.repo)),
        },
        Some(quant) => {
            let q = quant.to_ascii_lowercase();
            let named: Vec<&&String> = ggufs
                .iter()
                .filter(|f| {
                    let stem = f.to_ascii_lowercase();
                    let stem = stem.trim_end_matches(".gguf");
                    stem.ends_with(&format!(".{q}"))
                        || stem.ends_with(&format!("-{q}"))
                        || stem.ends_with(&format!("_{q}"))
                        || stem.contains(&format!("-{q}-"))
                })
                .collect();
            match named.as_slice() {
                [f] => one(f),
                [] => Err(format!(
                    "{} has no {quant} GGUF; it has: {}",
                    r.repo,
                    names(ggufs.iter().copied())
                )),
                many => Err(format!(
                    "{quant} matches several files of {}: {}; name one with :FILE.gguf",
                    r.repo,
                    names(many.iter().map(|f| **f))
                )),
            }
        }
        None if files.iter().any(|f| f == "config.json")
            && files.iter().any(|f| f.ends_with(".safetensors")) =>
        {
            let wanted = |f: &String| {
                !f.contains('/')
                    && (f.ends_with(".safetensors")
                        || [
                            "config.json",
                            "model.safetensors.index.json",
                            "tokenizer.json",
                            "tokenizer_config.json",
                            "generation_config.json",
                            "chat_template.jinja",
                        ]
                        .contains(&f.as_str()))
            };
            Ok((files.iter().filter(|f| wanted(f)).cloned().collect(), true))
        }
        None => {
            let whole: Vec<&String> = ggufs.iter().copied().filter(|f| !split(f)).collect();
            let q4km = whole
                .iter()
                .find(|f| f.to_ascii_lowercase().contains("q4_k_m"));
            match (q4km, whole.as_slice(), ggufs.first()) {
                (Some(f), _, _) | (None, [f], _) => one(f),
                (None, [], Some(part)) => one(part),
                (None, [], None) => Err(format!(
                    "{} has neither GGUF files nor a checkpoint (config.json and safetensors)",
                    r.repo
                )),
                (None, many, _) => Err(format!(
                    "{} has several GGUF files; choose one with :QUANT or :FILE.gguf: {}",
                    r.repo,
                    names(many.iter().copied())
                )),
            }
        }
    }
}

fn names<'a>(files: impl IntoIterator<Item = &'a String>) -> String {
    files
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A model name from the repository's: lower case, `-gguf` dropped, the quantization added.
fn default_name(r: &Reference, file: Option<&str>) -> String {
    let repo = r
        .repo
        .rsplit('/')
        .next()
        .unwrap_or(&r.repo)
        .to_ascii_lowercase();
    let mut name = repo.trim_end_matches("-gguf").to_owned();
    if let (Some(pick), Some(_)) = (&r.pick, file) {
        let quant = pick.trim_end_matches(".gguf").to_ascii_lowercase();
        if !quant.contains(&name) {
            name = format!("{name}-{quant}");
        } else {
            name = quant;
        }
    }
    name.chars().take(64).collect()
}

pub fn run(a: PullArgs) -> Result<i32, String> {
    let r = parse(&a.reference)?;
    let hub = Hub::from_env();
    let files = hub.files(&r.repo, &r.revision)?;
    let (wanted, folder) = choose(&r, &files)?;
    let cache = cache_dir().ok_or("no cache folder: set INFERD_CACHE or HOME")?;
    let dir = cache.join("downloads").join(&r.repo).join(&r.revision);
    let mut bars = Bars::new();
    for (i, file) in wanted.iter().enumerate() {
        eprintln!("pulling {}/{file} ({}/{})", r.repo, i + 1, wanted.len());
        let mut report = |done: u64, total: u64| {
            let mib = |b: u64| (b >> 20) as usize;
            bars.show(inferd_import::progress::Step::of(
                "download",
                mib(done),
                mib(total.max(done)).max(1),
            ));
        };
        hub.download(&r.repo, &r.revision, file, &dir.join(file), &mut report)?;
    }
    let name = match &a.target.name {
        Some(n) => n.clone(),
        None => default_name(&r, (!folder).then(|| wanted[0].as_str())),
    };
    let source: PathBuf = if folder {
        dir.clone()
    } else {
        dir.join(&wanted[0])
    };
    let input = if folder {
        Input::Folder(&source)
    } else {
        Input::Gguf(&source)
    };
    let code = run_on(input, &a.target, &name, 0)?;
    if code == 0 && !a.keep {
        remove(&dir, &wanted);
    }
    Ok(code)
}

/// Deletes the downloaded files, and their folders when that leaves them empty.
fn remove(dir: &Path, files: &[String]) {
    for f in files {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let mut d = Some(dir);
    while let Some(p) = d {
        if std::fs::remove_dir(p).is_err() || p.file_name() == Some("downloads".as_ref()) {
            break;
        }
        d = p.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn references_parse_or_are_refused() {
        let r = parse("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M").unwrap();
        assert_eq!(r.repo, "bartowski/SmolLM2-135M-Instruct-GGUF");
        assert_eq!(
            (r.revision.as_str(), r.pick.as_deref()),
            ("main", Some("Q4_K_M"))
        );
        let r = parse("https://huggingface.co/org/repo@v1.0").unwrap();
        assert_eq!(
            (r.repo.as_str(), r.revision.as_str(), r.pick),
            ("org/repo", "v1.0", None)
        );
        for bad in [
            "org/repo",
            "hf.co/repo",
            "hf.co/org/../x",
            "hf.co/org/repo:",
            "hf.co/a/b/c",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_quantization_is_chosen_by_name() {
        let fs = files(&["m.Q4_K_M.gguf", "m.Q4_K_S.gguf", "m-Q8_0.gguf", "README.md"]);
        let r = |pick: Option<&str>| Reference {
            repo: "o/m".into(),
            revision: "main".into(),
            pick: pick.map(str::to_owned),
        };
        assert_eq!(choose(&r(Some("q8_0")), &fs).unwrap().0, ["m-Q8_0.gguf"]);
        assert_eq!(choose(&r(None), &fs).unwrap().0, ["m.Q4_K_M.gguf"]);
        assert!(choose(&r(Some("Q5_K_M")), &fs)
            .unwrap_err()
            .contains("m.Q4_K_S.gguf"));
        let split = files(&[
            "m-Q4_K_M-00001-of-00002.gguf",
            "m-Q4_K_M-00002-of-00002.gguf",
        ]);
        assert!(choose(&r(None), &split).unwrap_err().contains("split"));
        let ckpt = files(&[
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "x/y.bin",
        ]);
        assert_eq!(
            choose(&r(None), &ckpt).unwrap(),
            (
                files(&["config.json", "model.safetensors", "tokenizer.json"]),
                true
            )
        );
    }

    #[test]
    fn names_come_from_the_repository() {
        let r = parse("hf.co/org/SmolLM2-135M-Instruct-GGUF:Q4_K_M").unwrap();
        assert_eq!(
            default_name(&r, Some("x.gguf")),
            "smollm2-135m-instruct-q4_k_m"
        );
        let r = parse("hf.co/org/Tiny-Llama").unwrap();
        assert_eq!(default_name(&r, None), "tiny-llama");
    }
}
