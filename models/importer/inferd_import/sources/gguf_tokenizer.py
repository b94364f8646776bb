"""Rebuilds a Hugging Face tokenizer.json from GGUF `tokenizer.ggml.*` metadata, following
transformers' own GGUF conversion (GPT2Converter for Llama-family BPE vocabularies,
Qwen2Converter for Qwen2), so the result tokenizes exactly as transformers' does."""
from ..errors import ImportFailed

CONTROL, USER_DEFINED = 3, 4

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _byte_level(add_prefix_space, use_regex):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": use_regex}


def tokenizer_json(meta, family):
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise ImportFailed(
            f"GGUF tokenizer model {model!r} is not supported (only byte-level BPE, 'gpt2'); "
            "import the Hugging Face checkpoint folder instead, which carries tokenizer.json"
        )
    tokens = list(meta["tokenizer.ggml.tokens"])
    types = list(meta.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    merges = [m.split(" ", 1) for m in meta.get("tokenizer.ggml.merges") or []]
    added = [
        {
            "id": i,
            "content": tokens[i],
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": t == CONTROL,
        }
        for i, t in enumerate(types)
        if t in (CONTROL, USER_DEFINED)
    ]
    bos_id = meta.get("tokenizer.ggml.bos_token_id")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False))
    single = [{"Sequence": {"id": "A", "type_id": 0}}]
    pair = [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}]
    special = {}
    if add_bos and bos_id is not None:
        bos = tokens[bos_id]
        single = [{"SpecialToken": {"id": bos, "type_id": 0}}] + single
        pair = [{"SpecialToken": {"id": bos, "type_id": 0}}, pair[0], {"SpecialToken": {"id": bos, "type_id": 1}}, pair[1]]
        special = {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}
    if family == "qwen2":
        normalizer = {"type": "NFC"}
        pre = {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
                _byte_level(False, False),
            ],
        }
    else:
        normalizer = None
        pre = _byte_level(False, True)
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre,
        "post_processor": {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special},
        "decoder": _byte_level(True, True),
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {tok: i for i, tok in enumerate(tokens)},
            "merges": merges,
        },
    }
    name = lambda key: tokens[meta[key]] if meta.get(key) is not None else None
    cfg = {
        "bos_token": name("tokenizer.ggml.bos_token_id"),
        "eos_token": name("tokenizer.ggml.eos_token_id"),
        "pad_token": name("tokenizer.ggml.padding_token_id"),
        "unk_token": name("tokenizer.ggml.unknown_token_id"),
        "add_bos_token": add_bos,
    }
    return tj, cfg
