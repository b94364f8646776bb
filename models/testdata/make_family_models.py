#!/usr/bin/env python3
"""Tiny random checkpoint folders, one per architecture family the importer supports, each with
the greedy continuation of a prompt by the numpy reference (models/importer/tests/reference.py,
full recomputation in float64 at every step): for tests/tests/families.rs, which imports each
folder with `inferctl import` and asks inferd for the same greedy text.

The families' configurations are the importer tests' own (test_qwen3.py, test_mistral.py,
test_phi3.py, test_gemma2.py), plus Llama 3.1's rope scaling and Qwen2's q/k/v biases. Phi-4-mini's
longrope switches past an original context the generation stays within: the switch itself is
tested on logits (test_phi3.py). The weights' seed is the first that keeps every greedy choice
clear of a tie (best minus second best ≥ 0.02), so float32 and float64 agree.

Usage: make_family_models.py TOKENIZER_JSON OUT_DIR
"""
import json
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

TESTS = Path(__file__).resolve().parents[1] / "importer" / "tests"
sys.path.insert(0, str(TESTS))

from reference import forward, gemma2_forward  # noqa: E402
from test_gemma2 import CFG as GEMMA2, gemma_weights  # noqa: E402
from test_llama3 import SCALING, THETA  # noqa: E402
from test_mistral import CFG as MISTRAL  # noqa: E402
from test_phi3 import CFG as PHI3, LONGROPE, fused  # noqa: E402
from test_qwen3 import CFG as QWEN3  # noqa: E402
from tiny_models import arch, weights, write_folder  # noqa: E402

PROMPT = "The weather today is"
NEW_TOKENS = 10
MARGIN = 0.02

LLAMA3 = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152, "hidden_size": 64,
          "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "rms_norm_eps": 1e-5, "rope_theta": THETA, "max_position_embeddings": 256, "rope_scaling": SCALING,
          "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}
QWEN2 = {**LLAMA3, "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "rope_theta": 10000.0,
         "rms_norm_eps": 1e-6}
del QWEN2["rope_scaling"]
PHI4 = {**PHI3, "partial_rotary_factor": 0.5,
        "original_max_position_embeddings": 64, "rope_scaling": LONGROPE}
PHI4_FACTOR = float(np.sqrt(1 + np.log(256 / 64) / np.log(64)))


def with_biases(w, cfg, seed):
    rng = np.random.default_rng(seed)
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    for i in range(cfg["num_hidden_layers"]):
        for n, heads in [("q", cfg["num_attention_heads"]), ("k", cfg["num_key_value_heads"]),
                         ("v", cfg["num_key_value_heads"])]:
            w[f"model.layers.{i}.self_attn.{n}_proj.bias"] = (0.1 * rng.standard_normal(heads * hd)).astype(np.float32)
    return w


def family(name, seed):
    """(config, checkpoint weights, the reference's logits function of ids)."""
    if name == "gemma2":
        # Gemma 2's own caps (the logit tests' tighter ones leave 49,152 logits within ±3: ties).
        cfg = GEMMA2 | {"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}
        w = gemma_weights(cfg)  # its own fixed seeds
        return cfg, w, lambda ids: gemma2_forward(cfg, w, ids)
    cfg, extra = {
        "llama3": (LLAMA3, {"rope_scaling": SCALING}),
        "qwen2": (QWEN2, {"attention_bias": True}),
        "qwen3": (QWEN3, {"qk_norm": True}),
        "mistral": (MISTRAL, {"sliding_window": MISTRAL["sliding_window"]}),
        "phi4-mini": (PHI4, {"sliding_window": PHI4["sliding_window"], "partial_rotary_factor": 0.5,
                             "rope_scaling": {"rope_type": "longrope", "short_factor": LONGROPE["short_factor"],
                                              "long_factor": LONGROPE["long_factor"],
                                              "original_max_position_embeddings": 64,
                                              "attention_factor": PHI4_FACTOR}}),
    }[name]
    w = weights(cfg, seed, qk_norm=name == "qwen3")
    if name == "qwen2":
        w = with_biases(w, cfg, seed + 1)
    a = arch(cfg, **extra)
    ckpt = fused(w) if name == "phi4-mini" else w
    return cfg, ckpt, lambda ids: forward(a, w.__getitem__, np.array(ids))


def greedy(logits_of, prompt_ids, eos):
    """Greedy ids, or None when a choice is within MARGIN of a tie."""
    ids = list(prompt_ids)
    for _ in range(NEW_TOKENS):
        row = logits_of(ids)[-1]
        top2 = np.sort(row)[-2:]
        if top2[1] - top2[0] < MARGIN:
            return None
        ids.append(int(row.argmax()))
        if ids[-1] in eos:
            break
    return ids[len(prompt_ids):]


def main(tokenizer_json, out):
    tok = Tokenizer.from_file(tokenizer_json)
    prompt_ids = tok.encode(PROMPT).ids
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ["llama3", "qwen2", "qwen3", "mistral", "phi4-mini", "gemma2"]:
        for seed in range(100, 120):
            cfg, ckpt, logits_of = family(name, seed)
            eos = {cfg["eos_token_id"]}
            ids = greedy(logits_of, prompt_ids, eos)
            if ids is not None or name == "gemma2":
                break
        if ids is None:
            sys.exit(f"{name}: no seed gives greedy choices clear of ties")
        folder = out / name
        write_folder(folder, cfg, ckpt, tokenizer_json)
        (out / f"{name}.json").write_text(json.dumps({
            "prompt": PROMPT, "prompt_ids": prompt_ids, "ids": ids,
            "text": tok.decode([i for i in ids if i not in eos]),
        }, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
