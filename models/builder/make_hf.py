"""Writes a Hugging Face model folder (config.json, model.safetensors, tokenizer files) from a
source the inferd importer reads: a GGUF file (de-quantized, as llama.cpp's own conversion
would give it back) or a random-weight config. onnxruntime-genai's model builder takes only HF
folders and float GGUFs, so this is how a user's Q4_1 SmolLM2 becomes a builder export.

    make_hf.py SmolLM2.Q4_1.gguf OUT
    make_hf.py --random config.json --tokenizer tokenizer.json OUT
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from inferd_import.sources.gguf_file import GgufSource
from inferd_import.sources.random_init import RandomSource


class JsonTokenizer:
    """A tokenizer.json given as is (for random models with a small vocabulary)."""

    def __init__(self, path):
        self.path = Path(path)

    def tokenizer(self):
        from inferd_import.sources import TokenizerFiles

        return TokenizerFiles(json.loads(self.path.read_text()), None, {})


def weight_names(arch):
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    if not arch.tie_word_embeddings:
        names.append("lm_head.weight")
    leaves = [
        "input_layernorm.weight",
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
        "self_attn.o_proj.weight",
        "post_attention_layernorm.weight",
        "mlp.gate_proj.weight",
        "mlp.up_proj.weight",
        "mlp.down_proj.weight",
    ]
    if arch.attention_bias:
        leaves += ["self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"]
    for i in range(arch.num_layers):
        names += [f"model.layers.{i}.{leaf}" for leaf in leaves]
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?", help="a .gguf file")
    ap.add_argument("out")
    ap.add_argument("--random", metavar="CONFIG", help="deterministic random weights for this config.json")
    ap.add_argument("--tokenizer", help="with --random: a tokenizer.json, or a .gguf to take it from")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.random:
        tok = GgufSource(a.tokenizer) if a.tokenizer.endswith(".gguf") else JsonTokenizer(a.tokenizer)
        src = RandomSource(a.random, tok, a.seed)
    else:
        src = GgufSource(a.source)
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    arch = src.arch
    weights = {name: np.ascontiguousarray(src.tensor(name)) for name in weight_names(arch)}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = arch.hf_config()
    config.update({"hidden_act": "silu", "torch_dtype": "float32", "use_cache": True})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    gen = {k: v for k, v in src.generation_defaults().items() if v not in (None, [])}
    gen["do_sample"] = False
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2))
    files = src.tokenizer()
    (out / "tokenizer.json").write_text(json.dumps(files.tokenizer_json))
    tcfg = {"tokenizer_class": "PreTrainedTokenizerFast", **files.config}
    if files.chat_template:
        tcfg["chat_template"] = files.chat_template
    (out / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=2))
    print(f"{out}: {arch.family}, {arch.num_layers} layers, {sum(w.size for w in weights.values()):,} weights")


if __name__ == "__main__":
    main()
