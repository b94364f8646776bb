"""Deterministic random weights for an architecture config: for tests and for measuring speed
and memory at a real model's shape without its weights."""
import json
import zlib
from pathlib import Path

import numpy as np

from ..arch import from_hf_config
from ..errors import ImportFailed
from . import Source


class RandomSource(Source):
    def __init__(self, config_path, tokenizer_source, seed):
        try:
            self.config = json.loads(Path(config_path).read_text())
        except (OSError, ValueError) as e:
            raise ImportFailed(f"cannot read {config_path}: {e}") from None
        self.arch = from_hf_config(self.config)
        self.tok_source = tokenizer_source
        self.seed = seed
        if tokenizer_source is None:
            raise ImportFailed("--random needs --tokenizer SOURCE (a .gguf file or a checkpoint folder)")

    def _shape(self, name):
        a = self.arch
        h, hd = a.hidden_size, a.head_dim
        if name == "model.embed_tokens.weight" or name == "lm_head.weight":
            return (a.vocab_size, h)
        if name.endswith("norm.weight"):
            return (h,)
        leaf = name.split(".self_attn.")[-1].split(".mlp.")[-1]
        return {
            "q_proj.weight": (a.num_heads * hd, h),
            "k_proj.weight": (a.num_kv_heads * hd, h),
            "v_proj.weight": (a.num_kv_heads * hd, h),
            "q_proj.bias": (a.num_heads * hd,),
            "k_proj.bias": (a.num_kv_heads * hd,),
            "v_proj.bias": (a.num_kv_heads * hd,),
            "o_proj.weight": (h, a.num_heads * hd),
            "gate_proj.weight": (a.intermediate_size, h),
            "up_proj.weight": (a.intermediate_size, h),
            "down_proj.weight": (h, a.intermediate_size),
        }[leaf]

    def has(self, name):
        return True

    def tensor(self, name):
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
        shape = self._shape(name)
        w = rng.standard_normal(shape, dtype=np.float32)
        if name.endswith("norm.weight"):
            return 1.0 + np.float32(0.1) * w
        w *= np.float32(0.02 if name.endswith("bias") else 1.0 / np.sqrt(shape[-1]))
        return w

    def tokenizer(self):
        return self.tok_source.tokenizer()

    def generation_defaults(self):
        return {"bos_token_id": self.arch.bos_token_id, "eos_token_id": self.arch.eos_token_ids}
