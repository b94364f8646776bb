"""Phi-3 (Llama's layers with q/k/v fused into one `qkv_proj` and gate/up into one `gate_up_proj`,
and a sliding window), imported natively from a tiny random checkpoint folder and a phi3 GGUF
(`attn_qkv`, and the fused gate and up as `ffn_up`), in both layouts: the logits of the numpy
reference (reference.py) on the separate projections. Phi-3-128k's and Phi-4-mini's longrope
(two factor lists, switched past the original context, and an attention factor) and Phi-4-mini's
partial rotary embedding, from both formats."""
import math

import numpy as np
import pytest

from reference import forward
from test_llama3 import native_fails
from decode import Decoder
from tiny_models import IDS, arch, folder_logits, native_logits, reference_logits, weights, write_folder, write_gguf

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


# Phi-4-mini's rotary embedding, small: half of each head rotates (partial_rotary_factor), with
# longrope's two factor lists switched past an original context of 8 positions.
ORIGINAL = 8
LONGROPE = {"type": "longrope", "short_factor": [1.0, 1.3, 1.9, 2.6], "long_factor": [2.0, 3.5, 6.0, 11.0]}
PHI4 = CFG | {"partial_rotary_factor": 0.5, "original_max_position_embeddings": ORIGINAL, "rope_scaling": LONGROPE}
# transformers' attention factor for a context extended 256 / 8 times.
ATTENTION_FACTOR = math.sqrt(1 + math.log(256 / ORIGINAL) / math.log(ORIGINAL))


def phi4_reference(w, ids, **changes):
    scaling = {"rope_type": "longrope", "short_factor": LONGROPE["short_factor"],
               "long_factor": LONGROPE["long_factor"], "original_max_position_embeddings": ORIGINAL,
               "attention_factor": ATTENTION_FACTOR}
    a = arch(PHI4, sliding_window=WINDOW, partial_rotary_factor=0.5, rope_scaling=scaling)
    for k, v in changes.items():
        setattr(a, k, v)
    return forward(a, w.__getitem__, np.array(ids))


def logits(folder, ids):
    d = Decoder(folder)
    return d.forward(np.array([ids], np.int64), d.empty_past(), 0)[0][0]


@pytest.fixture(scope="module")
def phi4():
    """Weights, and the reference's logits for IDS (10 positions: the long factors) and for its
    first 6 (the short ones); each checked to depend on what it tests."""
    w = weights(PHI4, 17)
    long_, short = phi4_reference(w, IDS), phi4_reference(w, IDS[:6])
    assert np.abs(long_[:6] - short).max() > 1e-2, "the long factors must change the logits"
    assert np.abs(long_ - phi4_reference(w, IDS, partial_rotary_factor=None, rope_scaling=None)).max() > 1e-2
    return w, long_, short


def test_a_phi4_mini_checkpoint_folder(phi4, tiny_qwen2, tmp_path):
    w, long_, short = phi4
    folder = write_folder(tmp_path / "ckpt", PHI4, fused(w), tiny_qwen2 / "tokenizer.json")
    native_logits(folder, tmp_path / "m")
    np.testing.assert_allclose(logits(tmp_path / "m" / "m", IDS), long_, atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits(tmp_path / "m" / "m", IDS[:6]), short, atol=1e-4, rtol=0)
    # The genai layout's GroupQueryAttention takes one table: longrope is refused there, by name.
    assert "longrope" in native_fails(folder, tmp_path / "g", "--layout", "genai")


def test_a_phi4_mini_gguf(phi4, gguf, tmp_path):
    """As llama.cpp's converter writes Phi-3-128k/Phi-4-mini: rope.dimension_count, the factor
    lists as rope_factors_short/long tensors, the original context and the attention factor."""
    w, long_, short = phi4
    names = {f"rope_factors_{k}.weight": f"rope_factors_{k}.weight" for k in ("short", "long")}
    tensors = fused(w) | {f"rope_factors_{k}.weight": np.asarray(LONGROPE[f"{k}_factor"], np.float32)
                          for k in ("short", "long")}
    path = write_gguf(tmp_path / "phi4.gguf", PHI4, "phi3", tensors, gguf,
                      [("attention.sliding_window", WINDOW), ("rope.dimension_count", 8),
                       ("rope.scaling.original_context_length", ORIGINAL),
                       ("rope.scaling.attn_factor", ATTENTION_FACTOR)], names=names)
    native_logits(path, tmp_path / "m")
    np.testing.assert_allclose(logits(tmp_path / "m" / "m", IDS), long_, atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits(tmp_path / "m" / "m", IDS[:6]), short, atol=1e-4, rtol=0)


@pytest.mark.parametrize("layout", ["optimum", "genai"])
def test_a_partial_rotary_embedding_alone(tiny_qwen2, tmp_path, layout):
    """Phi-4-mini's partial rotary embedding without longrope, in both layouts (the genai one's
    GroupQueryAttention reads it from its narrower tables)."""
    # Heads of 32, half rotating: GroupQueryAttention wants tables a multiple of 8 wide.
    cfg = CFG | {"partial_rotary_factor": 0.5, "num_attention_heads": 2, "num_key_value_heads": 2}
    w = weights(cfg, 19)
    ref = lambda partial: forward(arch(cfg, sliding_window=WINDOW, partial_rotary_factor=partial), w.__getitem__,
                                  np.array(IDS))
    want = ref(0.5)
    assert np.abs(want - ref(None)).max() > 1e-2, "the partial rotary embedding must change the logits"
    got = folder_logits(cfg, fused(w), tiny_qwen2 / "tokenizer.json", tmp_path, layout)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
