//! Temporary model repositories built from the prepared models.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::{models_cache, shared_tempdir, test_models, tests_dir};

/// A temporary model repository.
pub struct Repo {
    pub dir: TempDir,
}

impl Default for Repo {
    fn default() -> Self {
        Self::new()
    }
}

impl Repo {
    pub fn new() -> Repo {
        let dir = shared_tempdir("inferd-repo");
        Repo { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `<name>/<file>`.
    pub fn write(&self, name: &str, file: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).expect("model dir");
        let p = d.join(file);
        std::fs::write(&p, contents).expect("write file");
        p
    }

    /// Copies the prepared minilm under `name`, with its own manifest.
    pub fn add_minilm(&self, name: &str) {
        let src = models_cache().join("minilm");
        for f in ["model.onnx", "tokenizer.json", "model.toml"] {
            let dest = self.dir.path().join(name).join(f);
            std::fs::create_dir_all(dest.parent().expect("parent")).expect("dir");
            std::fs::copy(src.join(f), dest).expect("copy minilm");
        }
    }

    /// Copies an imported LLM folder from `make test-models` under `name`; `extra` is appended
    /// to its model.toml.
    pub fn add_llm(&self, source: &str, name: &str, extra: &str) {
        let src = test_models().join(source);
        for entry in std::fs::read_dir(&src).expect("test model folder") {
            let entry = entry.expect("entry");
            let dest = self.dir.path().join(name).join(entry.file_name());
            std::fs::create_dir_all(dest.parent().expect("parent")).expect("dir");
            // Weights are large: link them when the file system allows; the manifest is edited.
            if entry.file_name() == "model.toml" || std::fs::hard_link(entry.path(), &dest).is_err()
            {
                std::fs::copy(entry.path(), &dest).expect("copy");
            }
        }
        let toml = self.dir.path().join(name).join("model.toml");
        let mut text = std::fs::read_to_string(&toml).expect("model.toml");
        text.push_str(extra);
        std::fs::write(toml, text).expect("write model.toml");
    }

    /// Sets `batching.queue` in a model's manifest.
    pub fn set_queue(&self, name: &str, queue: usize) {
        let p = self.dir.path().join(name).join("model.toml");
        let text = std::fs::read_to_string(&p).expect("model.toml");
        let text = match text.find("queue = ") {
            Some(at) => {
                let end = at + text[at..].find('\n').unwrap_or(text.len() - at);
                format!("{}queue = {queue}{}", &text[..at], &text[end..])
            }
            None => format!("{text}\n[batching]\nqueue = {queue}\n"),
        };
        std::fs::write(p, text).expect("write model.toml");
    }

    /// Copies minilm under `name` with `providers` (a TOML array) instead of its own.
    pub fn add_minilm_on(&self, name: &str, providers: &str) {
        self.add_minilm(name);
        let p = self.dir.path().join(name).join("model.toml");
        let text = std::fs::read_to_string(&p).expect("model.toml");
        let own = r#"providers = ["cuda", "cpu"]"#;
        assert!(text.contains(own), "minilm's manifest changed: {text}");
        let text = text.replace(own, &format!("providers = {providers}"));
        std::fs::write(p, text).expect("write model.toml");
    }

    /// Random-weight tiny-qwen2 as `name` with a huge context: it practically never emits EOS,
    /// so a long generation stays active until it is cancelled. `extra` goes after
    /// `[generation] context_length` (more `[generation]` keys, say).
    pub fn add_endless_llm(&self, name: &str, extra: &str) {
        self.add_llm(
            "tiny-qwen2",
            name,
            &format!("[generation]\ncontext_length = 100000\n{extra}"),
        );
    }

    /// Copies a whole model folder kept in `tests/data/<source>` (its own manifest included)
    /// under `name`.
    pub fn add_data_folder(&self, source: &str, name: &str) {
        let src = tests_dir().join("data").join(source);
        for entry in std::fs::read_dir(&src).expect("test model folder") {
            let entry = entry.expect("entry");
            let dest = self.dir.path().join(name).join(entry.file_name());
            std::fs::create_dir_all(dest.parent().expect("parent")).expect("dir");
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }

    /// Copies a test model from `tests/data/<source>` under `name` with the given manifest.
    pub fn add_test_model(&self, source: &str, name: &str, manifest: &str) {
        let onnx = std::fs::read(tests_dir().join("data").join(source).join("model.onnx"))
            .expect("test model");
        self.write(name, "model.onnx", onnx);
        self.write(name, "model.toml", manifest);
    }
}
