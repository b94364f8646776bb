"""The architecture facts the graph builder needs, read from a Hugging Face config.json or from
GGUF metadata, and checked against what the importer supports."""
from dataclasses import dataclass, field, asdict

from .errors import ImportFailed

SUPPORTED = {
    "llama": "Llama (SmolLM2, TinyLlama, Llama 2/3 without rope scaling)",
    "qwen2": "Qwen2 (Qwen2.5, DeepSeek-R1-Distill-Qwen)",
}
HF_ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}


@dataclass
class Arch:
    family: str  # "llama" | "qwen2"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    context_length: int
    tie_word_embeddings: bool
    attention_bias: bool  # q/k/v projections carry a bias
    bos_token_id: int | None = None
    eos_token_ids: list = field(default_factory=list)

    def check(self):
        if self.family not in SUPPORTED:
            raise ImportFailed(unsupported(self.family))
        if self.num_heads % self.num_kv_heads:
            raise ImportFailed(f"{self.num_heads} attention heads are not a multiple of {self.num_kv_heads} KV heads")
        if self.head_dim % 2:
            raise ImportFailed(f"head_dim {self.head_dim} must be even for rotary embeddings")
        return self

    def hf_config(self):
        """A config.json for the written folder, in transformers' terms."""
        arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[self.family]
        return {
            "architectures": [arch],
            "model_type": self.family,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.context_length,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_ids,
        }

    def as_dict(self):
        return asdict(self)


def unsupported(name):
    known = "; ".join(f"{k}: {v}" for k, v in SUPPORTED.items())
    return f"architecture {name!r} is not supported. Supported: {known}"


def from_hf_config(cfg):
    """Reads a transformers config.json (dict)."""
    archs = cfg.get("architectures") or []
    family = next((HF_ARCHITECTURES[a] for a in archs if a in HF_ARCHITECTURES), None)
    if family is None:
        family = cfg.get("model_type")
        if family not in SUPPORTED:
            raise ImportFailed(unsupported(archs[0] if archs else family))
    scaling = cfg.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
        raise ImportFailed(f"rope_scaling {scaling} is not supported yet (only the default rotary embedding)")
    try:
        heads = cfg["num_attention_heads"]
        hidden = cfg["hidden_size"]
        eos = cfg.get("eos_token_id")
        return Arch(
            family=family,
            vocab_size=cfg["vocab_size"],
            hidden_size=hidden,
            intermediate_size=cfg["intermediate_size"],
            num_layers=cfg["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or hidden // heads,
            rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
            rope_theta=cfg.get("rope_theta", 10000.0),
            context_length=cfg.get("max_position_embeddings", 2048),
            tie_word_embeddings=cfg.get("tie_word_embeddings", False),
            attention_bias=cfg.get("attention_bias", family == "qwen2"),
            bos_token_id=cfg.get("bos_token_id"),
            eos_token_ids=eos if isinstance(eos, list) else ([eos] if eos is not None else []),
        ).check()
    except KeyError as e:
        raise ImportFailed(f"config.json lacks {e.args[0]!r}") from None
