"""Rebuilds a Hugging Face tokenizer.json from GGUF `tokenizer.ggml.*` metadata, following
transformers' own GGUF conversion, so the result tokenizes exactly as the tokenizer.json users
download does:

- `gpt2` (byte-level BPE): GPT2Converter for Llama-family vocabularies such as SmolLM2,
  Qwen2Converter for Qwen2;
- `llama` (SentencePiece BPE, as in TinyLlama and Llama 2): GGUFLlamaConverter, with merges
  rebuilt from the piece scores, byte fallback and the legacy `▁` normalizer."""
from ..errors import ImportFailed

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPACE = "\u2581"

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _byte_level(add_prefix_space, use_regex):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": use_regex}


def _bpe(tokens, merges, **kw):
    return {
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
    } | kw


def _gpt2(meta, tokens, family):
    merges = [m.split(" ", 1) for m in meta.get("tokenizer.ggml.merges") or []]
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
    return {
        "normalizer": normalizer,
        "pre_tokenizer": pre,
        "decoder": _byte_level(True, True),
        "model": _bpe(tokens, merges),
    }


def spm_merges(tokens, scores):
    """BPE merges equivalent to SentencePiece's rule (merge the adjacent pair whose joined piece
    scores highest): every split of every piece into two known pieces, ordered by the joined
    piece's score. The same order as transformers' GGUFTokenizerSkeleton, with a dict lookup."""
    score = {t: scores[i] for i, t in enumerate(tokens)}
    merges = []
    for piece, piece_score in score.items():
        local = [
            (piece[:k], piece[k:], piece_score)
            for k in range(1, len(piece))
            if piece[:k] in score and piece[k:] in score
        ]
        local.sort(key=lambda m: (score[m[0]], score[m[1]]), reverse=True)
        merges.extend(local)
    merges.sort(key=lambda m: m[2], reverse=True)
    return [[left, right] for left, right, _ in merges]


def _sentencepiece(meta, tokens):
    scores = meta.get("tokenizer.ggml.scores")
    if scores is None or len(scores) != len(tokens):
        raise ImportFailed("GGUF SentencePiece vocabulary has no tokenizer.ggml.scores to rebuild its merges from")
    merges = meta.get("tokenizer.ggml.merges")
    merges = [m.split(" ", 1) for m in merges] if merges else spm_merges(tokens, list(scores))
    unk = meta.get("tokenizer.ggml.unknown_token_id")
    return {
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Prepend", "prepend": SPACE},
                {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
            ],
        },
        "pre_tokenizer": None,
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },
        "model": _bpe(tokens, merges, unk_token=tokens[unk] if unk is not None else None, fuse_unk=True, byte_fallback=True),
    }


def tokenizer_json(meta, family):
    model = meta.get("tokenizer.ggml.model")
    tokens = list(meta.get("tokenizer.ggml.tokens") or [])
    if model == "gpt2":
        parts = _gpt2(meta, tokens, family)
        add_bos_default = False
    elif model == "llama":
        parts = _sentencepiece(meta, tokens)
        add_bos_default = True
    else:
        raise ImportFailed(
            f"GGUF tokenizer model {model!r} is not supported (byte-level BPE 'gpt2' and SentencePiece "
            "'llama' are); import the Hugging Face checkpoint folder instead, which carries tokenizer.json"
        )
    types = list(meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens))
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
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", add_bos_default))
    single = [{"Sequence": {"id": "A", "type_id": 0}}]
    pair = [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}]
    special = {}
    if add_bos and bos_id is not None:
        bos = tokens[bos_id]
        single = [{"SpecialToken": {"id": bos, "type_id": 0}}] + single
        pair = [{"SpecialToken": {"id": bos, "type_id": 0}}, pair[0], {"SpecialToken": {"id": bos, "type_id": 1}}, pair[1]]
        special = {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": parts["normalizer"],
        "pre_tokenizer": parts["pre_tokenizer"],
        "post_processor": {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special},
        "decoder": parts["decoder"],
        "model": parts["model"],
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
