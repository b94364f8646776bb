"""Where weights come from. Every source gives the same things: an `Arch`, weights by their
Hugging Face names as float32 numpy arrays (one at a time, so memory stays bounded), and the
tokenizer files for the output folder."""
from dataclasses import dataclass, field


@dataclass
class TokenizerFiles:
    tokenizer_json: dict
    chat_template: str | None = None
    # tokenizer_config.json entries (bos/eos token strings, add_bos_token, ...)
    config: dict = field(default_factory=dict)


class Source:
    arch = None  # Arch

    def tensor(self, name):
        """float32 array for a Hugging Face weight name; ImportFailed if missing or malformed."""
        raise NotImplementedError

    def has(self, name):
        raise NotImplementedError

    def tokenizer(self):
        raise NotImplementedError

    def generation_defaults(self):
        """generation_config.json contents."""
        a = self.arch
        return {"bos_token_id": a.bos_token_id, "eos_token_id": a.eos_token_ids}
