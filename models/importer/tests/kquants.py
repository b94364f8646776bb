"""A small K-quant encoder for tests: the `gguf` package de-quantizes K-quants but cannot write
them. Plain round-to-nearest with each block's range (not llama.cpp's searched scales): the test
files need valid blocks of real weights, not the best ones. The block layouts are ggml's
(ggml-common.h), and `test_kquants.py` checks that `gguf` decodes what this writes."""
import numpy as np
from gguf import GGMLQuantizationType as Q

QK_K = 256


def _f16(x):
    return np.asarray(x, np.float32).astype(np.float16)


def _div(a, b):
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def q4_k(x):
    """[n, 256] floats → [n, 144] Q4_K blocks: d, dmin (fp16), 6-bit scales and minimums of the
    eight sub-blocks of 32 (12 bytes), 4-bit values; w = d·sc·q − dmin·m. Scales and minimums
    round up, so no value is clipped."""
    sub = x.reshape(-1, 8, 32)
    minimum = -np.minimum(sub.min(axis=2), 0)
    dmin = _f16(minimum.max(axis=1) / 62.5).astype(np.float32)[:, None]
    m = np.clip(np.ceil(_div(minimum, dmin)), 0, 63)
    shifted = sub + (dmin * m)[:, :, None]
    scale = shifted.max(axis=2) / 15
    d = _f16(scale.max(axis=1) / 62.5).astype(np.float32)[:, None]
    sc = np.clip(np.ceil(_div(scale, d)), 0, 63)
    q = np.clip(np.rint(_div(shifted, (d * sc)[:, :, None])), 0, 15).astype(np.uint8)
    sc, m = sc.astype(np.uint8), m.astype(np.uint8)
    scales = np.concatenate([
        sc[:, :4] | ((sc[:, 4:] >> 4) << 6),
        m[:, :4] | ((m[:, 4:] >> 4) << 6),
        (sc[:, 4:] & 0x0F) | ((m[:, 4:] & 0x0F) << 4),
    ], axis=1)
    qs = (q[:, 0::2] | (q[:, 1::2] << 4)).reshape(-1, 128)
    return np.concatenate([_bytes(d), _bytes(dmin), scales, qs], axis=1)


def q6_k(x):
    """[n, 256] floats → [n, 210] Q6_K blocks: 6-bit values (low nibbles, then two high bits
    each), int8 scales of the sixteen sub-blocks of 16, d (fp16); w = d·sc·(q − 32)."""
    sub = x.reshape(-1, 16, 16)
    scale = np.abs(sub).max(axis=2) / 31
    d = _f16(scale.max(axis=1) / 126).astype(np.float32)[:, None]
    sc = np.clip(np.ceil(_div(scale, d)), 0, 127)
    q = np.clip(np.rint(_div(sub, (d * sc)[:, :, None])), -32, 31) + 32
    q = q.astype(np.uint8).reshape(-1, 2, 128)
    ql = (q[:, :, :64] & 0x0F) | ((q[:, :, 64:] & 0x0F) << 4)
    h = (q >> 4).reshape(-1, 2, 4, 32)
    qh = h[:, :, 0] | (h[:, :, 1] << 2) | (h[:, :, 2] << 4) | (h[:, :, 3] << 6)
    scales = sc.astype(np.int8).view(np.uint8)
    return np.concatenate([ql.reshape(-1, 128), qh.reshape(-1, 64), scales, _bytes(d)], axis=1)


def _bytes(d):
    """Per-block fp32 values that are exactly fp16, as their two bytes."""
    return d.astype(np.float16).view(np.uint8).reshape(-1, 2)


ENCODERS = {Q.Q4_K: (q4_k, 144), Q.Q6_K: (q6_k, 210)}


def encode(w, qtype):
    """A float matrix [rows, cols] (cols a multiple of 256) as `qtype` blocks, [rows, cols / 256 × size] bytes."""
    fn, size = ENCODERS[qtype]
    rows, cols = w.shape
    return fn(np.ascontiguousarray(w, np.float32).reshape(-1, QK_K)).reshape(rows, cols // QK_K * size)
