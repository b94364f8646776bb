"""Qwen3 (q and k RMS-normalized per head before the rotary embedding; an explicit head_dim that
is not hidden / heads; no q/k/v bias), imported natively from a tiny random checkpoint in both
formats, a checkpoint folder and a qwen3 GGUF: the logits of the numpy reference (reference.py)."""
import numpy as np
import pytest

from reference import forward
from tiny_models import folder_logits, native_logits, reference_logits, weights, write_gguf

CFG = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 49152, "hidden_size": 64,
       "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
       "head_dim": 32, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 256,
       "tie_word_embeddings": False, "attention_bias": False, "bos_token_id": 1, "eos_token_id": 2}


@pytest.fixture(scope="module")
def reference():
    w = weights(CFG, 5, qk_norm=True)
    return w, reference_logits(forward, CFG, w, "qk_norm", True)


@pytest.mark.parametrize("layout", ["optimum", "genai"])
def test_a_qwen3_checkpoint_folder(reference, tiny_qwen2, tmp_path, layout):
    w, want = reference
    got = folder_logits(CFG, w, tiny_qwen2 / "tokenizer.json", tmp_path, layout)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_a_qwen3_gguf(reference, gguf, tmp_path):
    w, want = reference
    path = write_gguf(tmp_path / "qwen3.gguf", CFG, "qwen3", w, gguf)
    np.testing.assert_allclose(native_logits(path, tmp_path / "m"), want, atol=1e-4, rtol=0)
