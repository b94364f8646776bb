"""inferd's model importer: GGUF files and Hugging Face checkpoint folders to ONNX, no torch."""

__version__ = "0.1.0"
