"""The imported graphs against independent references."""
import json

import numpy as np
from tokenizers import Tokenizer

from conftest import FIXTURES
from decode import Decoder


def test_smollm2_fp32_reproduces_transformers_greedy_ids(smollm2_fp32):
    # Fixture: transformers on the same de-quantized weights (an independent implementation).
    fx = json.loads((FIXTURES / "smollm2_fp32_greedy.json").read_text())
    d = Decoder(smollm2_fp32)
    tok = Tokenizer.from_file(str(smollm2_fp32 / "tokenizer.json"))
    for case in fx["cases"]:
        prompt = fx["chat_format"].format(prompt=case["prompt"])
        assert tok.encode(prompt).ids == case["prompt_ids"], case["prompt"]
        got = d.greedy(case["prompt_ids"], len(case["new_ids"]), eos=(2,))
        assert got == case["new_ids"], case["prompt"]


def test_smollm2_int4_still_knows_paris(smollm2_int4):
    tok = Tokenizer.from_file(str(smollm2_int4 / "tokenizer.json"))
    ids = tok.encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n").ids
    out = Decoder(smollm2_int4).greedy(ids, 20, eos=(2,))
    assert "Paris" in tok.decode(out)
    model = (smollm2_int4 / "model.onnx").stat().st_size
    assert model < 200e6, f"int4 model is {model} bytes"


def test_kv_cache_equals_full_recompute_on_tiny_qwen2(tiny_qwen2):
    d = Decoder(tiny_qwen2)
    prompt = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649]
    assert d.greedy(prompt, 24, cache=True) == d.greedy(prompt, 24, cache=False)


def test_batched_left_padded_rows_match_single_rows(tiny_qwen2):
    d = Decoder(tiny_qwen2)
    a, b = [5, 6, 7, 8, 9], [11, 12, 13]
    single = [d.forward(np.array([x], np.int64), d.empty_past(), 0)[0][0, -1] for x in (a, b)]
    ids = np.array([a, [0, 0] + b], np.int64)
    mask = np.array([[1] * 5, [0, 0, 1, 1, 1]], np.int64)
    pos = np.array([[0, 1, 2, 3, 4], [0, 0, 0, 1, 2]], np.int64)
    names = [o.name for o in d.sess.get_outputs()]
    out = dict(zip(names, d.sess.run(names, {"input_ids": ids, "attention_mask": mask, "position_ids": pos, **d.empty_past(2)})))
    np.testing.assert_allclose(out["logits"][0, -1], single[0], atol=1e-4)
    np.testing.assert_allclose(out["logits"][1, -1], single[1], atol=1e-4)
