"""The tests' K-quant encoder (kquants.py) writes blocks that the `gguf` package decodes to the
weights it was given, within each format's rounding: its packing of scales, minimums and values
is ggml's."""
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize

import kquants


@pytest.mark.parametrize("qtype,bits", [(Q.Q4_K, 4), (Q.Q6_K, 6)], ids=["Q4_K", "Q6_K"])
def test_gguf_decodes_what_the_encoder_writes(qtype, bits):
    rng = np.random.default_rng(7)
    # Rows of different ranges and offsets, so every sub-block's scale and minimum differ.
    w = (rng.standard_normal((8, 1024)) * rng.uniform(0.01, 2, (8, 1)) + rng.uniform(-1, 1, (8, 1))).astype(np.float32)
    blocks = kquants.encode(w, qtype)
    assert blocks.shape == (8, 1024 // 256 * kquants.ENCODERS[qtype][1])
    back = dequantize(blocks, qtype).reshape(w.shape)
    err = np.abs(back - w)
    # Round-to-nearest: within a step of the block's widest sub-block (2·max|w| / levels) ...
    amax = np.abs(w.reshape(-1, 256)).max(axis=1).repeat(256).reshape(w.shape)
    assert (err <= 2 * amax / (2**bits - 1)).all(), err.max()
    # ... and near the rounding error of uniform steps (a wrong packing scatters values across
    # sub-blocks: an error about the size of the weights).
    assert np.sqrt(np.mean(err**2)) < (0.12 if bits == 4 else 0.03) * np.std(w)
