"""The tokenizer.json rebuilt from GGUF metadata against transformers' own conversion of the
same metadata (tests/fixtures/smollm2_tokenizer.json), over a few hundred varied strings."""
import json
import random

from tokenizers import Tokenizer

from conftest import FIXTURES

PIECES = [
    "Hello", "world", "the", "quick brown fox", "jumps", "über", "naïve", "café", "façade", "Ærø",
    "東京", "日本語のテキスト", "中文", "한국어", "Привет", "مرحبا", "שלום", "नमस्ते", "🎸", "👩‍💻", "🇫🇷",
    "def f(x):", "return x**2", "for i in range(10):", "{\"key\": [1, 2.5e-3]}", "fn main() { println!(\"hi\"); }",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<file_sep>", "<|im_start|>user\n",
    "1234567890", "3.14159", "-42", "0x1F", "1,000,000", "'s", "'t", "'re", "I'm", "don't", "they'll",
    " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u200b",
    "!!!", "...", "?!", "—", "–", "“quoted”", "(parens)", "[brackets]", "#hashtag", "@user", "https://example.com/a?b=c",
]


def corpus(n=300, seed=7):
    rng = random.Random(seed)
    out = list(PIECES)
    while len(out) < n:
        k = rng.randint(1, 8)
        out.append("".join(rng.choice(PIECES) + rng.choice(["", " ", "  ", "\n", "\t"]) for _ in range(k)))
    return out


def test_gguf_tokenizer_matches_transformers_conversion(smollm2_fp32):
    ours = Tokenizer.from_file(str(smollm2_fp32 / "tokenizer.json"))
    ref = Tokenizer.from_file(str(FIXTURES / "smollm2_tokenizer.json"))
    texts = corpus()
    assert len(texts) >= 300
    for text in texts:
        a, b = ours.encode(text).ids, ref.encode(text).ids
        assert a == b, text
        assert ours.decode(a) == ref.decode(b), text
        assert ours.decode(a, skip_special_tokens=False) == ref.decode(b, skip_special_tokens=False), text


def test_chat_template_and_generation_defaults_are_written(smollm2_fp32):
    cfg = json.loads((smollm2_fp32 / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in cfg["chat_template"]
    assert (smollm2_fp32 / "chat_template.jinja").read_text() == cfg["chat_template"]
    gen = json.loads((smollm2_fp32 / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [2]
    genai = json.loads((smollm2_fp32 / "genai_config.json").read_text())
    assert genai["model"]["context_length"] == 8192
    assert genai["model"]["decoder"]["inputs"]["past_key_names"] == "past_key_values.%d.key"
    assert (smollm2_fp32 / "model.toml").read_text().count('kind = "text-generation"') == 1
