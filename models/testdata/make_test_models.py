#!/usr/bin/env python3
"""Builds the small ONNX models the end-to-end tests use, with the `onnx` package only.

- ops:  one input per supported dtype, each with a dynamic batch dimension, and a simple known
        function per output, so results can be checked by hand.
- slow: a Loop of MatMul+Tanh whose iteration count is an input; it lets tests hold a worker
        busy for a chosen time (queueing, overload, deadlines, callers that leave).
- double: one float32 input x [N, 4] → y = 2x; the shape of a sensor model behind an MQTT route.

Usage: make_test_models.py OUT_DIR   (writes OUT_DIR/{ops,slow,double}/model.onnx)
"""
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T, helper as h, numpy_helper

OPSET = [h.make_opsetid("", 17)]


def ops_model():
    dims = {"a": ["N", 3], "b": ["N", 3], "c": ["N"], "d": ["N", 2], "e": ["N"], "f": ["N"]}
    types = {"a": T.FLOAT, "b": T.FLOAT16, "c": T.INT64, "d": T.INT32, "e": T.UINT8, "f": T.BOOL}
    inputs = [h.make_tensor_value_info(k, types[k], dims[k]) for k in dims]
    outputs = [h.make_tensor_value_info(k + "_out", types[k], dims[k]) for k in dims]
    consts = [
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(1, np.int64), "one_i64"),
        numpy_helper.from_array(np.array(3, np.int32), "three_i32"),
        numpy_helper.from_array(np.array(1, np.uint8), "one_u8"),
    ]
    nodes = [
        h.make_node("Mul", ["a", "two"], ["a2"]),
        h.make_node("Add", ["a2", "one"], ["a_out"]),          # a * 2 + 1
        h.make_node("Add", ["b", "b"], ["b_out"]),             # b + b
        h.make_node("Add", ["c", "one_i64"], ["c_out"]),       # c + 1
        h.make_node("Mul", ["d", "three_i32"], ["d_out"]),     # d * 3
        h.make_node("Add", ["e", "one_u8"], ["e_out"]),        # e + 1 (wraps)
        h.make_node("Not", ["f"], ["f_out"]),                  # not f
    ]
    g = h.make_graph(nodes, "ops", inputs, outputs, initializer=consts)
    return h.make_model(g, opset_imports=OPSET, producer_name="inferd-tests", ir_version=8)


def slow_model():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((64, 64)) / 8).astype(np.float32)
    body = h.make_graph(
        [
            h.make_node("MatMul", ["y_in", "w"], ["mm"]),
            h.make_node("Tanh", ["mm"], ["y_out"]),
            h.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [
            h.make_tensor_value_info("i", T.INT64, []),
            h.make_tensor_value_info("cond_in", T.BOOL, []),
            h.make_tensor_value_info("y_in", T.FLOAT, [1, 64]),
        ],
        [
            h.make_tensor_value_info("cond_out", T.BOOL, []),
            h.make_tensor_value_info("y_out", T.FLOAT, [1, 64]),
        ],
    )
    nodes = [
        h.make_node("Squeeze", ["iters"], ["n"]),
        h.make_node("Loop", ["n", "true", "x"], ["y"], body=body),
    ]
    g = h.make_graph(
        nodes,
        "slow",
        [
            h.make_tensor_value_info("x", T.FLOAT, [1, 64]),
            h.make_tensor_value_info("iters", T.INT64, [1]),
        ],
        [h.make_tensor_value_info("y", T.FLOAT, [1, 64])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(True), "true")],
    )
    return h.make_model(g, opset_imports=OPSET, producer_name="inferd-tests", ir_version=8)


def double_model():
    g = h.make_graph(
        [h.make_node("Add", ["x", "x"], ["y"])],
        "double",
        [h.make_tensor_value_info("x", T.FLOAT, ["N", 4])],
        [h.make_tensor_value_info("y", T.FLOAT, ["N", 4])],
    )
    return h.make_model(g, opset_imports=OPSET, producer_name="inferd-tests", ir_version=8)


def main():
    out = Path(sys.argv[1])
    for name, model in [("ops", ops_model()), ("slow", slow_model()), ("double", double_model())]:
        onnx.checker.check_model(model)
        (out / name).mkdir(parents=True, exist_ok=True)
        onnx.save(model, out / name / "model.onnx")


if __name__ == "__main__":
    main()
