"""Phi-3 (Llama's layers with q/k/v fused into one `qkv_proj` and gate/up into one `gate_up_proj`,
and a sliding window), imported natively from a tiny random checkpoint folder and a phi3 GGUF
(`attn_qkv`, and the fused gate and up as `ffn_up`), in both layouts: the logits of the numpy
reference (reference.py) on the separate projections. Longrope and a partial rotary embedding
(Phi-3-128k, Phi-4-mini) are refused by name."""
import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from reference import forward
from test_llama3 import native_fails
from tiny_models import folder_logits, native_logits, reference_logits, weights, write_gguf

WINDOW = 6
CFG = {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "vocab_size": 49152, "hidden_size": 64,
       "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
       "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256, "sliding_window": WINDOW,
       "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}


def fused(w):
    out = dict(w)
    for i in range(CFG["num_hidden_layers"]):
        a, m = f"model.layers.{i}.self_attn", f"model.layers.{i}.mlp"
        out[f"{a}.qkv_proj.weight"] = np.concatenate([out.pop(f"{a}.{x}_proj.weight") for x in "qkv"])
        out[f"{m}.gate_up_proj.weight"] = np.concatenate([out.pop(f"{m}.{x}_proj.weight") for x in ("gate", "up")])
    return out


@pytest.fixture(scope="module")
def reference():
    w = weights(CFG, 13)
    return fused(w), reference_logits(forward, CFG, w, "sliding_window", WINDOW)


@pytest.mark.parametrize("layout", ["optimum", "genai"])
def test_a_phi3_checkpoint_folder(reference, tiny_qwen2, tmp_path, layout):
    w, want = reference
    got = folder_logits(CFG, w, tiny_qwen2 / "tokenizer.json", tmp_path, layout)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_a_phi3_gguf(reference, gguf, tmp_path):
    w, want = reference
    path = write_gguf(tmp_path / "phi3.gguf", CFG, "phi3", w, gguf, [("attention.sliding_window", WINDOW)])
    np.testing.assert_allclose(native_logits(path, tmp_path / "m"), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("extra,named", [({"rope_scaling": {"type": "longrope", "short_factor": [1.0] * 8,
                                                             "long_factor": [2.0] * 8}}, "longrope"),
                                          ({"partial_rotary_factor": 0.75}, "partial_rotary_factor")])
def test_what_phi_needs_beyond_this_is_refused_by_name(tmp_path, extra, named):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file({"model.norm.weight": np.ones(64, np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(CFG | extra))
    assert named in native_fails(folder, tmp_path / "m")
