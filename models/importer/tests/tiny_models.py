"""Tiny random decoders of each family, as a transformers checkpoint folder and as a GGUF file the
way llama.cpp's converter writes it, and the native importer's logits for them: for the family
tests, which compare those logits with the numpy reference (reference.py)."""
import json
import shutil
import subprocess
import types

import gguf as gg
import numpy as np
from safetensors.numpy import save_file

from conftest import REPO
from decode import Decoder

IDS = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47]
GGUF_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
              "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm", "mlp.gate_proj": "ffn_gate",
              "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
              # Phi-3's fused projections; llama.cpp names the fused gate and up `ffn_up`.
              "self_attn.qkv_proj": "attn_qkv", "mlp.gate_up_proj": "ffn_up"}


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def weights(cfg, seed, qk_norm=False):
    rng = np.random.default_rng(seed)
    h, hd, f, v = cfg["hidden_size"], head_dim(cfg), cfg["intermediate_size"], cfg["vocab_size"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,), "lm_head.weight": (v, h)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        shapes |= {f"{p}.input_layernorm.weight": (h,), f"{p}.post_attention_layernorm.weight": (h,),
                   f"{p}.self_attn.q_proj.weight": (q, h), f"{p}.self_attn.k_proj.weight": (kv, h),
                   f"{p}.self_attn.v_proj.weight": (kv, h), f"{p}.self_attn.o_proj.weight": (h, q),
                   f"{p}.mlp.gate_proj.weight": (f, h), f"{p}.mlp.up_proj.weight": (f, h),
                   f"{p}.mlp.down_proj.weight": (h, f)}
        if qk_norm:
            shapes |= {f"{p}.self_attn.q_norm.weight": (hd,), f"{p}.self_attn.k_norm.weight": (hd,)}
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


def permute(w, n_head):
    """llama.cpp's rotary row permutation of llama's q/k, which the importer undoes."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_folder(folder, cfg, w, tokenizer_json):
    folder.mkdir()
    save_file(w, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg))
    shutil.copy(tokenizer_json, folder)
    return folder


def write_gguf(path, cfg, arch, w, tokenizer_gguf, extra=(), names=None):
    """`arch`'s metadata keys from `cfg` (and `extra` ones: integers, or floats), the tokenizer
    keys of `tokenizer_gguf`; llama's q/k rows permuted as llama.cpp's converter does; tensors
    named by `names` (transformers' name → GGUF's) where given, else `gguf_name`."""
    g = gg.GGUFWriter(str(path), arch)
    hd = head_dim(cfg)
    for key, value in [("context_length", cfg["max_position_embeddings"]), ("embedding_length", cfg["hidden_size"]),
                       ("feed_forward_length", cfg["intermediate_size"]), ("block_count", cfg["num_hidden_layers"]),
                       ("attention.head_count", cfg["num_attention_heads"]),
                       ("attention.head_count_kv", cfg["num_key_value_heads"]),
                       ("attention.key_length", hd), ("attention.value_length", hd), *extra]:
        (g.add_float32 if isinstance(value, float) else g.add_uint32)(f"{arch}.{key}", value)
    g.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", cfg["rms_norm_eps"])
    g.add_float32(f"{arch}.rope.freq_base", cfg["rope_theta"])
    r = gg.GGUFReader(str(tokenizer_gguf))
    for f in r.fields.values():
        if f.name.startswith("tokenizer."):
            sub = f.types[-1] if f.types[0] == gg.GGUFValueType.ARRAY else None
            g.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub)
    for name, x in w.items():
        if arch == "llama" and name.endswith("q_proj.weight"):
            x = permute(x, cfg["num_attention_heads"])
        elif arch == "llama" and name.endswith("k_proj.weight"):
            x = permute(x, cfg["num_key_value_heads"])
        g.add_tensor((names or {}).get(name) or gguf_name(name), x)
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()
    return path


def native_logits(source, models, *flags):
    """`inferctl import` (fp32, no Python on PATH), then the logits of IDS."""
    p = subprocess.run([REPO / "target" / "debug" / "inferctl", "import", source, "--name", "m", "--precision", "fp32",
                        "--models", models, *flags], capture_output=True, text=True, env={"PATH": "/nonexistent"})
    assert p.returncode == 0, p.stderr
    d = Decoder(models / "m")
    return d.forward(np.array([IDS], np.int64), d.empty_past(), 0)[0][0]


def arch(cfg, **extra):
    """`cfg` as reference.forward's architecture, `extra` fields added or replaced (qk_norm,
    sliding_window, attention_bias, rope_scaling, partial_rotary_factor)."""
    return types.SimpleNamespace(**{
        "num_heads": cfg["num_attention_heads"], "num_kv_heads": cfg["num_key_value_heads"], "head_dim": head_dim(cfg),
        "num_layers": cfg["num_hidden_layers"], "rms_norm_eps": cfg["rms_norm_eps"], "rope_theta": cfg["rope_theta"],
        "attention_bias": False, "tie_word_embeddings": cfg["tie_word_embeddings"], **extra})


def reference_logits(forward, cfg, w, feature, on):
    """reference.forward's logits for IDS with `feature` set to `on`, checked to differ from
    those without it (so a test of the feature can fail)."""
    want = forward(arch(cfg, **{feature: on}), w.__getitem__, np.array(IDS))
    plain = forward(arch(cfg, **{feature: None}), w.__getitem__, np.array(IDS))
    assert np.abs(want - plain).max() > 1e-2, f"{feature} must change the logits"
    return want


def folder_logits(cfg, w, tokenizer_json, tmp_path, layout):
    """The native fp32 import of `w` written as a checkpoint folder, in `layout`."""
    folder = write_folder(tmp_path / "ckpt", cfg, w, tokenizer_json)
    return native_logits(folder, tmp_path / "m", "--layout", layout)
