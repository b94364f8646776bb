//! inferd's model importer, in Rust: reads GGUF files and Hugging Face checkpoint folders
//! (memory-mapped) and writes ONNX model folders, a GGUF's quantized weights transcoded into
//! ONNX Runtime's `MatMulNBits` blocks without being de-quantized.
//!
//! `folder::import_gguf`, `import_hf` and `import_random` write a whole model folder: the decoder
//! graph (`graph.rs`, written by `onnx.rs`) from a `source::Source` of tensors (`gguf.rs`,
//! `hf.rs`, `random.rs`), the tokenizer (rebuilt from GGUF metadata by `tokenizer.rs`, or the
//! folder's own), configs and manifest. The Python importer (models/importer) is the tests'
//! reference.

pub mod arch;
pub mod blocks;
pub mod error;
pub mod folder;
pub mod gguf;
pub mod graph;
pub mod hf;
pub mod onnx;
pub mod ops;
pub mod pretokenizer;
pub mod progress;
pub mod random;
pub mod rope;
pub mod source;
pub mod tokenizer;
pub mod weights;

use std::path::Path;

/// What a decoder's weights become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// A GGUF file's own blocks, transcoded (`blocks.rs`); float tensors as fp32. Every product
    /// in fp32.
    Native,
    /// Every weight as fp32.
    Fp32,
    /// Weights and activations in fp16, norms and softmax in fp32, logits returned as fp32 (for
    /// GPUs; the Python importer's fp16).
    Fp16,
    /// Linear layers re-quantized to 4-bit blocks of 32 (round to nearest, symmetric, as
    /// onnxruntime's blockwise quantizer does) and run with int8 activations, as the Python
    /// importer's int4; the embedding table fp16.
    Int4,
}

/// The decoder graph's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// optimum's and transformers.js's: `position_ids`, standard operators.
    Optimum,
    /// onnxruntime-genai's model builder's: `GroupQueryAttention`, no `position_ids`.
    Genai,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Native => "native",
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int4 => "int4",
        }
    }
}

/// Writes `dir/model.onnx` (and `model.onnx.data`) for a decoder whose weights are `src`'s.
pub fn write_decoder(
    src: &dyn source::Source,
    a: &arch::Arch,
    precision: Precision,
    layout: Layout,
    source: &str,
    dir: &Path,
    report: progress::Report<'_>,
) -> error::Result<()> {
    let io = |e| error::Error::Io(dir.display().to_string(), e);
    std::fs::create_dir_all(dir).map_err(io)?;
    let data = std::fs::File::create(dir.join("model.onnx.data")).map_err(io)?;
    let ext = onnx::ExternalData::new(std::io::BufWriter::new(data), "model.onnx.data");
    let meta = vec![(
        "inferd_import".to_owned(),
        serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "source": source, "precision": precision.name()}).to_string(),
    )];
    let (model, _) = graph::Builder::new(a, src, (precision, layout), ext, report).build(meta)?;
    std::fs::write(dir.join("model.onnx"), model.encode("model.onnx.data")).map_err(io)
}
