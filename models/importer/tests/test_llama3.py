"""Llama 3.1's rope scaling ("llama3"), imported natively from both sources: a tiny Llama as a
GGUF (the divisors in `rope_freqs.weight`, as llama.cpp's converter writes them) and as a
checkpoint folder (`rope_scaling` in config.json). Both give the logits of the numpy reference
(reference.py), which computes the scaling from the config's own numbers."""
import json
import math
import shutil
import subprocess
import types

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import REPO
from decode import Decoder
from reference import forward
from test_sentencepiece import ARCH, spm, tiny_llama, weights, write_gguf  # noqa: F401 (fixtures)

THETA = 500000.0
# Small enough that a short prompt reaches every band: with head_dim 16, the shortest wavelength
# (2π) is kept, the next (≈ 32) blended, and the rest divided by the factor.
SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 64}
IDS = list(range(3, 43))


def converter_divisors():
    """`rope_freqs.weight` as llama.cpp's convert_hf_to_gguf.py (LlamaModel) computes it."""
    hd = ARCH["hidden"] // ARCH["heads"]
    freqs = 1.0 / THETA ** (np.arange(0, hd, 2, dtype=np.float32) / hd)
    old, low, high, factor = (SCALING[k] for k in ("original_max_position_embeddings", "low_freq_factor",
                                                     "high_freq_factor", "factor"))
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < old / high:
            out.append(1)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, np.float32)


def arch(scaling):
    hd = ARCH["hidden"] // ARCH["heads"]
    return types.SimpleNamespace(num_heads=ARCH["heads"], num_kv_heads=ARCH["kv_heads"], head_dim=hd,
                                 num_layers=ARCH["layers"], rms_norm_eps=1e-5, rope_theta=THETA,
                                 attention_bias=False, tie_word_embeddings=False, rope_scaling=scaling)


def native(source, models):
    p = subprocess.run([REPO / "target" / "debug" / "inferctl", "import", source, "--name", "m", "--precision", "fp32",
                        "--models", models], capture_output=True, text=True, env={"PATH": "/nonexistent"})
    assert p.returncode == 0, p.stderr
    d = Decoder(models / "m")
    return d.forward(np.array([IDS], np.int64), d.empty_past(), 0)[0][0]


@pytest.fixture(scope="module")
def reference(spm):
    w = weights(spm)
    want = forward(arch(SCALING), w.__getitem__, np.array(IDS))
    plain = forward(arch(None), w.__getitem__, np.array(IDS))
    assert np.abs(want - plain).max() > 100 * 1e-4, "the scaling must change these logits"
    return w, want


def test_a_llama3_gguf_with_rope_freqs(spm, reference, tmp_path):
    w, want = reference
    path = tmp_path / "llama3.gguf"
    write_gguf(path, spm, w, rope_base=THETA, rope_freqs=converter_divisors())
    np.testing.assert_allclose(native(path, tmp_path / "models"), want, atol=1e-4, rtol=0)


def test_a_llama3_checkpoint_folder_with_rope_scaling(spm, tiny_llama, reference, tmp_path):
    w, want = reference
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file(w, str(folder / "model.safetensors"))
    shutil.copy(tiny_llama[0] / "tokenizer.json", folder)
    hd = ARCH["hidden"] // ARCH["heads"]
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": spm.vocab_size(),
        "hidden_size": ARCH["hidden"], "intermediate_size": ARCH["ffn"], "num_hidden_layers": ARCH["layers"],
        "num_attention_heads": ARCH["heads"], "num_key_value_heads": ARCH["kv_heads"], "head_dim": hd,
        "rms_norm_eps": 1e-5, "rope_theta": THETA, "rope_scaling": SCALING, "max_position_embeddings": 512,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    }))
    np.testing.assert_allclose(native(folder, tmp_path / "models"), want, atol=1e-4, rtol=0)


def native_fails(source, models, *flags):
    """`inferctl import` of `source`, which must fail with exit status 2; its message."""
    p = subprocess.run([REPO / "target" / "debug" / "inferctl", "import", source, "--name", "m", "--models", models,
                        *flags],
                       capture_output=True, text=True, env={"PATH": "/nonexistent"})
    assert p.returncode == 2, p.stderr
    return p.stderr


def test_other_rope_scaling_is_refused_by_name(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file({"model.norm.weight": np.ones(ARCH["hidden"], np.float32)}, str(folder / "model.safetensors"))
    cfg = {"architectures": ["LlamaForCausalLM"], "vocab_size": 8, "hidden_size": 64, "intermediate_size": 8,
           "num_hidden_layers": 1, "num_attention_heads": 4, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}
    (folder / "config.json").write_text(json.dumps(cfg))
    err = native_fails(folder, tmp_path / "m")
    assert "yarn" in err and "llama3" in err, err


@pytest.mark.parametrize("cls,nearest", [("Gemma3ForCausalLM", "gemma2"), ("Qwen2MoeForCausalLM", "qwen2"),
                                         ("MixtralForCausalLM", "mistral"), ("GPTNeoXForCausalLM", "llama")])
def test_another_architecture_is_refused_naming_the_nearest(tmp_path, cls, nearest):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file({"model.norm.weight": np.ones(ARCH["hidden"], np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architectures": [cls], "vocab_size": 8, "hidden_size": 64}))
    err = native_fails(folder, tmp_path / "m")
    assert f'"{cls}"' in err and f"the nearest supported one is {nearest}" in err, err
