//! The model repository: a directory of `<name>/model.toml` folders. Names are checked before any
//! path is built from them, so a client-supplied name can never leave the repository.

use std::path::{Path, PathBuf};

use crate::manifest::{ManifestError, ModelSpec, MANIFEST_FILE};

/// A model name is `[a-z0-9][a-z0-9._-]*`, at most 64 bytes.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

#[derive(Debug, Clone)]
pub struct Repository {
    root: PathBuf,
}

/// One folder found by a scan, with its manifest or the reason it is unusable.
pub struct Entry {
    pub name: String,
    pub spec: Result<ModelSpec, ManifestError>,
}

impl Repository {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Repository { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every folder holding a `model.toml`, sorted by name. Folders with invalid names are
    /// reported as failed entries rather than skipped silently.
    pub fn scan(&self) -> std::io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        for dirent in std::fs::read_dir(&self.root)? {
            let dirent = dirent?;
            let Ok(name) = dirent.file_name().into_string() else {
                continue;
            };
            // Hidden folders are work in progress (the importer stages models there).
            if name.starts_with('.') {
                continue;
            }
            if !dirent.path().join(MANIFEST_FILE).is_file() {
                continue;
            }
            let spec = if valid_name(&name) {
                self.load(&name)
            } else {
                Err(ManifestError::Invalid(format!(
                    "folder name {name:?} is not a valid model name ([a-z0-9][a-z0-9._-]*)"
                )))
            };
            out.push(Entry { name, spec });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Reads one model's manifest; `None` when no such folder exists.
    pub fn get(&self, name: &str) -> Option<Result<ModelSpec, ManifestError>> {
        if !valid_name(name) {
            return None;
        }
        let dir = self.root.join(name);
        dir.join(MANIFEST_FILE).is_file().then(|| self.load(name))
    }

    /// Reads the manifest of the folder `name`, which must be inside the repository: a
    /// folder that is a symlink to somewhere else is refused, like a file symlink is.
    fn load(&self, name: &str) -> Result<ModelSpec, ManifestError> {
        let dir = self.root.join(name);
        let outside = |reason: String| ManifestError::UnsafePath {
            key: "model folder",
            value: name.to_owned(),
            reason,
        };
        let root = self
            .root
            .canonicalize()
            .map_err(|e| outside(format!("{}: {e}", self.root.display())))?;
        let real = dir
            .canonicalize()
            .map_err(|e| outside(format!("{}: {e}", dir.display())))?;
        if !real.starts_with(&root) {
            return Err(outside(format!(
                "it is a symlink to {}, outside the model repository",
                real.display()
            )));
        }
        ModelSpec::load(name, &dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["minilm", "r1-distill.qwen_1.5b", "0x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "Upper",
            "a/b",
            "-x",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn scan_reports_bad_folders() {
        let root = tempfile::tempdir().unwrap();
        for name in ["good", "Bad", ".staging"] {
            let d = root.path().join(name);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("model.onnx"), b"x").unwrap();
            std::fs::write(d.join(MANIFEST_FILE), "kind = \"tensor\"\n").unwrap();
        }
        std::fs::create_dir(root.path().join("no-manifest")).unwrap();
        let repo = Repository::new(root.path());
        let entries = repo.scan().unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["Bad", "good"]);
        assert!(entries[0].spec.is_err());
        assert!(entries[1].spec.is_ok());
        assert!(repo.get("../good").is_none());
        assert!(repo.get("missing").is_none());
    }

    #[test]
    fn a_folder_symlinked_out_of_the_repository_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        for d in [root.path().join("inside"), elsewhere.path().join("m")] {
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("model.onnx"), b"").unwrap();
            std::fs::write(d.join(MANIFEST_FILE), "kind = \"tensor\"\n").unwrap();
        }
        let link =
            |to: &Path, name: &str| std::os::unix::fs::symlink(to, root.path().join(name)).unwrap();
        link(&elsewhere.path().join("m"), "out");
        link(&root.path().join("inside"), "alias");
        let repo = Repository::new(root.path());
        let e = repo.get("out").unwrap().unwrap_err().to_string();
        assert!(e.contains("outside the model repository"), "{e}");
        assert!(
            repo.get("alias").unwrap().is_ok(),
            "a link inside the repository is fine"
        );
        let scanned = repo.scan().unwrap();
        let out = scanned.iter().find(|e| e.name == "out").unwrap();
        assert!(out.spec.is_err());
    }
}
