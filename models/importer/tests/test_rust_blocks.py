"""The Rust importer's GGUF block transcoding (importer/src/blocks.rs) against the `gguf` package's
own de-quantization, the independent reference, tensor by tensor; and its MatMulNBits
initializers, written by the Rust ONNX writer (importer/src/onnx.rs) as a one-node model with
external data, run through ONNX Runtime's MatMulNBits kernel, which must give the same weights.

Test files hold random blocks of every format (`gguf` cannot quantize to K-quants, but any bytes
with finite fp16 scales are a valid block) and, from the real SmolLM2 GGUF, Q4_1 and Q8_0
tensors."""
import json
import os
import subprocess

import numpy as np
import onnxruntime as ort
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFWriter
from gguf.quants import dequantize
import onnx

from conftest import REPO

TOOL = REPO / "target" / os.environ.get("INFERD_PROFILE", "debug") / "inferd-gguf-blocks"

# Where each format's fp16 scales sit in a block (byte offsets), and the (weights, bytes) of it.
FORMATS = {
    Q.Q4_0: ([0], 32, 18), Q.Q4_1: ([0, 2], 32, 20), Q.Q5_0: ([0], 32, 22), Q.Q5_1: ([0, 2], 32, 24),
    Q.Q8_0: ([0], 32, 34), Q.Q2_K: ([80, 82], 256, 84), Q.Q3_K: ([108], 256, 110),
    Q.Q4_K: ([0, 2], 256, 144), Q.Q5_K: ([0, 2], 256, 176), Q.Q6_K: ([208], 256, 210),
}
ROWS, K = 6, 512


def random_blocks(qtype, rng):
    offsets, per_block, nbytes = FORMATS[qtype]
    blocks = rng.integers(0, 256, (ROWS * K // per_block, nbytes), dtype=np.uint8)
    for i, at in enumerate(offsets):
        # d in ±[0.001, 0.1]; a min (the second scale) that is positive, as quantizers write it.
        scale = rng.uniform(0.001, 0.1, len(blocks)) * (rng.choice([-1, 1], len(blocks)) if i == 0 else 1)
        scale[::7] = 0  # every 7th block has a zero scale: a constant block
        blocks[:, at:at + 2] = scale.astype(np.float16).view(np.uint8).reshape(-1, 2)
    return blocks.reshape(ROWS, -1)


@pytest.fixture(scope="module")
def tool():
    if not TOOL.exists():
        pytest.fail(f"{TOOL} is missing: run `cargo build --workspace` first (make test does)")
    return TOOL


@pytest.fixture(scope="module")
def random_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "blocks.gguf"
    rng = np.random.default_rng(7)
    w = GGUFWriter(str(path), "llama")
    raw = {}
    for qtype in FORMATS:
        raw[qtype] = random_blocks(qtype, rng)
        w.add_tensor(qtype.name, raw[qtype], raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, raw


def transcoded(tool, gguf_path, out, names):
    subprocess.run([str(tool), str(gguf_path), str(out), *names], check=True, capture_output=True)
    return {n: out / n for n in names}


def matmul_nbits(folder):
    """The weights [N, K] as ONNX Runtime sees them, through the model the Rust ONNX writer wrote
    for the weight (identity × Wᵀ: MatMulNBits, plus the block minimums' term for affine
    formats, initializers in external data)."""
    onnx.checker.check_model(str(folder / "model.onnx"))
    s = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    k = json.loads((folder / "layout.json").read_text())["k"]
    return s.run(None, {"A": np.eye(k, dtype=np.float32)})[0].T


def check(ours, want, qtype):
    # (q − zero)·scale, or q·scale + min for the affine formats: GGUF's own formulas, in fp32.
    np.testing.assert_array_equal(ours, want, err_msg=qtype.name)


@pytest.mark.parametrize("qtype", list(FORMATS), ids=lambda q: q.name)
def test_every_block_format_transcodes_to_what_gguf_dequantizes(tool, random_gguf, tmp_path, qtype):
    path, raw = random_gguf
    folder = transcoded(tool, path, tmp_path, [qtype.name])[qtype.name]
    want = dequantize(raw[qtype], qtype).reshape(ROWS, K)
    check(np.load(folder / "weights.npy"), want, qtype)


@pytest.mark.parametrize("qtype", list(FORMATS), ids=lambda q: q.name)
def test_onnxruntime_matmulnbits_reads_the_initializers_as_gguf_does(tool, random_gguf, tmp_path, qtype):
    path, raw = random_gguf
    folder = transcoded(tool, path, tmp_path, [qtype.name])[qtype.name]
    want = dequantize(raw[qtype], qtype).reshape(ROWS, K)
    # Exact for every format, 8-bit ones included: they run as two 4-bit halves in fp32
    # (importer/src/blocks.rs, Blocks::split), whose sum is the weight to the bit.
    check(matmul_nbits(folder), want, qtype)


def test_real_smollm2_tensors(tool, gguf, tmp_path):
    reader = GGUFReader(str(gguf))
    picks = {}
    for t in reader.tensors:
        if t.tensor_type in FORMATS and t.tensor_type not in picks.values() and len(picks) < 3:
            picks[t.name] = t.tensor_type
    assert picks, "the SmolLM2 GGUF has no block-quantized tensors?"
    folders = transcoded(tool, gguf, tmp_path, list(picks))
    for t in reader.tensors:
        if t.name in picks:
            want = dequantize(t.data, t.tensor_type)
            got = np.load(folders[t.name] / "weights.npy")
            check(got, want.reshape(got.shape), t.tensor_type)
