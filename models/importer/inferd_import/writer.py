"""Writes a complete model folder atomically: everything goes to a hidden temporary folder next
to the destination, which is renamed into place only when complete. The daemon never sees a
half-written model (it skips hidden folders)."""
import json
import os
import shutil
import tempfile
from pathlib import Path

import onnx

from .errors import ImportFailed
from .graph import total_bytes

# Above this, weights go to model.onnx.data (protobuf files cannot exceed 2 GiB).
EXTERNAL_DATA_BYTES = 1 << 30


def genai_config(arch, threads, layout="optimum"):
    a = arch
    inputs = {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    if layout == "optimum":
        inputs["position_ids"] = "position_ids"
    eos = a.eos_token_ids[0] if len(a.eos_token_ids) == 1 else a.eos_token_ids
    return {
        "model": {
            "bos_token_id": a.bos_token_id,
            "context_length": a.context_length,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": [], "intra_op_num_threads": threads},
                "filename": "model.onnx",
                "head_size": a.head_dim,
                "hidden_size": a.hidden_size,
                "inputs": inputs | {
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
                "num_attention_heads": a.num_heads,
                "num_hidden_layers": a.num_layers,
                "num_key_value_heads": a.num_kv_heads,
            },
            "eos_token_id": eos,
            "pad_token_id": a.eos_token_ids[0] if a.eos_token_ids else 0,
            "type": a.family,
            "vocab_size": a.vocab_size,
        },
        "search": {
            "diversity_penalty": 0.0, "do_sample": False, "early_stopping": True, "length_penalty": 1.0,
            "max_length": a.context_length, "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1,
            "num_return_sequences": 1, "past_present_share_buffer": False, "repetition_penalty": 1.0,
            "temperature": 1.0, "top_k": 1, "top_p": 1.0,
        },
    }


def manifest(arch, precision, source_desc):
    return (
        f"# Imported by inferd-import from {source_desc} ({precision}).\n"
        'kind = "text-generation"\n'
        'file = "model.onnx"\n'
        'tokenizer = "tokenizer.json"\n'
        "\n"
        "[execution]\n"
        "# Decoding runs many small operators back to back: letting ONNX Runtime's threads spin\n"
        "# between them is worth the CPU.\n"
        "spin = true\n"
    )


class Staging:
    """A hidden temporary folder in the models directory, renamed to `name` on commit."""

    def __init__(self, models_dir, name, force):
        self.models_dir = Path(models_dir)
        self.dest = self.models_dir / name
        if self.dest.exists() and not force:
            raise ImportFailed(f"{self.dest} already exists; pass --force to replace it")
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f".{name}.importing-", dir=self.models_dir))

    def write_json(self, name, obj):
        (self.dir / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")

    def write_model(self, model):
        path = self.dir / "model.onnx"
        if total_bytes(model) > EXTERNAL_DATA_BYTES:
            onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location="model.onnx.data", size_threshold=1024)
        else:
            onnx.save_model(model, path)

    def commit(self):
        os.chmod(self.dir, 0o755)
        old = None
        if self.dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.replaced-", dir=self.models_dir))
            os.rename(self.dest, old / "old")
        os.rename(self.dir, self.dest)
        if old:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self):
        shutil.rmtree(self.dir, ignore_errors=True)
