#!/usr/bin/env python3
"""Builds `think`: a scripted text-generation model that reasons like DeepSeek-R1 distills.

Its graph has the optimum layout (input_ids, attention_mask, position_ids, one layer of
past_key_values → logits, present), but its logits are a lookup: each token's successor in
SCRIPT below, whatever came before. Every token outside the script leads into `<think>`, and the
script's last token leads to EOS. So any prompt is answered with

    <think>{REASONING}</think>{ANSWER}

and a `</think>` forced early (a reasoning budget) jumps straight to the answer. The tokenizer is
SmolLM2's with `<think>` and `</think>` added as non-special tokens, as in DeepSeek-R1-Distill's.

Usage: make_think_model.py SMOLLM2_IMPORT_DIR OUT_DIR
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T, helper as h, numpy_helper
from tokenizers import AddedToken, Tokenizer

REASONING = " The user wants a sum; adding both numbers gives four"
ANSWER = " It is 4."
KV_HEADS, HEAD_DIM = 1, 4


def script_ids(tok):
    think, close = tok.token_to_id("<think>"), tok.token_to_id("</think>")
    ids = [think, *tok.encode(REASONING, add_special_tokens=False).ids, close,
           *tok.encode(ANSWER, add_special_tokens=False).ids]
    assert len(set(ids)) == len(ids), f"script tokens must be unique to be a lookup: {ids}"
    return ids


def graph(next_of, vocab):
    pk, pv = "past_key_values.0.key", "past_key_values.0.value"
    cache = ["batch", KV_HEADS, "past", HEAD_DIM]
    inputs = [
        h.make_tensor_value_info("input_ids", T.INT64, ["batch", "seq"]),
        h.make_tensor_value_info("attention_mask", T.INT64, ["batch", "total"]),
        h.make_tensor_value_info("position_ids", T.INT64, ["batch", "seq"]),
        h.make_tensor_value_info(pk, T.FLOAT, cache),
        h.make_tensor_value_info(pv, T.FLOAT, cache),
    ]
    present = ["batch", KV_HEADS, "total", HEAD_DIM]
    outputs = [
        h.make_tensor_value_info("logits", T.FLOAT, ["batch", "seq", vocab]),
        h.make_tensor_value_info("present.0.key", T.FLOAT, present),
        h.make_tensor_value_info("present.0.value", T.FLOAT, present),
    ]
    consts = [
        numpy_helper.from_array(next_of, "next_of"),
        numpy_helper.from_array(np.array(vocab, np.int64), "depth"),
        numpy_helper.from_array(np.array([0.0, 30.0], np.float32), "onehot_values"),
        numpy_helper.from_array(np.array([KV_HEADS], np.int64), "kv_heads"),
        numpy_helper.from_array(np.array([HEAD_DIM], np.int64), "head_dim"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [
        h.make_node("Gather", ["next_of", "input_ids"], ["next"]),
        h.make_node("OneHot", ["next", "depth", "onehot_values"], ["logits"], axis=-1),
        # The new cache positions: zeros [batch, kv_heads, seq, head_dim] after the past.
        h.make_node("Shape", ["input_ids"], ["ids_shape"]),
        h.make_node("Split", ["ids_shape"], ["b", "s"], num_outputs=2, axis=0),
        h.make_node("Concat", ["b", "kv_heads", "s", "head_dim"], ["new_shape"], axis=0),
        h.make_node("Expand", ["zero", "new_shape"], ["new_kv"]),
        h.make_node("Concat", [pk, "new_kv"], ["present.0.key"], axis=2),
        h.make_node("Concat", [pv, "new_kv"], ["present.0.value"], axis=2),
    ]
    g = h.make_graph(nodes, "think", inputs, outputs, initializer=consts)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 18)], producer_name="inferd-tests", ir_version=8)


def main(src, out):
    src, out = Path(src), Path(out)
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.add_tokens([AddedToken("<think>", special=False, normalized=False),
                    AddedToken("</think>", special=False, normalized=False)])
    ids = script_ids(tok)
    vocab = tok.get_vocab_size()
    eos = json.loads((src / "generation_config.json").read_text())["eos_token_id"]
    eos = eos[0] if isinstance(eos, list) else eos
    next_of = np.full(vocab, ids[0], np.int64)
    for a, b in zip(ids, ids[1:] + [eos]):
        next_of[a] = b
    stage = out.with_name("." + out.name)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    onnx.save(graph(next_of, vocab), str(stage / "model.onnx"))
    tok.save(str(stage / "tokenizer.json"))
    for name in ["tokenizer_config.json", "generation_config.json", "config.json", "chat_template.jinja"]:
        shutil.copy(src / name, stage / name)
    (stage / "model.toml").write_text(
        '# Scripted reasoning model for the tests (models/testdata/make_think_model.py).\n'
        'kind = "text-generation"\ntokenizer = "tokenizer.json"\n\n'
        '[generation]\ntemperature = 0.0\n')
    (stage / "script.json").write_text(json.dumps({"reasoning": REASONING, "answer": ANSWER}))
    shutil.rmtree(out, ignore_errors=True)
    stage.rename(out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
