//! inferd's model importer, in Rust: reads GGUF files (memory-mapped) and transcodes their
//! quantized weights into ONNX Runtime's `MatMulNBits` blocks without de-quantizing them.
//!
//! This is the first part of the native importer (issue 16): the reader, the block formats
//! (checked against the `gguf` package's own de-quantization) and the ONNX writer. The decoder
//! graph and `inferctl import` on top of them are still the Python importer's (models/importer).

pub mod arch;
pub mod blocks;
pub mod error;
pub mod gguf;
pub mod graph;
pub mod onnx;

use std::path::Path;

/// Writes `dir/model.onnx` (and `model.onnx.data`) for a GGUF file's decoder; returns its
/// architecture.
pub fn write_model(gguf: &Path, dir: &Path) -> error::Result<arch::Arch> {
    let g = gguf::Gguf::open(gguf)?;
    let a = arch::Arch::from_gguf(&g)?;
    let io = |e| error::Error::Io(dir.display().to_string(), e);
    std::fs::create_dir_all(dir).map_err(io)?;
    let data = std::fs::File::create(dir.join("model.onnx.data")).map_err(io)?;
    let ext = onnx::ExternalData::new(std::io::BufWriter::new(data), "model.onnx.data");
    let source = gguf
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let meta = vec![(
        "inferd_import".to_owned(),
        format!(
            r#"{{"version": "{}", "source": {source:?}, "precision": "native"}}"#,
            env!("CARGO_PKG_VERSION")
        ),
    )];
    let (model, _) = graph::Builder::new(&a, &g, ext).build(meta)?;
    std::fs::write(dir.join("model.onnx"), model.encode("model.onnx.data")).map_err(io)?;
    Ok(a)
}
