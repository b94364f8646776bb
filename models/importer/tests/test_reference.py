"""Logits of the imported graph against the independent numpy forward pass."""
import numpy as np

from conftest import CONFIGS, GGUF
from decode import Decoder
from reference import forward


def test_tiny_qwen2_logits_match_numpy_reference(tiny_qwen2):
    from inferd_import.sources.gguf_file import GgufSource
    from inferd_import.sources.random_init import RandomSource

    src = RandomSource(CONFIGS / "tiny-qwen2.json", GgufSource(GGUF), 0)
    ids = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47]
    want = forward(src.arch, src.tensor, np.array(ids))
    got, _ = Decoder(tiny_qwen2).forward(np.array([ids], np.int64), Decoder(tiny_qwen2).empty_past(), 0)
    np.testing.assert_allclose(got[0], want, atol=1e-4, rtol=0)
    assert src.arch.attention_bias and src.arch.num_kv_heads < src.arch.num_heads  # q/k/v bias and GQA exercised
