//! inferd's model importer, in Rust: reads GGUF files (memory-mapped) and transcodes their
//! quantized weights into ONNX Runtime's `MatMulNBits` blocks without de-quantizing them.
//!
//! This is the first part of the native importer (issue 16): the reader and the block formats,
//! checked against the `gguf` package's own de-quantization. The graph writer and `inferctl
//! import` on top of it are still the Python importer's (models/importer).

pub mod blocks;
pub mod error;
pub mod gguf;
