"""The sizing table of docs/operations.md: weights, KV cache per stream and streams per GiB for
the R1-Distill-Qwen-1.5B shape and SmolLM2-135M, int4 and fp16, at 2k, 8k and 32k contexts.

The figures come from the models' config.json. They are checked against a running inferd: it
loads both int4 imports, and its `ListModels` gives each one's measured memory (RSS growth while
the session opened, with the KV cache limit, which is counted and not measured, taken out) and
the KV bytes per token it read from the graph's cache inputs.

The fp16 weights are the parameter count × 2; that count is checked against the fp32 import
of SmolLM2 (4 bytes a parameter).

    sizing.py INFERD INFERCTL SMOLLM2_DIR R1_1_5B_DIR SMOLLM2_FP32_DIR     (make sizing)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_daemon import served

CONTEXTS = [2048, 8192, 32768]
GIB = 1 << 30


def params(c):
    """Parameters of a Llama/Qwen2 decoder from its config.json."""
    h, inter, layers, vocab = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    hd = c.get("head_dim") or h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    bias = (q + 2 * kv) if c["model_type"] == "qwen2" else 0
    layer = h * q + 2 * h * kv + q * h + bias + 3 * h * inter + 2 * h
    lm_head = 0 if c.get("tie_word_embeddings") else vocab * h
    return vocab * h + layers * layer + h + lm_head


def kv_per_token(c, elem):
    """Bytes one token takes in the KV cache: every layer's keys and values."""
    hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    return c["num_hidden_layers"] * 2 * c["num_key_value_heads"] * hd * elem


def file_bytes(folder):
    return sum(p.stat().st_size for p in Path(folder).glob("model.onnx*"))


def measured(inferd, inferctl, folders):
    """name -> ListModels row, from an inferd serving `folders` (name -> folder)."""
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        repo = tmp / "repo"
        for name, folder in folders.items():
            dst = repo / name.lower()
            dst.mkdir(parents=True)
            for f in Path(folder).iterdir():
                # Hard links: inferd refuses a symlink out of the model folder.
                try:
                    os.link(f, dst / f.name)
                except OSError:
                    shutil.copy(f, dst / f.name)
            # A small KV limit: the load's RSS growth is then mostly the weights.
            (dst / "model.toml").unlink()
            text = (Path(folder) / "model.toml").read_text()
            (dst / "model.toml").write_text(text + "\n[generation]\nkv_cache_tokens = 2048\n")
        # Under a budget, loads take turns, so each is measured on its own.
        conf = tmp / "inferd.toml"
        conf.write_text("[engine]\nmemory_budget = 1000000000000\n")
        with served(inferd, repo, tmp, conf, tries=3000) as addr:
            out = subprocess.run([inferctl, "--bus", addr, "--json", "models"], check=True,
                                 capture_output=True, text=True).stdout
            return {m["name"]: m for m in json.loads(out)}


def table(inferd, inferctl, smollm2, r1, smollm2_fp32):
    models = [
        ("R1-Distill-Qwen-1.5B", json.loads((Path(__file__).parent.parent / "models/configs/r1-distill-qwen-1.5b-shape.json").read_text()), r1),
        ("SmolLM2-135M", json.loads((Path(smollm2) / "config.json").read_text()), smollm2),
    ]
    rows = measured(inferd, inferctl, {name: folder for name, _, folder in models})
    lines = ["| model | precision | weights | KV a token | context | KV a stream | streams per GiB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    checks = []
    for name, c, folder in models:
        row = rows[name.lower()]
        weights_int4 = file_bytes(folder)
        measured_weights = row["memory_bytes"] - row["kv_cache_bytes"]
        checks.append(
            f"- {name} int4: weights {weights_int4 / 1e6:.0f} MB on disk, {measured_weights / 1e6:.0f} MB "
            f"measured at load ({measured_weights / weights_int4:.2f}×); KV a token "
            f"{kv_per_token(c, 4)} B from config.json, {row['kv_bytes_per_token']} B from the graph "
            f"({'same' if kv_per_token(c, 4) == row['kv_bytes_per_token'] else 'DIFFERENT'})")
        for precision, weights, elem in [("int4 (CPU, fp32 KV)", weights_int4, 4),
                                         ("fp16 (GPU, fp16 KV)", params(c) * 2, 2)]:
            per_token = kv_per_token(c, elem)
            for ctx in CONTEXTS:
                if ctx > c["max_position_embeddings"]:
                    continue
                stream = per_token * ctx
                lines.append(f"| {name} | {precision} | {weights / 1e9:.2f} GB | {per_token / 1024:.1f} KiB "
                             f"| {ctx // 1024}k | {stream / (1 << 20):.0f} MiB | {GIB / stream:.1f} |")
    fp32 = file_bytes(smollm2_fp32)
    counted = params(models[1][1]) * 4
    checks.append(f"- SmolLM2-135M fp32 import: {fp32 / 1e6:.0f} MB on disk, parameters × 4 = "
                  f"{counted / 1e6:.0f} MB ({fp32 / counted:.2f}×)")
    return "\n".join(lines) + "\n\nChecked against inferd (this run):\n" + "\n".join(checks) + "\n"


if __name__ == "__main__":
    print(table(*sys.argv[1:6]))
