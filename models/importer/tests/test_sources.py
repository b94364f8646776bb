"""Hugging Face checkpoint folders, and every kind of bad input the importer must explain."""
import json
import shutil
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import CONFIGS, run_import, tiny_qwen2_source
from decode import Decoder


def tiny_hf_folder(tmp_path, gguf, tiny_qwen2, dtype=np.float32, shards=2):
    """Writes the tiny-qwen2 random weights as a sharded checkpoint folder."""
    cfg = json.loads((CONFIGS / "tiny-qwen2.json").read_text())
    src = tiny_qwen2_source(tiny_qwen2)
    a = src.arch
    names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    for i in range(a.num_layers):
        p = f"model.layers.{i}"
        names += [f"{p}.input_layernorm.weight", f"{p}.post_attention_layernorm.weight"]
        names += [f"{p}.self_attn.{n}_proj.weight" for n in "qkvo"] + [f"{p}.self_attn.{n}_proj.bias" for n in "qkv"]
        names += [f"{p}.mlp.{n}_proj.weight" for n in ("gate", "up", "down")]
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for s in range(shards):
        part = {n: src.tensor(n).astype(dtype) for n in names[s::shards]}
        save_file(part, str(folder / f"model-{s + 1:05d}-of-{shards:05d}.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg))
    shutil.copy(tiny_qwen2 / "tokenizer.json", folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages[0]['content'] }}", "eos_token": "<|im_end|>"}))
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": [2, 0], "temperature": 0.6}))
    return folder


def logits(folder, ids):
    d = Decoder(folder)
    return d.forward(np.array([ids], np.int64), d.empty_past(), 0)[0][0]


def test_sharded_checkpoint_folder_imports_like_the_same_weights(tmp_path, gguf, tiny_qwen2):
    folder = tiny_hf_folder(tmp_path, gguf, tiny_qwen2)
    run_import([folder, "--name", "from-hf", "--precision", "fp32", "--models", tmp_path / "models"])
    out = tmp_path / "models" / "from-hf"
    ids = [1, 4093, 198, 1780, 314]
    np.testing.assert_allclose(logits(out, ids), logits(tiny_qwen2, ids), atol=1e-5)
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [2, 0] and gen["temperature"] == 0.6
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == "{{ messages[0]['content'] }}"


def test_bf16_safetensors_are_read(tmp_path):
    from inferd_import.sources.safetensors_reader import SafetensorsFile

    values = np.array([1.5, -2.0, 0.15625, 3e38], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype(np.uint16)
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}).encode()
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bf16.tobytes())
    got = SafetensorsFile(path).get("w")
    np.testing.assert_allclose(got.ravel(), values, rtol=1e-2)
    assert got.shape == (2, 2)


def test_fp16_import_runs_close_to_fp32(tmp_path, gguf, tiny_qwen2):
    run_import(["--random", CONFIGS / "tiny-qwen2.json", "--tokenizer", gguf, "--name", "t16", "--precision", "fp16", "--models", tmp_path])
    ids = [1, 4093, 198, 1780, 314]
    np.testing.assert_allclose(logits(tmp_path / "t16", ids), logits(tiny_qwen2, ids), atol=2e-2)


def expect_failure(args, needle, models):
    p = run_import([*args, "--models", models], check=False)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr, p.stderr
    # Nothing half-written is left where the daemon would look.
    assert not any(models.glob("*")) if models.exists() else True
    return p.stderr


def test_truncated_gguf(tmp_path, gguf):
    cut = tmp_path / "cut.gguf"
    with open(gguf, "rb") as f:
        cut.write_bytes(f.read(2_000_000))
    expect_failure([cut, "--name", "x"], "cannot read", tmp_path / "models")


def test_unknown_quantization_type(tmp_path):
    import gguf

    path = tmp_path / "iq2.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("token_embd.weight", np.zeros(66, np.uint8), raw_shape=(1, 66), raw_dtype=gguf.GGMLQuantizationType.IQ2_XXS)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    err = expect_failure([path, "--name", "x"], "IQ2_XXS", tmp_path / "models")
    assert "Q4_K" in err


def test_shape_mismatch_between_config_and_weights(tmp_path, gguf, tiny_qwen2):
    folder = tiny_hf_folder(tmp_path, gguf, tiny_qwen2)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["intermediate_size"] = 96
    (folder / "config.json").write_text(json.dumps(cfg))
    expect_failure([folder, "--name", "x"], "but the config implies", tmp_path / "models")


def test_unsupported_architecture(tmp_path):
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    err = expect_failure([folder, "--name", "x"], "'GPT2LMHeadModel' is not supported", tmp_path / "models")
    assert "qwen2" in err and "llama" in err


def test_existing_folder_needs_force(tmp_path, gguf):
    models = tmp_path / "models"
    args = ["--random", CONFIGS / "tiny-qwen2.json", "--tokenizer", gguf, "--name", "t", "--precision", "fp32", "--models", models]
    run_import(args)
    p = run_import(args, check=False)
    assert p.returncode == 2 and "already exists; pass --force" in p.stderr
    run_import([*args, "--force", "--seed", "1"])
    assert [x.name for x in models.iterdir()] == ["t"], "no temporary folders may remain"
