//! TensorRT engine caches: one folder per model and key, where the key covers everything that
//! makes an engine invalid (model file, ONNX Runtime and TensorRT versions, GPU, precision,
//! shape profile). A changed key builds a new engine; a stale one is never loaded, and old
//! ones are removed once the new one is complete.
//!
//! Builds write into a hidden `.build-*` folder that is renamed into place only after the
//! session was created, so a crash mid-build never leaves a folder that looks complete.
//!
//! An engine is code the GPU runs, and ONNX Runtime trusts the file. So each published folder
//! records every file's SHA-256 (`files.sha256`), and a folder is used only when its files are
//! exactly those, unchanged, owned by the daemon's user and writable by nobody else; anything
//! else is removed and rebuilt.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::gpu::GpuFacts;
use crate::manifest::{ModelSpec, TensorRtOptions};

/// What the key is made of; written next to the engine as `key.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyParts {
    pub model_sha256: String,
    pub onnxruntime: String,
    pub tensorrt: String,
    pub gpu: String,
    pub precision: String,
    pub profile: String,
}

impl KeyParts {
    pub fn new(model_sha256: String, ort: &str, gpu: &GpuFacts, o: &TensorRtOptions) -> Self {
        let shapes = |s: &Option<String>| s.clone().unwrap_or_default();
        KeyParts {
            model_sha256,
            onnxruntime: ort.to_owned(),
            tensorrt: gpu.tensorrt.clone(),
            gpu: gpu.gpu.clone(),
            precision: if o.fp16 { "fp16" } else { "fp32" }.to_owned(),
            profile: format!(
                "min={} opt={} max={} level={:?} workspace={:?}",
                shapes(&o.profile_min_shapes),
                shapes(&o.profile_opt_shapes),
                shapes(&o.profile_max_shapes),
                o.builder_optimization_level,
                o.max_workspace,
            ),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "model_sha256 = {}\nonnxruntime = {}\ntensorrt = {}\ngpu = {}\nprecision = {}\nprofile = {}\n",
            self.model_sha256, self.onnxruntime, self.tensorrt, self.gpu, self.precision, self.profile
        )
    }

    /// 16 hex digits of the SHA-256 of `describe()`.
    pub fn key(&self) -> String {
        hex(&Sha256::digest(self.describe().as_bytes()))[..16].to_owned()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A model's engine folder for one key.
#[derive(Debug, Clone)]
pub struct EngineDir {
    /// `<state>/tensorrt/<model>`
    pub root: PathBuf,
    pub key: String,
    pub parts: KeyParts,
}

impl EngineDir {
    pub fn path(&self) -> PathBuf {
        self.root.join(&self.key)
    }

    /// A complete engine for this key exists and passes `verify`. One that does not is
    /// removed (with a warning), so it is rebuilt.
    pub fn is_warm(&self) -> bool {
        let dir = self.path();
        if !dir.join("key.txt").is_file() {
            return false;
        }
        match verify(&dir) {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!(dir = %dir.display(), "TensorRT engine cache not used: {why}; it is rebuilt");
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), "cannot remove it: {e}");
                }
                false
            }
        }
    }

    /// A fresh hidden folder to build into (`finish` moves it into place).
    pub fn start_build(&self) -> std::io::Result<PathBuf> {
        let dir = self
            .root
            .join(format!(".build-{}-{}", self.key, std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Publishes a finished build, with its files' checksums, and removes every other engine
    /// of this model.
    pub fn finish(&self, build: &Path) -> std::io::Result<()> {
        std::fs::write(build.join("key.txt"), self.parts.describe())?;
        let mut list = String::new();
        for name in files_in(build)? {
            list.push_str(&format!("{}  {name}\n", sha256_of(&build.join(&name))?));
        }
        std::fs::write(build.join(CHECKSUMS), list)?;
        let dest = self.path();
        if dest.exists() {
            std::fs::remove_dir_all(&dest)?;
        }
        std::fs::rename(build, &dest)?;
        self.remove_others();
        Ok(())
    }

    /// Removes engines of other keys and builds left by earlier processes (a crash, a kill).
    pub fn remove_others(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        let mine = format!("-{}", std::process::id());
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = if let Some(build) = name.strip_prefix(".build-") {
                !build.ends_with(&mine)
            } else {
                e.path().is_dir() && name != self.key
            };
            if stale {
                match std::fs::remove_dir_all(e.path()) {
                    Ok(()) => {
                        tracing::info!(dir = %e.path().display(), "removed an old TensorRT engine")
                    }
                    Err(err) => {
                        tracing::warn!(dir = %e.path().display(), "cannot remove an old TensorRT engine: {err}")
                    }
                }
            }
        }
    }
}

/// Each file of a published engine folder and its SHA-256, as `sha256sum` writes them.
const CHECKSUMS: &str = "files.sha256";

/// The names of the entries of `dir` other than the checksum list.
fn files_in(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name != CHECKSUMS {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Why a cached engine is not trusted (and so is rebuilt).
#[derive(Debug, thiserror::Error)]
enum Untrusted {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0} is owned by uid {1}, not the daemon's {2}")]
    NotOurs(String, u32, u32),
    #[error("{0} is writable by others (mode {1:o})")]
    Writable(String, u32),
    #[error("no {CHECKSUMS} ({0}): not an engine inferd published")]
    NoChecksums(std::io::Error),
    #[error("{CHECKSUMS} is malformed")]
    Malformed,
    #[error("its files are {present:?}, not the {listed:?} it was published with")]
    Files {
        present: Vec<String>,
        listed: Vec<String>,
    },
    #[error("{0} is not a plain file")]
    NotAFile(String),
    #[error("{0} changed since it was built (SHA-256 differs)")]
    Changed(String),
}

/// Owned by this process's user, and writable by nobody else.
fn owned_by_us(what: &str, meta: &std::fs::Metadata) -> Result<(), Untrusted> {
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(Untrusted::NotOurs(what.into(), meta.uid(), uid));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Untrusted::Writable(what.into(), meta.mode() & 0o7777));
    }
    Ok(())
}

/// The folder (and the folders holding it) and its files are ours alone, and its files are
/// exactly those recorded at publication, with the same SHA-256.
fn verify(dir: &Path) -> Result<(), Untrusted> {
    // The folder, and the two above it (`tensorrt/<model>`), so nobody else can swap it.
    for d in dir.ancestors().take(3) {
        owned_by_us(&d.display().to_string(), &std::fs::symlink_metadata(d)?)?;
    }
    let recorded = std::fs::read_to_string(dir.join(CHECKSUMS)).map_err(Untrusted::NoChecksums)?;
    let mut listed: Vec<(&str, &str)> = recorded
        .lines()
        .map(|l| l.split_once("  ").ok_or(Untrusted::Malformed))
        .collect::<Result<_, _>>()?;
    listed.sort_by_key(|(_, name)| *name);
    let present = files_in(dir)?;
    let names: Vec<&str> = listed.iter().map(|(_, n)| *n).collect();
    if names != present {
        return Err(Untrusted::Files {
            listed: names.into_iter().map(String::from).collect(),
            present,
        });
    }
    for (sha, name) in listed {
        let path = dir.join(name);
        let meta = std::fs::symlink_metadata(&path)?;
        if !meta.is_file() {
            return Err(Untrusted::NotAFile(name.into()));
        }
        owned_by_us(name, &meta)?;
        if sha256_of(&path)? != sha {
            return Err(Untrusted::Changed(name.into()));
        }
    }
    Ok(())
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Computes the model's engine folder. Hashing a large model takes seconds, so the hash is
/// kept next to the engines and reused while the file's size and mtime stay the same.
pub fn engine_dir(
    spec: &ModelSpec,
    state_dir: &Path,
    ort_version: &str,
    gpu: &GpuFacts,
) -> std::io::Result<EngineDir> {
    let root = state_dir.join("tensorrt").join(&spec.name);
    std::fs::create_dir_all(&root)?;
    let sha = model_hash(&spec.model_path, &root.join("model.sha256"))?;
    let parts = KeyParts::new(sha, ort_version, gpu, &spec.manifest.execution.tensorrt);
    Ok(EngineDir {
        key: parts.key(),
        root,
        parts,
    })
}

fn model_hash(model: &Path, memo: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(model)?;
    let mtime = meta
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let stamp = format!("{} {mtime}", meta.len());
    if let Ok(text) = std::fs::read_to_string(memo) {
        if let Some((s, sha)) = text.trim().rsplit_once(' ') {
            if s == stamp {
                return Ok(sha.to_owned());
            }
        }
    }
    let sha = sha256_of(model)?;
    let tmp = memo.with_extension("tmp");
    std::fs::write(&tmp, format!("{stamp} {sha}\n"))?;
    std::fs::rename(tmp, memo)?;
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> KeyParts {
        KeyParts::new(
            "ab".repeat(32),
            "1.31.1",
            &GpuFacts {
                gpu: "Orin (sm_87)".into(),
                tensorrt: "10.3.0".into(),
            },
            &TensorRtOptions::default(),
        )
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = parts();
        let key = base.key();
        assert_eq!(key, parts().key(), "the key is stable");
        let changed: [fn(&mut KeyParts); 6] = [
            |p| p.model_sha256 = "cd".repeat(32),
            |p| p.onnxruntime = "1.20.0".into(),
            |p| p.tensorrt = "10.4.0".into(),
            |p| p.gpu = "RTX 4090 (sm_89)".into(),
            |p| p.precision = "fp32".into(),
            |p| p.profile = "min=input_ids:1x1".into(),
        ];
        for change in changed {
            let mut p = base.clone();
            change(&mut p);
            assert_ne!(p.key(), key, "{p:?}");
        }
    }

    #[test]
    fn options_reach_the_key() {
        let gpu = GpuFacts {
            gpu: "g".into(),
            tensorrt: "t".into(),
        };
        let mut o = TensorRtOptions::default();
        let a = KeyParts::new("x".into(), "1", &gpu, &o).key();
        o.profile_max_shapes = Some("input_ids:8x512".into());
        let b = KeyParts::new("x".into(), "1", &gpu, &o).key();
        o.fp16 = false;
        let c = KeyParts::new("x".into(), "1", &gpu, &o).key();
        assert!(a != b && b != c && a != c);
    }

    #[test]
    fn builds_publish_atomically_and_replace_old_engines() {
        let state = tempfile::tempdir().unwrap();
        let root = state.path().join("tensorrt/m");
        std::fs::create_dir_all(root.join("0000000000000000")).unwrap();
        std::fs::create_dir_all(root.join(".build-1111111111111111-999999999")).unwrap();
        let dir = EngineDir {
            root: root.clone(),
            key: parts().key(),
            parts: parts(),
        };
        assert!(!dir.is_warm());
        let build = dir.start_build().unwrap();
        std::fs::write(build.join("engine"), b"e").unwrap();
        assert!(!dir.is_warm(), "a build in progress is not an engine");
        dir.finish(&build).unwrap();
        assert!(dir.is_warm());
        let mut left: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, std::slice::from_ref(&dir.key));
        let key_txt = std::fs::read_to_string(dir.path().join("key.txt")).unwrap();
        assert!(key_txt.contains("gpu = Orin (sm_87)"), "{key_txt}");
    }

    /// A published engine folder, `tamper`ed with, is used or not.
    fn warm_after(tamper: impl FnOnce(&Path)) -> bool {
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().unwrap();
        let dir = EngineDir {
            root: state.path().join("tensorrt/m"),
            key: parts().key(),
            parts: parts(),
        };
        std::fs::create_dir_all(&dir.root).unwrap();
        let build = dir.start_build().unwrap();
        std::fs::write(build.join("m.engine"), b"engine").unwrap();
        std::fs::set_permissions(&build, std::fs::Permissions::from_mode(0o700)).unwrap();
        dir.finish(&build).unwrap();
        tamper(&dir.path());
        dir.is_warm()
    }

    #[test]
    fn only_engines_as_they_were_built_are_used() {
        use std::os::unix::fs::PermissionsExt;
        assert!(warm_after(|_| {}));
        assert!(!warm_after(
            |d| std::fs::write(d.join("m.engine"), b"evil").unwrap()
        ));
        assert!(!warm_after(|d| std::fs::write(
            d.join("extra.engine"),
            b"x"
        )
        .unwrap()));
        assert!(!warm_after(|d| std::fs::remove_file(
            d.join("files.sha256")
        )
        .unwrap()));
        assert!(!warm_after(|d| {
            std::fs::set_permissions(d.join("m.engine"), std::fs::Permissions::from_mode(0o666))
                .unwrap()
        }));
        assert!(!warm_after(|d| {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap()
        }));
        assert!(!warm_after(|d| {
            std::fs::remove_file(d.join("m.engine")).unwrap();
            std::os::unix::fs::symlink("/etc/passwd", d.join("m.engine")).unwrap();
        }));
    }

    #[test]
    fn the_model_hash_is_remembered_until_the_file_changes() {
        let d = tempfile::tempdir().unwrap();
        let model = d.path().join("model.onnx");
        let memo = d.path().join("model.sha256");
        std::fs::write(&model, b"abc").unwrap();
        let sha = model_hash(&model, &memo).unwrap();
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(std::fs::read_to_string(&memo)
            .unwrap()
            .ends_with(&format!("{sha}\n")));
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&model, b"abcd").unwrap();
        assert_ne!(model_hash(&model, &memo).unwrap(), sha);
    }
}
