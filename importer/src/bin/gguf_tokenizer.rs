//! `inferd-gguf-tokenizer FILE OUT_DIR`: the tokenizer.json and tokenizer_config.json the
//! importer rebuilds from a GGUF file's metadata (`tokenizer.rs`), for tests that run them in
//! the `tokenizers` library on vocabulary-only GGUF files (llama.cpp's ggml-vocab-*.gguf). Each
//! warning is printed to stderr as `warning: ...`.

use std::path::PathBuf;

use inferd_import::gguf::Gguf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [file, out] = args.as_slice() else {
        return Err("usage: inferd-gguf-tokenizer FILE OUT_DIR".into());
    };
    let t = inferd_import::tokenizer::from_gguf(&Gguf::open(file)?)?;
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("tokenizer.json"),
        serde_json::to_vec(&t.tokenizer_json)?,
    )?;
    std::fs::write(
        out.join("tokenizer_config.json"),
        serde_json::to_vec(&serde_json::Value::Object(t.config))?,
    )?;
    for w in &t.warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}
