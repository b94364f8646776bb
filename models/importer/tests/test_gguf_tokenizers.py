"""The tokenizer the native importer rebuilds from a GGUF's metadata, per `tokenizer.ggml.pre`
family, against the token ids of the model's own Hugging Face tokenizer.

The references are llama.cpp's vocabulary test files (fetched by `make fetch` from the
llama-cpp-python sdist into $INFERD_CACHE/vocab): `ggml-vocab-NAME.gguf` holds a real model's
tokenizer metadata as llama.cpp's converter writes it, and `.inp`/`.out` a test corpus (digits,
whitespace runs, CJK, emoji, code) with the ids that model's tokenizer.json gave for each text
(`tokenizer.encode(text, add_special_tokens=False)` in llama.cpp's convert_hf_to_gguf_update.py).
Gemma's SentencePiece convention (no dummy prefix) is checked against SentencePiece itself."""
import os
import subprocess

import gguf as gg
import pytest
from tokenizers import Tokenizer

from conftest import CACHE, REPO
from test_sentencepiece import add_vocabulary, texts, train

VOCAB = CACHE / "vocab"
TOOL = REPO / "target" / os.environ.get("INFERD_PROFILE", "debug") / "inferd-gguf-tokenizer"
CONTROL = 3

# pre name (or SentencePiece model) -> the model llama.cpp took the vocabulary from.
FAMILIES = {
    "llama-bpe": "Meta-Llama-3-8B (R1-Distill-Llama's tokenizer)",
    "qwen2": "Qwen1.5-7B (Qwen2/2.5's split)",
    "qwen35": "Qwen3.5",
    "deepseek-llm": "deepseek-llm-7b-base",
    "deepseek-coder": "deepseek-coder-6.7b-base",
    "gpt-2": "gpt2",
    "starcoder": "starcoder2-3b (SmolLM's split, 'smollm')",
    "refact": "Refact-1_6B",
    "mpt": "mpt-7b",
    "llama-spm": "Llama-2-7b (SentencePiece, as Mistral 7B)",
    "phi-3": "Phi-3-mini-4k-instruct (SentencePiece)",
}


def rebuild(gguf_path, out):
    """Runs the importer's tokenizer rebuild; returns (Tokenizer, warnings)."""
    if not TOOL.exists():
        pytest.fail(f"{TOOL} is missing: run `cargo build --workspace`")
    p = subprocess.run([TOOL, gguf_path, out], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    warnings = [line for line in p.stderr.splitlines() if line.startswith("warning:")]
    return Tokenizer.from_file(str(out / "tokenizer.json")), warnings


def vocab(name):
    path = VOCAB / f"ggml-vocab-{name}.gguf"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make fetch`")
    return path


def corpus(name):
    texts = (VOCAB / f"ggml-vocab-{name}.gguf.inp").read_text().split("\n__ggml_vocab_test__\n")[:-1]
    ids = (VOCAB / f"ggml-vocab-{name}.gguf.out").read_text().split("\n")
    assert len(texts) >= 46 and len(ids) >= len(texts)
    return [(t, [int(x) for x in i.split()]) for t, i in zip(texts, ids)]


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def copy_with(src, dest, drop=(), **changes):
    """A copy of vocabulary file `src` with some tokenizer keys changed, and those in `drop` left
    out."""
    r = gg.GGUFReader(str(src))
    w = gg.GGUFWriter(str(dest), field(r, "general.architecture"))
    for key, f in r.fields.items():
        if key.startswith("tokenizer.") and key not in changes and key not in drop:
            w.add_key_value(key, f.contents(), f.types[0], f.types[-1] if f.types[0] == gg.GGUFValueType.ARRAY else None)
    for key, value in changes.items():
        w.add_string(key, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    return dest


@pytest.mark.parametrize("name", FAMILIES)
def test_ids_equal_the_models_own_tokenizer(name, tmp_path):
    tok, warnings = rebuild(vocab(name), tmp_path)
    assert warnings == []
    for text, want in corpus(name):
        assert tok.encode(text, add_special_tokens=False).ids == want, (FAMILIES[name], text)


@pytest.mark.parametrize("name", FAMILIES)
def test_special_tokens_stay_whole(name, tmp_path):
    """Each control token (the chat markers, BOS/EOS) is one id between any text."""
    tok, _ = rebuild(vocab(name), tmp_path)
    r = gg.GGUFReader(str(vocab(name)))
    tokens, types = field(r, "tokenizer.ggml.tokens"), field(r, "tokenizer.ggml.token_type")
    control = [(i, t) for i, (t, ty) in enumerate(zip(tokens, types)) if ty == CONTROL and t]
    assert control, "every family here has control tokens"
    for i, t in control[:64]:
        ids = tok.encode(f"1 x{t}\n y", add_special_tokens=False).ids
        assert i in ids, (t, ids)


def test_deepseek_r1_qwen_splits_as_qwen2(tmp_path):
    """R1-Distill-Qwen's GGUFs name their split `deepseek-r1-qwen`; its tokenizer.json splits as
    Qwen2's does (llama.cpp maps both to one pre-tokenizer)."""
    path = copy_with(vocab("qwen2"), tmp_path / "r1.gguf", **{"tokenizer.ggml.pre": "deepseek-r1-qwen"})
    tok, warnings = rebuild(path, tmp_path / "out")
    assert warnings == []
    for text, want in corpus("qwen2"):
        assert tok.encode(text, add_special_tokens=False).ids == want, text


@pytest.mark.parametrize("name", ["falcon", "command-r"])
def test_an_unknown_split_is_a_warning(name, tmp_path):
    tok, warnings = rebuild(vocab(name), tmp_path)
    assert len(warnings) == 1 and f'"{name}"' in warnings[0] and "GPT-2" in warnings[0], warnings
    assert tok.encode("Hello world", add_special_tokens=False).ids


def test_no_split_named_is_gpt2s_with_a_warning(tmp_path):
    """A GGUF from a converter older than `tokenizer.ggml.pre`: GPT-2's split, as llama.cpp
    does, and said."""
    path = copy_with(vocab("gpt-2"), tmp_path / "old.gguf", drop=("tokenizer.ggml.pre",))
    tok, warnings = rebuild(path, tmp_path / "out")
    assert len(warnings) == 1 and "names no pre-tokenizer" in warnings[0], warnings
    for text, want in corpus("gpt-2"):
        assert tok.encode(text, add_special_tokens=False).ids == want, text


def test_gemma_sentencepiece_has_no_dummy_prefix(tmp_path):
    """Gemma's SentencePiece model adds no `▁` in front of the text; its GGUF says so with
    `tokenizer.ggml.add_space_prefix = false`. The reference is SentencePiece, trained here with
    Gemma's setting."""
    sp = train(add_dummy_prefix=False)
    w = gg.GGUFWriter(str(tmp_path / "gemma.gguf"), "gemma2")
    add_vocabulary(w, sp)
    w.add_add_space_prefix(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    tok, _ = rebuild(tmp_path / "gemma.gguf", tmp_path / "out")
    for text in texts():
        want = sp.encode(text)
        got = tok.encode(text, add_special_tokens=False).ids
        assert got == want, text
        assert tok.decode(got) == sp.decode(want), text
