"""The Rust importer's decoder (importer/src/graph.rs) for the real SmolLM2 GGUF, its weights
transcoded rather than re-quantized, against the Python importer's fp32 import of the same file:
with `--exact` (fp32 compute everywhere), logits to fp32 tolerance; as imported by default (int8
activations for the 8-bit LM head), transformers' greedy ids
(tests/fixtures/smollm2_fp32_greedy.json) and a folder no larger than 1.1× the GGUF."""
import json
import os
import subprocess

import numpy as np
import onnxruntime as ort
import pytest

from conftest import FIXTURES, REPO

TOOL = REPO / "target" / os.environ.get("INFERD_PROFILE", "debug") / "inferd-gguf-onnx"


def session(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def logits(s, ids):
    feed = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64),
            "position_ids": np.arange(len(ids), dtype=np.int64)[None]}
    for i in s.get_inputs():
        if i.name.startswith("past_key_values"):
            feed[i.name] = np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
    return s.run(["logits"], feed)[0][0]


def rust_import(gguf, models, *flags):
    if not TOOL.exists():
        pytest.fail(f"{TOOL} is missing: run `cargo build --workspace` first (make test does)")
    subprocess.run([str(TOOL), str(gguf), str(models), "smollm2", *flags], check=True, capture_output=True)
    return models / "smollm2"


@pytest.fixture(scope="module")
def rust_smollm2(gguf, tmp_path_factory):
    return rust_import(gguf, tmp_path_factory.mktemp("rust"))


@pytest.fixture(scope="module")
def rust_smollm2_exact(gguf, tmp_path_factory):
    return rust_import(gguf, tmp_path_factory.mktemp("rust-exact"), "--exact")


def test_transcoded_smollm2_matches_the_fp32_import(rust_smollm2_exact, smollm2_fp32):
    ours, ref = session(rust_smollm2_exact / "model.onnx"), session(smollm2_fp32 / "model.onnx")
    fx = json.loads((FIXTURES / "smollm2_fp32_greedy.json").read_text())
    for case in fx["cases"]:
        a, b = logits(ours, case["prompt_ids"]), logits(ref, case["prompt_ids"])
        # The same weights (GGUF's, de-quantized vs transcoded, equal to the bit) through
        # different kernels: the affine formats' minimums are a separate product, so sums are
        # rounded in another order.
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max(), err_msg=case["prompt"])


def test_transcoded_smollm2_gives_transformers_greedy_ids(rust_smollm2):
    s = session(rust_smollm2 / "model.onnx")
    fx = json.loads((FIXTURES / "smollm2_fp32_greedy.json").read_text())
    for case in fx["cases"]:
        ids, new = list(case["prompt_ids"]), []
        while len(new) < len(case["new_ids"]):
            new.append(int(np.argmax(logits(s, ids + new)[-1])))
            if new[-1] == 2:
                break
        assert new == case["new_ids"], case["prompt"]


def test_the_folder_stays_near_the_gguf_size(rust_smollm2, gguf):
    size = sum(f.stat().st_size for f in rust_smollm2.iterdir())
    # Scales and minimums stay fp16 on disk, as in the GGUF; the Q8_0 table shared with the LM
    # head keeps fp32 scales (GatherBlockQuantized computes in its scales' type), and
    # tokenizer.json is 3.5 MB: 1.07× in all.
    assert size <= 1.1 * gguf.stat().st_size, size / gguf.stat().st_size
