"""GGUF files: metadata to `Arch`, tensors de-quantized to float32, tokenizer rebuilt from the
`tokenizer.ggml.*` keys the way transformers converts them."""
import numpy as np

from ..arch import Arch, unsupported
from ..errors import ImportFailed
from . import Source, TokenizerFiles
from .gguf_tokenizer import tokenizer_json

# The Rust importer's formats (importer/src/blocks.rs): this importer de-quantizes them with
# `gguf` itself, which makes its fp32 import the tests' reference for them.
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")

LAYER_MAP = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
GLOBAL_MAP = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def hf_name(gguf_name):
    if gguf_name in GLOBAL_MAP:
        return GLOBAL_MAP[gguf_name]
    parts = gguf_name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[2] in LAYER_MAP:
        return f"model.layers.{parts[1]}.{LAYER_MAP[parts[2]]}"
    return None


def reverse_permute(w, n_head):
    """Undoes llama.cpp's rotary permutation of q/k rows (transformers does the same)."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


class GgufSource(Source):
    def __init__(self, path):
        try:
            import gguf
            from gguf import GGUFReader

            self._gguf = gguf
            self.reader = GGUFReader(str(path))
        except Exception as e:  # truncated or not a GGUF at all
            raise ImportFailed(f"cannot read {path} as GGUF: {e}") from None
        self.path = path
        self.meta = {}
        for key, f in self.reader.fields.items():
            try:
                self.meta[key] = f.contents()
            except Exception:
                continue
        self.tensors = {}
        for t in self.reader.tensors:
            name = hf_name(t.name)
            if name is None:
                continue
            if t.tensor_type.name not in SUPPORTED_TYPES:
                raise ImportFailed(
                    f"tensor {t.name} has quantization type {t.tensor_type.name}; supported: {', '.join(SUPPORTED_TYPES)}"
                )
            self.tensors[name] = t
        self.arch = self._arch()

    def _m(self, key, default=None):
        arch = self.meta.get("general.architecture")
        v = self.meta.get(f"{arch}.{key}", default)
        if v is None:
            raise ImportFailed(f"GGUF metadata lacks {arch}.{key}")
        return v

    def _arch(self):
        family = self.meta.get("general.architecture")
        if family not in ("llama", "qwen2"):
            raise ImportFailed(unsupported(family))
        heads = int(self._m("attention.head_count"))
        hidden = int(self._m("embedding_length"))
        tokens = self.meta.get("tokenizer.ggml.tokens") or []
        eos = self.meta.get("tokenizer.ggml.eos_token_id")
        return Arch(
            family=family,
            vocab_size=int(self.meta.get(f"{family}.vocab_size", len(tokens))),
            hidden_size=hidden,
            intermediate_size=int(self._m("feed_forward_length")),
            num_layers=int(self._m("block_count")),
            num_heads=heads,
            num_kv_heads=int(self._m("attention.head_count_kv", heads)),
            head_dim=int(self._m("attention.key_length", hidden // heads)),
            rms_norm_eps=float(self._m("attention.layer_norm_rms_epsilon")),
            rope_theta=float(self._m("rope.freq_base", 10000.0)),
            context_length=int(self._m("context_length")),
            tie_word_embeddings="lm_head.weight" not in self.tensors,
            attention_bias="model.layers.0.self_attn.q_proj.bias" in self.tensors,
            bos_token_id=self.meta.get("tokenizer.ggml.bos_token_id"),
            eos_token_ids=[int(eos)] if eos is not None else [],
        ).check()

    def has(self, name):
        return name in self.tensors

    def tensor(self, name):
        t = self.tensors.get(name)
        if t is None:
            raise ImportFailed(f"{self.path} has no tensor for {name}")
        try:
            w = self._gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        except Exception as e:
            raise ImportFailed(f"cannot de-quantize {t.name} ({t.tensor_type.name}): {e}") from None
        shape = tuple(int(d) for d in reversed(t.shape))
        if w.size != int(np.prod(shape)):
            raise ImportFailed(f"tensor {t.name} holds {w.size} values, its shape {shape} needs {int(np.prod(shape))}")
        w = w.reshape(shape)
        if self.arch.family == "llama":
            if name.endswith("q_proj.weight"):
                w = reverse_permute(w, self.arch.num_heads)
            elif name.endswith("k_proj.weight"):
                w = reverse_permute(w, self.arch.num_kv_heads)
        return w

    def tokenizer(self):
        tj, cfg = tokenizer_json(self.meta, self.arch.family)
        return TokenizerFiles(tj, self.meta.get("tokenizer.chat_template"), cfg)
