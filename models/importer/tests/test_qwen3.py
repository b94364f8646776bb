"""Qwen3 (q and k RMS-normalized per head before the rotary embedding; an explicit head_dim that
is not hidden / heads; no q/k/v bias), imported natively from a tiny random checkpoint in both
formats, a checkpoint folder and a qwen3 GGUF: the logits of the numpy reference (reference.py)."""
import json
import shutil
import subprocess
import types

import gguf as gg
import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import REPO
from decode import Decoder
from reference import forward

CFG = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 49152, "hidden_size": 64,
       "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
       "head_dim": 32, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 256,
       "tie_word_embeddings": False, "attention_bias": False, "bos_token_id": 1, "eos_token_id": 2}
IDS = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47]
GGUF_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
              "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm", "mlp.gate_proj": "ffn_gate",
              "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def weights():
    rng = np.random.default_rng(5)
    h, hd, f, v = CFG["hidden_size"], CFG["head_dim"], CFG["intermediate_size"], CFG["vocab_size"]
    q, kv = CFG["num_attention_heads"] * hd, CFG["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,), "lm_head.weight": (v, h)}
    for i in range(CFG["num_hidden_layers"]):
        p = f"model.layers.{i}"
        shapes |= {f"{p}.input_layernorm.weight": (h,), f"{p}.post_attention_layernorm.weight": (h,),
                   f"{p}.self_attn.q_proj.weight": (q, h), f"{p}.self_attn.k_proj.weight": (kv, h),
                   f"{p}.self_attn.v_proj.weight": (kv, h), f"{p}.self_attn.o_proj.weight": (h, q),
                   f"{p}.self_attn.q_norm.weight": (hd,), f"{p}.self_attn.k_norm.weight": (hd,),
                   f"{p}.mlp.gate_proj.weight": (f, h), f"{p}.mlp.up_proj.weight": (f, h),
                   f"{p}.mlp.down_proj.weight": (h, f)}
    w = {}
    for name, shape in shapes.items():
        x = rng.standard_normal(shape).astype(np.float32)
        w[name] = (1 + 0.3 * x if name.endswith("norm.weight") else x / np.sqrt(shape[-1])).astype(np.float32)
    return w


def gguf_name(hf):
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf in fixed:
        return fixed[hf]
    _, _, i, rest = hf.split(".", 3)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{i}.{GGUF_NAMES[module]}.{kind}"


def write_gguf(path, w, tokenizer_gguf):
    """As llama.cpp's converter writes Qwen3: qwen3.* metadata, q/k rows unpermuted."""
    g = gg.GGUFWriter(str(path), "qwen3")
    for key, value in [("context_length", CFG["max_position_embeddings"]), ("embedding_length", CFG["hidden_size"]),
                       ("feed_forward_length", CFG["intermediate_size"]), ("block_count", CFG["num_hidden_layers"]),
                       ("attention.head_count", CFG["num_attention_heads"]),
                       ("attention.head_count_kv", CFG["num_key_value_heads"]),
                       ("attention.key_length", CFG["head_dim"]), ("attention.value_length", CFG["head_dim"])]:
        g.add_uint32(f"qwen3.{key}", value)
    g.add_float32("qwen3.attention.layer_norm_rms_epsilon", CFG["rms_norm_eps"])
    g.add_float32("qwen3.rope.freq_base", CFG["rope_theta"])
    r = gg.GGUFReader(str(tokenizer_gguf))
    for f in r.fields.values():
        if f.name.startswith("tokenizer."):
            sub = f.types[-1] if f.types[0] == gg.GGUFValueType.ARRAY else None
            g.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub)
    for name, x in w.items():
        g.add_tensor(gguf_name(name), x)
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


def native(source, models, *flags):
    p = subprocess.run([REPO / "target" / "debug" / "inferctl", "import", source, "--name", "m", "--precision", "fp32",
                        "--models", models, *flags], capture_output=True, text=True, env={"PATH": "/nonexistent"})
    assert p.returncode == 0, p.stderr
    d = Decoder(models / "m")
    return d.forward(np.array([IDS], np.int64), d.empty_past(), 0)[0][0]


@pytest.fixture(scope="module")
def reference():
    w = weights()
    a = types.SimpleNamespace(num_heads=4, num_kv_heads=2, head_dim=32, num_layers=2, rms_norm_eps=1e-6,
                              rope_theta=CFG["rope_theta"], attention_bias=False, tie_word_embeddings=False,
                              qk_norm=True)
    want = forward(a, w.__getitem__, np.array(IDS))
    a.qk_norm = False
    assert np.abs(want - forward(a, w.__getitem__, np.array(IDS))).max() > 1e-2, "the q/k norms must matter"
    return w, want


@pytest.mark.parametrize("layout", ["optimum", "genai"])
def test_a_qwen3_checkpoint_folder(reference, tiny_qwen2, tmp_path, layout):
    w, want = reference
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file(w, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(CFG))
    shutil.copy(tiny_qwen2 / "tokenizer.json", folder)
    got = native(folder, tmp_path / "models", "--layout", layout)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_a_qwen3_gguf(reference, gguf, tmp_path):
    w, want = reference
    write_gguf(tmp_path / "qwen3.gguf", w, gguf)
    np.testing.assert_allclose(native(tmp_path / "qwen3.gguf", tmp_path / "models"), want, atol=1e-4, rtol=0)
