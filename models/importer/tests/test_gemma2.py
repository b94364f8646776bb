"""Gemma 2 (scaled embeddings, 1 + w norms around each block's input and output, queries scaled
by query_pre_attn_scalar, soft-capped attention scores and logits, the sliding window on even
layers, a GELU (tanh) gated MLP, a tied head), imported natively from a tiny random checkpoint
folder and a gemma2 GGUF (norms stored as 1 + w, as llama.cpp's converter writes them), in both
layouts: the logits of reference.py's gemma2_forward."""
import numpy as np
import pytest

from reference import gemma2_forward
from tiny_models import IDS, folder_logits, native_logits, weights, write_gguf

CFG = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "vocab_size": 49152, "hidden_size": 64,
       "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
       "head_dim": 32, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 256,
       "sliding_window": 4, "query_pre_attn_scalar": 24, "attn_logit_softcapping": 5.0,
       "final_logit_softcapping": 3.0, "tie_word_embeddings": True, "bos_token_id": 2, "eos_token_id": 1}
NORMS = {"input_layernorm": "attn_norm", "post_attention_layernorm": "post_attention_norm",
         "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm"}


def gemma_weights(cfg):
    w = weights(cfg, 17)
    del w["lm_head.weight"]
    rng = np.random.default_rng(18)
    for i in range(cfg["num_hidden_layers"]):
        for n in ("pre_feedforward_layernorm", "post_feedforward_layernorm"):
            w[f"model.layers.{i}.{n}.weight"] = np.ones(cfg["hidden_size"], np.float32)
    # transformers stores Gemma's norm weights as w, applied as 1 + w.
    for name in [n for n in w if n.endswith("norm.weight")]:
        w[name] = (0.3 * rng.standard_normal(w[name].shape)).astype(np.float32)
    return w


def checked(cfg):
    w = gemma_weights(cfg)
    want = gemma2_forward(cfg, w, np.array(IDS))
    plain = gemma2_forward(cfg | {"attn_logit_softcapping": None, "final_logit_softcapping": None,
                                  "sliding_window": 10**6}, w, np.array(IDS))
    assert np.abs(want - plain).max() > 1e-2, "the caps and the window must matter"
    return w, want


@pytest.mark.parametrize("layout", ["optimum", "genai"])
def test_a_gemma2_checkpoint_folder(tiny_qwen2, tmp_path, layout):
    w, want = checked(CFG)
    got = folder_logits(CFG, w, tiny_qwen2 / "tokenizer.json", tmp_path, layout)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("layout", ["optimum", "genai"])
def test_a_gemma2_gguf(gguf, tmp_path, layout):
    # GGUF has no query_pre_attn_scalar: llama.cpp scales queries by head_dim (Gemma 2 2B, 9B).
    cfg = CFG | {"query_pre_attn_scalar": CFG["head_dim"]}
    w, want = checked(cfg)
    stored = {n: (x + 1 if n.endswith("norm.weight") else x) for n, x in w.items()}
    names = {f"model.layers.{i}.{hf}.weight": f"blk.{i}.{g}.weight"
             for i in range(cfg["num_hidden_layers"]) for hf, g in NORMS.items()}
    extra = [("attention.sliding_window", cfg["sliding_window"]),
             ("attn_logit_softcapping", cfg["attn_logit_softcapping"]),
             ("final_logit_softcapping", cfg["final_logit_softcapping"])]
    path = write_gguf(tmp_path / "gemma2.gguf", cfg, "gemma2", stored, gguf, extra, names)
    np.testing.assert_allclose(native_logits(path, tmp_path / "m", "--layout", layout), want, atol=1e-4, rtol=0)
