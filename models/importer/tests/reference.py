"""A numpy forward pass of a Llama/Qwen2 decoder, written from the transformers modelling code and
independent of the graph builder: the reference the ONNX graph is checked against. Qwen3: q and k
RMS-normalized per head before the rotary embedding, when `arch` has `qk_norm`. Mistral: attention
within `sliding_window` positions, when `arch` has one. Rope scaling:
Llama 3.1's "llama3" (transformers' `_compute_llama3_parameters`, from the config's own numbers),
and Phi-3's "longrope" (`_compute_longrope_parameters` with its dynamic update: the long factors
once the sequence is longer than the original context; cos and sin scaled by the attention
factor), when `arch` has a `rope_scaling` dict. A partial rotary embedding (Phi-4-mini) when
`arch` has `partial_rotary_factor`: only the leading dimensions of each head rotate."""
import math

import numpy as np


def inv_freq(hd, theta, scaling=None, seq_len=0):
    inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    if not scaling:
        return inv
    if scaling["rope_type"] == "longrope":
        long = seq_len > scaling["original_max_position_embeddings"]
        return inv / np.asarray(scaling["long_factor" if long else "short_factor"])
    assert scaling["rope_type"] == "llama3", scaling
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    smooth = (old / wavelen - low) / (high - low)
    blended = (1 - smooth) * inv / factor + smooth * inv
    return np.where(wavelen < old / high, inv, np.where(wavelen > old / low, inv / factor, blended))


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope(x, pos, inv, scale=1.0):
    """The rotary embedding on the leading 2·len(inv) dimensions of x; the rest pass."""
    rd = 2 * len(inv)
    x, rest = x[..., :rd], x[..., rd:]
    ang = pos[:, None] * inv[None]  # [S, rd/2]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    x1, x2 = x[..., : rd // 2], x[..., rd // 2 :]
    return np.concatenate([(x * cos + np.concatenate([-x2, x1], -1) * sin) * scale, rest], -1)


def forward(arch, w, ids):
    """Logits [S, vocab] for one sequence of token ids, float64 throughout."""
    a = arch
    g = lambda n: w(n).astype(np.float64)
    S = len(ids)
    pos = np.arange(S, dtype=np.float64)
    x = g("model.embed_tokens.weight")[ids]
    causal = np.tril(np.ones((S, S), bool))
    window = getattr(a, "sliding_window", None)
    if window:  # Mistral: each position sees itself and the window − 1 before it
        causal &= np.subtract.outer(np.arange(S), np.arange(S)) < window
    rep = a.num_heads // a.num_kv_heads
    for i in range(a.num_layers):
        p = f"model.layers.{i}"
        h = rms_norm(x, g(f"{p}.input_layernorm.weight"), a.rms_norm_eps)
        proj = lambda n: h @ g(f"{p}.self_attn.{n}.weight").T + (g(f"{p}.self_attn.{n}.bias") if a.attention_bias else 0)
        q = proj("q_proj").reshape(S, a.num_heads, a.head_dim).transpose(1, 0, 2)
        k = proj("k_proj").reshape(S, a.num_kv_heads, a.head_dim).transpose(1, 0, 2)
        v = proj("v_proj").reshape(S, a.num_kv_heads, a.head_dim).transpose(1, 0, 2)
        if getattr(a, "qk_norm", False):
            q = rms_norm(q, g(f"{p}.self_attn.q_norm.weight"), a.rms_norm_eps)
            k = rms_norm(k, g(f"{p}.self_attn.k_norm.weight"), a.rms_norm_eps)
        scaling = getattr(a, "rope_scaling", None)
        rd = int(a.head_dim * (getattr(a, "partial_rotary_factor", None) or 1.0))
        inv = inv_freq(rd, a.rope_theta, scaling, seq_len=S)
        scale = scaling.get("attention_factor", 1.0) if scaling else 1.0
        q, k = rope(q, pos, inv, scale), rope(k, pos, inv, scale)
        k, v = np.repeat(k, rep, 0), np.repeat(v, rep, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(a.head_dim)
        s = np.where(causal, s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(S, -1)
        x = x + ctx @ g(f"{p}.self_attn.o_proj.weight").T
        h = rms_norm(x, g(f"{p}.post_attention_layernorm.weight"), a.rms_norm_eps)
        gate, up = h @ g(f"{p}.mlp.gate_proj.weight").T, h @ g(f"{p}.mlp.up_proj.weight").T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ g(f"{p}.mlp.down_proj.weight").T
    x = rms_norm(x, g("model.norm.weight"), a.rms_norm_eps)
    head = "model.embed_tokens.weight" if a.tie_word_embeddings else "lm_head.weight"
    return x @ g(head).T


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def gemma2_forward(cfg, w, ids):
    """Gemma 2, from transformers' modeling_gemma2 and its config: embeddings scaled by
    √hidden; RMSNorm weights stored as w and applied as 1 + w; a norm on each block's output as
    well as its input; queries scaled by query_pre_attn_scalar^−½; attention scores and final
    logits soft-capped (cap · tanh(x / cap)); even layers attend within the sliding window; a
    GELU (tanh) gated MLP; the head tied to the embeddings."""
    g = lambda n: np.asarray(w[n], np.float64)
    eps, hd = cfg["rms_norm_eps"], cfg["head_dim"]
    nh, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    norm = lambda x, name: rms_norm(x, 1 + g(name), eps)
    cap = lambda x, c: c * np.tanh(x / c) if c else x
    S = len(ids)
    pos = np.arange(S, dtype=np.float64)
    inv = inv_freq(hd, cfg["rope_theta"])
    causal = np.tril(np.ones((S, S), bool))
    local = causal & (np.subtract.outer(np.arange(S), np.arange(S)) < cfg["sliding_window"])
    x = g("model.embed_tokens.weight")[ids] * np.sqrt(cfg["hidden_size"])
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        h = norm(x, f"{p}.input_layernorm.weight")
        heads = lambda n, name: (h @ g(f"{p}.self_attn.{name}.weight").T).reshape(S, n, hd).transpose(1, 0, 2)
        q, k, v = rope(heads(nh, "q_proj"), pos, inv), rope(heads(kv, "k_proj"), pos, inv), heads(kv, "v_proj")
        k, v = np.repeat(k, nh // kv, 0), np.repeat(v, nh // kv, 0)
        s = cap(q @ k.transpose(0, 2, 1) * cfg["query_pre_attn_scalar"] ** -0.5, cfg["attn_logit_softcapping"])
        s = np.where(local if i % 2 == 0 else causal, s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        h = (s @ v).transpose(1, 0, 2).reshape(S, -1) @ g(f"{p}.self_attn.o_proj.weight").T
        x = x + norm(h, f"{p}.post_attention_layernorm.weight")
        h = norm(x, f"{p}.pre_feedforward_layernorm.weight")
        act = gelu_tanh(h @ g(f"{p}.mlp.gate_proj.weight").T) * (h @ g(f"{p}.mlp.up_proj.weight").T)
        x = x + norm(act @ g(f"{p}.mlp.down_proj.weight").T, f"{p}.post_feedforward_layernorm.weight")
    x = norm(x, "model.norm.weight")
    return cap(x @ g("model.embed_tokens.weight").T, cfg["final_logit_softcapping"])
