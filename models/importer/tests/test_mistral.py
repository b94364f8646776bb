"""Mistral (Llama's layers, attention limited to a sliding window of the last `sliding_window`
positions), imported natively from a tiny random checkpoint folder (MistralForCausalLM) and a
llama GGUF with `llama.attention.sliding_window`, in both layouts: the logits of the numpy
reference (reference.py), with a window shorter than the prompt so that it matters."""
import numpy as np
import pytest

from reference import forward
from tiny_models import folder_logits, native_logits, reference_logits, weights, write_gguf

WINDOW = 4
CFG = {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": 49152, "hidden_size": 64,
       "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
       "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "max_position_embeddings": 256, "sliding_window": WINDOW,
       "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}


@pytest.fixture(scope="module")
def reference():
    w = weights(CFG, 9)
    return w, reference_logits(forward, CFG, w, "sliding_window", WINDOW)


@pytest.mark.parametrize("layout", ["optimum", "genai"])
def test_a_mistral_checkpoint_folder(reference, tiny_qwen2, tmp_path, layout):
    w, want = reference
    got = folder_logits(CFG, w, tiny_qwen2 / "tokenizer.json", tmp_path, layout)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("layout", ["optimum", "genai"])
def test_a_mistral_gguf_with_its_window(reference, gguf, tmp_path, layout):
    w, want = reference
    path = write_gguf(tmp_path / "mistral.gguf", CFG, "llama", w, gguf, [("attention.sliding_window", WINDOW)])
    np.testing.assert_allclose(native_logits(path, tmp_path / "m", "--layout", layout), want, atol=1e-4, rtol=0)
