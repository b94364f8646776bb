"""A Hugging Face checkpoint folder: config.json, *.safetensors (sharded too), tokenizer.json,
tokenizer_config.json, generation_config.json."""
import json
from pathlib import Path

from ..arch import from_hf_config
from ..errors import ImportFailed
from . import Source, TokenizerFiles
from .safetensors_reader import SafetensorsFile


def _json(path, required=True):
    if not path.exists():
        if required:
            raise ImportFailed(f"{path.parent} has no {path.name}")
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ImportFailed(f"{path}: invalid JSON: {e}") from None


class HfSource(Source):
    def __init__(self, folder):
        self.folder = Path(folder)
        self.config = _json(self.folder / "config.json")
        self.arch = from_hf_config(self.config)
        files = sorted(self.folder.glob("*.safetensors"))
        if not files:
            raise ImportFailed(f"{self.folder} has no *.safetensors weights")
        self.where = {}
        for f in files:
            st = SafetensorsFile(f)
            for name in st.names():
                self.where[name] = st
        gen = _json(self.folder / "generation_config.json", required=False) or {}
        eos = gen.get("eos_token_id", self.config.get("eos_token_id"))
        if eos is not None:
            self.arch.eos_token_ids = eos if isinstance(eos, list) else [eos]
        self.arch.bos_token_id = gen.get("bos_token_id", self.arch.bos_token_id)
        self.arch.tie_word_embeddings = self.arch.tie_word_embeddings or "lm_head.weight" not in self.where
        self.gen = gen

    def has(self, name):
        return name in self.where

    def tensor(self, name):
        st = self.where.get(name)
        if st is None:
            raise ImportFailed(f"no tensor {name} in {self.folder}/*.safetensors")
        return st.get(name)

    def tokenizer(self):
        tj = _json(self.folder / "tokenizer.json")
        cfg = _json(self.folder / "tokenizer_config.json", required=False) or {}
        template = cfg.pop("chat_template", None)
        jinja = self.folder / "chat_template.jinja"
        if jinja.exists():
            template = jinja.read_text()
        cfg.pop("added_tokens_decoder", None)
        return TokenizerFiles(tj, template, cfg)

    def generation_defaults(self):
        out = dict(self.gen)
        out.setdefault("bos_token_id", self.arch.bos_token_id)
        out["eos_token_id"] = self.arch.eos_token_ids
        return out
