"""The native importer (`inferctl import`, importer/) against the Python importer, the reference:

- the real SmolLM2 GGUF, its weights transcoded rather than re-quantized: the logits of the
  Python importer's fp32 import of the same file to fp32 tolerance (every product runs in fp32,
  the Q8_0 table and LM head as two 4-bit halves), transformers' greedy ids
  (tests/fixtures/smollm2_fp32_greedy.json), a folder no larger than 1.1× the GGUF; and at fp32;
- a K-quant file (Q4_K and Q6_K, written from SmolLM2's weights by the tests' encoder,
  kquants.py): the logits and greedy text of the Python importer's fp32 import of it, which
  de-quantizes with `gguf` itself;
- the Qwen2 path (q/k/v bias, grouped-query attention, an untied head): tiny-qwen2's random
  weights as a GGUF, and as sharded checkpoint folders (F32, BF16) at fp32, fp16 and int4, in
  both layouts: the Python importer's logits for the same weights and precision.
"""
import json
import subprocess

import gguf as gg
import numpy as np
import onnxruntime as ort
import pytest

import kquants
from conftest import CONFIGS, FIXTURES, REPO, cached_import, run_import, tiny_qwen2_source
from decode import Decoder
from test_sources import tiny_hf_folder
from tiny_models import write_gguf

INFERCTL = REPO / "target" / "debug" / "inferctl"


def session(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def logits(s, ids):
    feed = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64),
            "position_ids": np.arange(len(ids), dtype=np.int64)[None]}
    for i in s.get_inputs():
        if i.name.startswith("past_key_values"):
            dtype = np.float16 if i.type == "tensor(float16)" else np.float32
            feed[i.name] = np.zeros((1, i.shape[1], 0, i.shape[3]), dtype)
    return s.run(["logits"], feed)[0][0]


def greedy(s, prompt_ids, n):
    ids, new = list(prompt_ids), []
    while len(new) < n:
        new.append(int(np.argmax(logits(s, ids + new)[-1])))
        if new[-1] == 2:
            break
    return new


def rust_import(source, models, *flags):
    """`inferctl import` of a GGUF file or a checkpoint folder, natively (no Python on PATH)."""
    if not INFERCTL.exists():
        pytest.fail(f"{INFERCTL} is missing: run `cargo build --workspace` first (make test does)")
    p = subprocess.run([str(INFERCTL), "import", str(source), "--name", "smollm2", "--models", str(models), *flags],
                       capture_output=True, text=True, env={"PATH": "/nonexistent", "HOME": str(models)})
    assert p.returncode == 0, p.stderr
    return models / "smollm2"


def assert_same_logits(ours, ref):
    fx = json.loads((FIXTURES / "smollm2_fp32_greedy.json").read_text())
    for case in fx["cases"]:
        a, b = logits(ours, case["prompt_ids"]), logits(ref, case["prompt_ids"])
        # The same weights (GGUF's, de-quantized vs transcoded, equal to the bit) through
        # different kernels: the affine formats' minimums are a separate product, so sums are
        # rounded in another order.
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max(), err_msg=case["prompt"])


@pytest.fixture(scope="module")
def rust_smollm2(gguf, tmp_path_factory):
    return rust_import(gguf, tmp_path_factory.mktemp("rust"))


def test_transcoded_smollm2_matches_the_fp32_import(rust_smollm2, smollm2_fp32):
    assert_same_logits(session(rust_smollm2 / "model.onnx"), session(smollm2_fp32 / "model.onnx"))


def test_transcoded_smollm2_gives_transformers_greedy_ids(rust_smollm2):
    s = session(rust_smollm2 / "model.onnx")
    fx = json.loads((FIXTURES / "smollm2_fp32_greedy.json").read_text())
    for case in fx["cases"]:
        assert greedy(s, case["prompt_ids"], len(case["new_ids"])) == case["new_ids"], case["prompt"]


def test_the_folder_stays_near_the_gguf_size(rust_smollm2, gguf):
    size = sum(f.stat().st_size for f in rust_smollm2.iterdir())
    # Scales and minimums stay fp16 on disk, as in the GGUF (the Q8_0 table's two halves have
    # a scale each), and tokenizer.json is 3.5 MB.
    assert size <= 1.1 * gguf.stat().st_size, size / gguf.stat().st_size


def k_quant_copy(src, dst):
    """SmolLM2 as llama.cpp's Q4_K_M would quantize it: every weight whose rows are whole
    256-value blocks becomes Q4_K, or Q6_K for ffn_down in every other layer (Q4_K_M's mix);
    the rest (576-wide rows) keep their Q4_1/Q8_0 blocks, as llama.cpp falls back for them, but
    attn_v in every other layer, which Q4_K_M wants at Q6_K, takes its fallback, Q8_0 (so q, k
    and v differ in format there and the importer cannot merge them)."""
    r = gg.GGUFReader(str(src))
    w = gg.GGUFWriter(str(dst), r.fields["general.architecture"].contents())
    for f in r.fields.values():
        if f.name == "general.architecture" or f.name.startswith("GGUF."):
            continue
        sub = f.types[-1] if f.types[0] == gg.GGUFValueType.ARRAY else None
        w.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub)
    kinds = set()
    for t in r.tensors:
        cols = int(t.shape[0])
        if len(t.shape) == 2 and cols % kquants.QK_K == 0:
            layer = int(t.name.split(".")[1]) if t.name.startswith("blk.") else 0
            q = gg.GGMLQuantizationType.Q6_K if "ffn_down" in t.name and layer % 2 == 0 else gg.GGMLQuantizationType.Q4_K
            weights = gg.quants.dequantize(t.data, t.tensor_type).reshape(-1, cols)
            data = kquants.encode(weights, q)
            w.add_tensor(t.name, data, raw_shape=data.shape, raw_dtype=q)
            kinds.add(q)
        elif "attn_v" in t.name and int(t.name.split(".")[1]) % 2 == 0:
            weights = gg.quants.dequantize(t.data, t.tensor_type).reshape(-1, cols)
            data = gg.quants.quantize(weights, gg.GGMLQuantizationType.Q8_0)
            w.add_tensor(t.name, data, raw_shape=data.shape, raw_dtype=gg.GGMLQuantizationType.Q8_0)
            kinds.add(gg.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert kinds == {gg.GGMLQuantizationType.Q4_K, gg.GGMLQuantizationType.Q6_K, gg.GGMLQuantizationType.Q8_0}
    return dst


@pytest.fixture(scope="module")
def k_quant_gguf(gguf, tmp_path_factory):
    return k_quant_copy(gguf, tmp_path_factory.mktemp("kquant") / "SmolLM2-135M-Instruct.Q4_K_M.gguf")


def test_a_k_quant_gguf_gives_the_greedy_text_of_its_fp32_import(k_quant_gguf, tmp_path_factory):
    ours = session(rust_import(k_quant_gguf, tmp_path_factory.mktemp("rust-kquant")) / "model.onnx")
    ref = session(cached_import("smollm2-q4km-fp32", [k_quant_gguf], "fp32") / "model.onnx")
    assert_same_logits(ours, ref)
    fx = json.loads((FIXTURES / "smollm2_fp32_greedy.json").read_text())
    for case in fx["cases"]:
        n = len(case["new_ids"])
        assert greedy(ours, case["prompt_ids"], n) == greedy(ref, case["prompt_ids"], n), case["prompt"]


def tiny_qwen2_gguf(src_gguf, tiny_qwen2, path):
    """tiny-qwen2's weights as a qwen2 GGUF (F32, no rotary permutation: llama.cpp permutes only
    llama's q/k), with SmolLM2's tokenizer, which tiny-qwen2 was imported with."""
    cfg = json.loads((CONFIGS / "tiny-qwen2.json").read_text())
    src = tiny_qwen2_source(tiny_qwen2)
    names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        names += [f"{p}.input_layernorm.weight", f"{p}.post_attention_layernorm.weight"]
        names += [f"{p}.self_attn.{x}_proj.weight" for x in "qkvo"] + [f"{p}.self_attn.{x}_proj.bias" for x in "qkv"]
        names += [f"{p}.mlp.{x}_proj.weight" for x in ("gate", "up", "down")]
    w = {n: np.ascontiguousarray(src.tensor(n), np.float32) for n in names}
    return write_gguf(path, cfg, "qwen2", w, src_gguf)


def test_tiny_qwen2_as_gguf_gives_the_python_importers_logits(gguf, tiny_qwen2, tmp_path):
    path = tiny_qwen2_gguf(gguf, tiny_qwen2, tmp_path / "tiny-qwen2.gguf")
    ours = session(rust_import(path, tmp_path / "models") / "model.onnx")
    assert_same_logits(ours, session(tiny_qwen2 / "model.onnx"))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_checkpoint_folder_imports_natively_as_the_python_importer_does(gguf, tiny_qwen2, tmp_path, dtype):
    """tiny-qwen2's random weights as a sharded safetensors folder (F32, or BF16 as most
    checkpoints are): the native fp32 import's logits are the Python importer's."""
    import ml_dtypes

    folder = tiny_hf_folder(tmp_path, gguf, tiny_qwen2, dtype=np.dtype(getattr(ml_dtypes, dtype, dtype)))
    ours = session(rust_import(folder, tmp_path / "rust", "--precision", "fp32") / "model.onnx")
    run_import([folder, "--name", "py", "--precision", "fp32", "--models", tmp_path / "py"])
    assert_same_logits(ours, session(tmp_path / "py" / "py" / "model.onnx"))


def test_int4_from_a_checkpoint_folder_matches_the_python_importers_int4(gguf, tiny_qwen2, tmp_path):
    """Re-quantized as onnxruntime's blockwise quantizer does (symmetric, blocks of 32, int8
    activations), with the same fp16 embedding table: the two importers' int4 give the same
    logits (equal to the last bit on 2026-12-07, where int4 and fp32 differ by 1.4)."""
    folder = tiny_hf_folder(tmp_path, gguf, tiny_qwen2)
    ours = session(rust_import(folder, tmp_path / "rust") / "model.onnx")  # int4: the default for folders
    run_import([folder, "--name", "py", "--precision", "int4", "--models", tmp_path / "py"])
    assert_same_logits(ours, session(tmp_path / "py" / "py" / "model.onnx"))


def test_a_gguf_imports_natively_at_fp32(gguf, smollm2_fp32, tmp_path):
    ours = session(rust_import(gguf, tmp_path, "--precision", "fp32") / "model.onnx")
    assert_same_logits(ours, session(smollm2_fp32 / "model.onnx"))


def test_fp16_from_a_checkpoint_folder_matches_the_python_importers_fp16(gguf, tiny_qwen2, tmp_path):
    """Weights and activations in fp16, norms and softmax in fp32, as the Python importer's fp16."""
    folder = tiny_hf_folder(tmp_path, gguf, tiny_qwen2)
    rust = rust_import(folder, tmp_path / "rust", "--precision", "fp16") / "model.onnx"
    run_import([folder, "--name", "py", "--precision", "fp16", "--models", tmp_path / "py"])
    py = tmp_path / "py" / "py" / "model.onnx"
    for path in (rust, py):  # both really fp16: their caches are
        assert {i.type for i in session(path).get_inputs() if i.name.startswith("past")} == {"tensor(float16)"}
    fx = json.loads((FIXTURES / "smollm2_fp32_greedy.json").read_text())
    ours, ref = session(rust), session(py)
    for case in fx["cases"]:
        a, b = logits(ours, case["prompt_ids"]), logits(ref, case["prompt_ids"])
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max(), err_msg=case["prompt"])


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_genai_layout_matches_the_python_importers(gguf, tiny_qwen2, tmp_path, precision):
    """onnxruntime-genai's builder layout (GroupQueryAttention with the rotary embedding inside,
    no position_ids): the same logits as the Python importer's genai layout, and the same greedy
    ids through the KV cache (GroupQueryAttention's past and present)."""
    folder = tiny_hf_folder(tmp_path, gguf, tiny_qwen2)
    flags = ["--precision", precision, "--layout", "genai"]
    ours = Decoder(rust_import(folder, tmp_path / "rust", *flags))
    run_import([folder, "--name", "py", *flags, "--models", tmp_path / "py"])
    ref = Decoder(tmp_path / "py" / "py")
    assert not ours.position_ids and ours.kv_dtype == ref.kv_dtype
    ids = np.array([[1, 4093, 198, 1780, 314]], np.int64)
    a, b = ours.forward(ids, ours.empty_past(), 0)[0], ref.forward(ids, ref.empty_past(), 0)[0]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())
    assert ours.greedy(ids[0], 8) == ref.greedy(ids[0], 8)
