#!/usr/bin/env python3
"""Builds the `intent` classification model from MiniLM with the `onnx` package: the MiniLM graph,
then mean pooling over the attention mask, L2 normalisation, and a MatMul against the normalised
label embeddings (each the mean of its descriptions' embeddings, computed by onnxruntime on the
same MiniLM). Scores are cosine similarities times a fixed scale, so the daemon's softmax gives
probabilities. No training.

Usage: build_intent.py MINILM_DIR OUT_DIR
"""
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer

SCALE = 20.0  # cosine similarity is in [-1, 1]; scale it so softmax is decisive


def embed(sess, tok, texts):
    out = []
    for t in texts:
        e = tok.encode(t)
        ids = np.array([e.ids], np.int64)
        mask = np.array([e.attention_mask], np.int64)
        (h,) = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        v = h[0].mean(0)
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


def main():
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    labels = tomllib.loads((Path(__file__).with_name("labels.toml")).read_text())["labels"]
    names = list(labels)
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.no_padding()
    sess = ort.InferenceSession(str(src / "model.onnx"), providers=["CPUExecutionProvider"])
    centroids = []
    for n in names:
        c = embed(sess, tok, labels[n]).mean(0)
        centroids.append(c / np.linalg.norm(c))
    matrix = (np.stack(centroids).T * SCALE).astype(np.float32)  # [384, labels]

    m = onnx.load(str(src / "model.onnx"))
    g = m.graph
    hidden = "last_hidden_state"
    g.initializer.extend([
        numpy_helper.from_array(matrix, "intent_labels"),
        numpy_helper.from_array(np.array([1], np.int64), "intent_axis1"),
        numpy_helper.from_array(np.array([-1], np.int64), "intent_axis_last"),
        numpy_helper.from_array(np.array(1e-9, np.float32), "intent_eps"),
    ])
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["intent_mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["intent_mask_f", "intent_axis_last"], ["intent_mask3"]),
        helper.make_node("Mul", [hidden, "intent_mask3"], ["intent_masked"]),
        helper.make_node("ReduceSum", ["intent_masked", "intent_axis1"], ["intent_sum"], keepdims=0),
        helper.make_node("ReduceSum", ["intent_mask3", "intent_axis1"], ["intent_count"], keepdims=0),
        helper.make_node("Max", ["intent_count", "intent_eps"], ["intent_count_safe"]),
        helper.make_node("Div", ["intent_sum", "intent_count_safe"], ["intent_mean"]),
        helper.make_node("LpNormalization", ["intent_mean"], ["intent_unit"], axis=-1, p=2),
        helper.make_node("MatMul", ["intent_unit", "intent_labels"], ["logits"]),
    ]
    g.node.extend(nodes)
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(names)]))
    onnx.checker.check_model(m)

    tmp = out.with_name("." + out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    onnx.save(m, str(tmp / "model.onnx"))
    shutil.copy(src / "tokenizer.json", tmp / "tokenizer.json")
    quoted = ", ".join(f'"{n}"' for n in names)
    (tmp / "model.toml").write_text(
        "# Zero-training intent classifier built from MiniLM by models/intent/build_intent.py.\n"
        'kind = "classification"\nfile = "model.onnx"\ntokenizer = "tokenizer.json"\n\n'
        f"[classification]\nlabels = [{quoted}]\n\n[embedding]\nmax_length = 128\n"
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


if __name__ == "__main__":
    main()
