"""A TinyLlama-style GGUF: Llama weights with a SentencePiece BPE vocabulary (byte fallback,
scores instead of merges). The reference is SentencePiece itself, on a model trained here with
Llama's settings and written to GGUF the way llama.cpp's converter writes it."""
import io
import random

import numpy as np
import pytest
import sentencepiece
from tokenizers import Tokenizer

from conftest import run_import
from decode import Decoder
from reference import forward
from test_tokenizer import PIECES

WORDS = (
    "the quick brown fox jumps over a lazy dog while the model reads every token of the sentence "
    "café naïve über Привет мир 東京 日本語 def return for in range import numpy print(x) if else"
).split()
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
ARCH = dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128)


def train_corpus(n=4000, seed=3):
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 12))]
        sep = rng.choice([" ", " ", " ", "  ", "    "])
        lines.append(rng.choice(["", "    ", "        "]) + sep.join(words))
    return lines


def train(add_dummy_prefix=True):
    """A SentencePiece BPE model on `train_corpus`, with Llama 2 / TinyLlama's trainer settings
    that matter for encoding (Gemma's differ in `add_dummy_prefix`)."""
    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(train_corpus()), model_writer=out, model_type="bpe", vocab_size=500,
        byte_fallback=True, split_digits=True, normalization_rule_name="identity",
        add_dummy_prefix=add_dummy_prefix, remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        character_coverage=1.0, user_defined_symbols=["<|user|>", "<|assistant|>"], minloglevel=2,
    )
    return sentencepiece.SentencePieceProcessor(model_proto=out.getvalue())


@pytest.fixture(scope="module")
def spm():
    return train()


def token_type(sp, i):
    """llama.cpp's SentencePieceTokenTypes for piece i."""
    if sp.is_unknown(i):
        return 2
    if sp.is_control(i):
        return 3
    if sp.is_byte(i):
        return 6
    if sp.is_unused(i):
        return 5
    return 4 if sp.id_to_piece(i) in ("<|user|>", "<|assistant|>") else 1


def weights(sp):
    rng = np.random.default_rng(11)
    h, hd, v = ARCH["hidden"], ARCH["hidden"] // ARCH["heads"], sp.vocab_size()
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,), "lm_head.weight": (v, h)}
    for i in range(ARCH["layers"]):
        p = f"model.layers.{i}"
        shapes |= {
            f"{p}.input_layernorm.weight": (h,),
            f"{p}.post_attention_layernorm.weight": (h,),
            f"{p}.self_attn.q_proj.weight": (ARCH["heads"] * hd, h),
            f"{p}.self_attn.k_proj.weight": (ARCH["kv_heads"] * hd, h),
            f"{p}.self_attn.v_proj.weight": (ARCH["kv_heads"] * hd, h),
            f"{p}.self_attn.o_proj.weight": (h, ARCH["heads"] * hd),
            f"{p}.mlp.gate_proj.weight": (ARCH["ffn"], h),
            f"{p}.mlp.up_proj.weight": (ARCH["ffn"], h),
            f"{p}.mlp.down_proj.weight": (h, ARCH["ffn"]),
        }
    w = {}
    for name, shape in shapes.items():
        x = rng.standard_normal(shape).astype(np.float32)
        x = 1 + 0.1 * x if name.endswith("norm.weight") else x / np.sqrt(shape[-1])
        w[name] = x.astype(np.float16).astype(np.float32)  # stored as F16 below, exactly
    return w


def permute(w, n_head):
    """llama.cpp's rotary row permutation of q/k, which the importer must undo."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def add_vocabulary(g, sp):
    """`sp`'s vocabulary as llama.cpp's converter writes a SentencePiece model's."""
    g.add_tokenizer_model("llama")
    n = sp.vocab_size()
    g.add_token_list([sp.id_to_piece(i).encode() for i in range(n)])
    g.add_token_scores([sp.get_score(i) for i in range(n)])
    g.add_token_types([token_type(sp, i) for i in range(n)])
    g.add_bos_token_id(sp.bos_id())
    g.add_eos_token_id(sp.eos_id())
    g.add_unk_token_id(sp.unk_id())


def write_gguf(path, sp, w, rope_base=10000.0, rope_freqs=None):
    """A llama GGUF of weights `w` with `sp`'s vocabulary; `rope_freqs`, Llama 3's per-frequency
    divisors, as llama.cpp's converter writes them."""
    import gguf

    g = gguf.GGUFWriter(str(path), "llama")
    g.add_context_length(512)
    g.add_embedding_length(ARCH["hidden"])
    g.add_block_count(ARCH["layers"])
    g.add_feed_forward_length(ARCH["ffn"])
    g.add_head_count(ARCH["heads"])
    g.add_head_count_kv(ARCH["kv_heads"])
    g.add_layer_norm_rms_eps(1e-5)
    g.add_rope_freq_base(rope_base)
    if rope_freqs is not None:
        g.add_tensor("rope_freqs.weight", np.asarray(rope_freqs, np.float32))
    add_vocabulary(g, sp)
    g.add_add_bos_token(True)
    g.add_chat_template(CHAT_TEMPLATE)
    for name, x in w.items():
        if name.startswith("model.layers."):
            _, _, i, leaf = name.split(".", 3)
            gname = f"blk.{i}.{GGUF_NAMES[leaf]}"
            if leaf == "self_attn.q_proj.weight":
                x = permute(x, ARCH["heads"])
            elif leaf == "self_attn.k_proj.weight":
                x = permute(x, ARCH["kv_heads"])
        else:
            gname = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}[name]
        g.add_tensor(gname, x.astype(np.float32 if x.ndim == 1 else np.float16))
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


@pytest.fixture(scope="module")
def tiny_llama(spm, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spm")
    w = weights(spm)
    write_gguf(tmp / "tiny-llama.gguf", spm, w)
    run_import([tmp / "tiny-llama.gguf", "--name", "tiny-llama", "--precision", "fp32", "--models", tmp / "models"])
    return tmp / "models" / "tiny-llama", w


def texts(n=300, seed=5):
    """Plain text, no special tokens: code, unicode outside the vocabulary, whitespace runs."""
    plain = [p for p in PIECES if not p.startswith("<")] + WORDS + ["    return x", "\tindent", "a  b   c", "x\ny", "9 876"]
    rng = random.Random(seed)
    out = list(plain)
    while len(out) < n:
        out.append("".join(rng.choice(plain) + rng.choice(["", " ", "  ", "\n", "    "]) for _ in range(rng.randint(1, 8))))
    return out


def test_tokenizes_exactly_as_sentencepiece(spm, tiny_llama):
    ours = Tokenizer.from_file(str(tiny_llama[0] / "tokenizer.json"))
    for text in texts():
        want = spm.encode(text)
        got = ours.encode(text).ids
        assert got == [spm.bos_id()] + want, text
        assert ours.decode(got) == spm.decode(want), text
    assert any(spm.is_byte(i) for t in texts() for i in spm.encode(t)), "byte fallback must be exercised"


def test_special_and_user_defined_tokens(spm, tiny_llama):
    ours = Tokenizer.from_file(str(tiny_llama[0] / "tokenizer.json"))
    user, assistant = spm.piece_to_id("<|user|>"), spm.piece_to_id("<|assistant|>")
    ids = ours.encode("<|user|>\nhello</s><|assistant|>\n", add_special_tokens=False).ids
    assert ids == [user, *spm.encode("\nhello"), spm.eos_id(), assistant, *spm.encode("\n")]
    assert ours.decode(ids, skip_special_tokens=True) == "<|user|> \nhello<|assistant|> \n"


def test_tiny_llama_logits_match_numpy_reference(tiny_llama):
    from inferd_import.arch import Arch

    folder, w = tiny_llama
    a = ARCH
    arch = Arch(
        family="llama", vocab_size=len(w["lm_head.weight"]), hidden_size=a["hidden"], intermediate_size=a["ffn"],
        num_layers=a["layers"], num_heads=a["heads"], num_kv_heads=a["kv_heads"], head_dim=a["hidden"] // a["heads"],
        rms_norm_eps=1e-5, rope_theta=10000.0, context_length=512, tie_word_embeddings=False,
        attention_bias=False, bos_token_id=1, eos_token_ids=[2],
    )
    ids = [1, 40, 300, 7, 499, 123, 5]
    want = forward(arch, w.__getitem__, np.array(ids))
    d = Decoder(folder)
    got, _ = d.forward(np.array([ids], np.int64), d.empty_past(), 0)
    np.testing.assert_allclose(got[0], want, atol=1e-4, rtol=0)
