//! inferd's model importer, in Rust: reads GGUF files (memory-mapped) and transcodes their
//! quantized weights into ONNX Runtime's `MatMulNBits` blocks without de-quantizing them.
//!
//! This is the first part of the native importer (issue 16): the reader, the block formats
//! (checked against the `gguf` package's own de-quantization) and the ONNX writer. The decoder
//! graph and `inferctl import` on top of them are still the Python importer's (models/importer).

pub mod blocks;
pub mod error;
pub mod gguf;
pub mod onnx;
