"""Builds the decoder as an ONNX graph in the optimum/transformers.js layout:

    inputs   input_ids [B,S] int64, attention_mask [B,T] int64, position_ids [B,S] int64,
             past_key_values.{i}.key/value [B, kv_heads, P, head_dim]
    outputs  logits [B,S,vocab] float32, present.{i}.key/value [B, kv_heads, T, head_dim]

with T = P + S, plus an optional input `num_logits_to_keep` [1] (default 0: every position). Standard ONNX operators only (opset 17), except `com.microsoft.MatMulNBits` for
int4 weights, so the graph runs on every execution provider and on onnxruntime-genai.

`layout="genai"` builds what the onnxruntime-genai model builder publishes instead: no
`position_ids` (positions come from the attention mask), attention as the contrib operator
`com.microsoft.GroupQueryAttention` with rotary embedding inside it, and a symbolic head size
in the cache shapes (read from genai_config.json).

Weights are pulled from the source one at a time and turned into initializers straight away,
so peak memory is about the size of the output plus one tensor.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper

from .errors import ImportFailed

OPSET = 17
INT4_BLOCK = 32
KEEP = "num_logits_to_keep"


class Builder:
    def __init__(self, arch, precision, on_weight=None, on_quantized=None, layout="optimum"):
        self.a = arch
        self.precision = precision
        self.genai = layout == "genai"
        self.act = TensorProto.FLOAT16 if precision == "fp16" else TensorProto.FLOAT
        self.act_np = np.float16 if precision == "fp16" else np.float32
        # Initializers are written straight into the model: helper.make_graph/make_model would copy
        # every weight (protobuf messages are copied on assignment), doubling peak memory.
        self.model = onnx.ModelProto()
        self.nodes = []
        self._n = 0
        self.on_weight = on_weight or (lambda name: None)
        self.on_quantized = on_quantized or (lambda name: None)
        if precision == "int4":
            from onnxruntime.quantization.matmul_nbits_quantizer import (
                DefaultWeightOnlyQuantConfig,
                DefaultWeightOnlyQuantizer,
            )

            self.quantizer = DefaultWeightOnlyQuantizer(
                DefaultWeightOnlyQuantConfig(block_size=INT4_BLOCK, is_symmetric=True)
            )

    # -- plumbing -----------------------------------------------------------------------------
    def _name(self, hint):
        self._n += 1
        return f"{hint}_{self._n}"

    def op(self, op_type, inputs, hint=None, n_out=1, domain=None, **attrs):
        outs = [self._name(hint or op_type) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0] + "_node", domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, name=None, dtype=None):
        arr = np.ascontiguousarray(value, dtype=dtype)
        name = name or self._name("const")
        t = self.model.graph.initializer.add()
        t.name = name
        t.data_type = helper.np_dtype_to_tensor_dtype(arr.dtype)
        t.dims.extend(arr.shape)
        t.raw_data = arr.tobytes()
        return name

    def weight(self, source_name, check_shape=None):
        w = self.source.tensor(source_name)
        if check_shape is not None and tuple(w.shape) != tuple(check_shape):
            raise ImportFailed(
                f"{source_name} has shape {tuple(w.shape)}, but the config implies {tuple(check_shape)}"
            )
        self.on_weight(source_name)
        return w

    # -- layers ---------------------------------------------------------------------------------
    def linear(self, x, name, out_f, in_f, bias=False):
        """x @ W.T (+ b) for a Hugging Face [out, in] weight."""
        w = self.weight(f"{name}.weight", (out_f, in_f))
        if self.precision == "int4":
            packed, scales = self.quantize(w)
            del w
            p = self.const(packed, f"{name}.weight_Q4")
            s = self.const(scales, f"{name}.weight_scales")
            y = self.op(
                "MatMulNBits", [x, p, s], name, domain="com.microsoft",
                K=in_f, N=out_f, bits=4, block_size=INT4_BLOCK, accuracy_level=4,
            )
            self.on_quantized(name)
        else:
            wt = np.ascontiguousarray(w.T, dtype=self.act_np)  # [in, out]
            del w
            y = self.op("MatMul", [x, self.const(wt, f"{name}.weight_T")], name)
            del wt
        if bias:
            b = self.weight(f"{name}.bias", (out_f,)).astype(self.act_np)
            y = self.op("Add", [y, self.const(b, f"{name}.bias")], name + "_bias")
        return y

    def quantize(self, w, rows=4096):
        """Blockwise int4 of W.T for MatMulNBits, a slice of output features at a time: the packed
        layout is [N, k_blocks, blob], so slices stack along N, and no full transposed copy of a
        large weight (the LM head) is ever held."""
        parts = [self.quantizer.qbits_block_quant(np.ascontiguousarray(w[r : r + rows].T)) for r in range(0, w.shape[0], rows)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def rms_norm(self, x, name):
        w = self.weight(f"{name}.weight", (self.a.hidden_size,))
        if self.act != TensorProto.FLOAT:
            x = self.op("Cast", [x], "to_f32", to=TensorProto.FLOAT)
        var = self.op("ReduceMean", [self.op("Mul", [x, x])], "var", axes=[-1], keepdims=1)
        inv = self.op("Reciprocal", [self.op("Sqrt", [self.op("Add", [var, self.eps])])])
        y = self.op("Mul", [x, inv], "normed")
        if self.act != TensorProto.FLOAT:
            y = self.op("Cast", [y], "to_act", to=self.act)
        return self.op("Mul", [y, self.const(w.astype(self.act_np), f"{name}.weight")], name)

    def rotate(self, x):
        """x * cos + rotate_half(x) * sin, for x [B, heads, S, head_dim]."""
        half = self.a.head_dim // 2
        x1, x2 = self.op("Split", [x, self.half_split], "half", n_out=2, axis=-1)
        rot = self.op("Concat", [self.op("Neg", [x2]), x1], "rot_half", axis=-1)
        return self.op("Add", [self.op("Mul", [x, self.cos]), self.op("Mul", [rot, self.sin])], "rope")

    def heads(self, y, n):
        """[B, S, n*hd] -> [B, n, S, hd]"""
        r = self.op("Reshape", [y, self.const([0, 0, n, self.a.head_dim], dtype=np.int64)])
        return self.op("Transpose", [r], perm=[0, 2, 1, 3])

    def attention(self, x, i):
        if self.genai:
            return self.group_query_attention(x, i)
        a = self.a
        p = f"model.layers.{i}.self_attn"
        q = self.heads(self.linear(x, f"{p}.q_proj", a.num_heads * a.head_dim, a.hidden_size, a.attention_bias), a.num_heads)
        k = self.heads(self.linear(x, f"{p}.k_proj", a.num_kv_heads * a.head_dim, a.hidden_size, a.attention_bias), a.num_kv_heads)
        v = self.heads(self.linear(x, f"{p}.v_proj", a.num_kv_heads * a.head_dim, a.hidden_size, a.attention_bias), a.num_kv_heads)
        q = self.op("Mul", [self.rotate(q), self.scale])
        k = self.rotate(k)
        k_all = f"present.{i}.key"
        v_all = f"present.{i}.value"
        self.nodes.append(helper.make_node("Concat", [f"past_key_values.{i}.key", k], [k_all], axis=2, name=f"cat_k{i}"))
        self.nodes.append(helper.make_node("Concat", [f"past_key_values.{i}.value", v], [v_all], axis=2, name=f"cat_v{i}"))
        # Grouped-query attention without repeating K/V: fold each KV head's query heads into rows.
        kv, nh, hd = a.num_kv_heads, a.num_heads, a.head_dim
        qg = self.op("Reshape", [q, self.const([0, kv, -1, hd], dtype=np.int64)], "q_grouped")
        kt = self.op("Transpose", [k_all], perm=[0, 1, 3, 2])
        scores = self.op("MatMul", [qg, kt], "scores")  # [B, kv, rep*S, T]
        scores = self.op("Reshape", [scores, self.const([0, nh, -1, 0], dtype=np.int64)])  # [B, nh, S, T]
        if self.act != TensorProto.FLOAT:
            scores = self.op("Cast", [scores], to=TensorProto.FLOAT)
        probs = self.op("Softmax", [self.op("Add", [scores, self.mask])], axis=-1)
        if self.act != TensorProto.FLOAT:
            probs = self.op("Cast", [probs], to=self.act)
        probs = self.op("Reshape", [probs, self.const([0, kv, -1, 0], dtype=np.int64)])
        ctx = self.op("MatMul", [probs, v_all], "ctx")  # [B, kv, rep*S, hd]
        ctx = self.op("Reshape", [ctx, self.const([0, nh, -1, hd], dtype=np.int64)])
        ctx = self.op("Transpose", [ctx], perm=[0, 2, 1, 3])
        ctx = self.op("Reshape", [ctx, self.const([0, 0, nh * hd], dtype=np.int64)])
        return self.linear(ctx, f"{p}.o_proj", a.hidden_size, nh * hd)

    def group_query_attention(self, x, i):
        a = self.a
        p = f"model.layers.{i}.self_attn"
        q = self.linear(x, f"{p}.q_proj", a.num_heads * a.head_dim, a.hidden_size, a.attention_bias)
        k = self.linear(x, f"{p}.k_proj", a.num_kv_heads * a.head_dim, a.hidden_size, a.attention_bias)
        v = self.linear(x, f"{p}.v_proj", a.num_kv_heads * a.head_dim, a.hidden_size, a.attention_bias)
        ctx = self._name("gqa")
        self.nodes.append(helper.make_node(
            "GroupQueryAttention",
            [q, k, v, f"past_key_values.{i}.key", f"past_key_values.{i}.value", self.seqlens_k, self.total_len,
             self.cos_cache, self.sin_cache],
            [ctx, f"present.{i}.key", f"present.{i}.value"],
            name=f"gqa{i}", domain="com.microsoft",
            num_heads=a.num_heads, kv_num_heads=a.num_kv_heads, do_rotary=1, rotary_interleaved=0,
        ))
        return self.linear(ctx, f"{p}.o_proj", a.hidden_size, a.num_heads * a.head_dim)

    def mlp(self, x, i):
        a = self.a
        p = f"model.layers.{i}.mlp"
        gate = self.linear(x, f"{p}.gate_proj", a.intermediate_size, a.hidden_size)
        up = self.linear(x, f"{p}.up_proj", a.intermediate_size, a.hidden_size)
        act = self.op("Mul", [gate, self.op("Sigmoid", [gate])], "silu")
        return self.linear(self.op("Mul", [act, up]), f"{p}.down_proj", a.hidden_size, a.intermediate_size)

    # -- the model ------------------------------------------------------------------------------
    def _prologue(self):
        """Rotary tables and the additive attention mask, shared by every layer."""
        a = self.a
        i64 = lambda v: self.const(v, dtype=np.int64)
        self.eps = self.const(np.float32(a.rms_norm_eps), "rms_eps")
        inv_freq = 1.0 / (a.rope_theta ** (np.arange(0, a.head_dim, 2, dtype=np.float64) / a.head_dim))
        if self.genai:
            # GroupQueryAttention: per-row lengths from the mask, rotary tables for every position.
            angles = np.arange(a.context_length, dtype=np.float64)[:, None] * inv_freq[None]
            self.cos_cache = self.const(np.cos(angles).astype(self.act_np), "cos_cache")
            self.sin_cache = self.const(np.sin(angles).astype(self.act_np), "sin_cache")
            lengths = self.op("ReduceSum", ["attention_mask", i64([1])], keepdims=0)
            self.seqlens_k = self.op("Cast", [self.op("Sub", [lengths, self.const(np.int64(1))])], "seqlens_k", to=TensorProto.INT32)
            total = self.op("Squeeze", [self.op("Slice", [self.op("Shape", ["attention_mask"]), i64([1]), i64([2])]), i64([0])])
            self.total_len = self.op("Cast", [total], "total_len", to=TensorProto.INT32)
            return
        self.scale = self.const(np.array(1.0 / np.sqrt(a.head_dim), dtype=self.act_np), "attn_scale")
        self.half_split = i64([a.head_dim // 2, a.head_dim // 2])
        pos = self.op("Unsqueeze", [self.op("Cast", ["position_ids"], to=TensorProto.FLOAT), i64([-1])])
        freqs = self.op("Mul", [pos, self.const(inv_freq.astype(np.float32), "rope_inv_freq")])
        emb = self.op("Concat", [freqs, freqs], axis=-1)  # [B, S, hd]
        cos = self.op("Unsqueeze", [self.op("Cos", [emb]), i64([1])])
        sin = self.op("Unsqueeze", [self.op("Sin", [emb]), i64([1])])
        if self.act != TensorProto.FLOAT:
            cos = self.op("Cast", [cos], to=self.act)
            sin = self.op("Cast", [sin], to=self.act)
        self.cos, self.sin = cos, sin
        # Causal + padding mask: query row r (absolute position T-S+r) sees key j <= T-S+r with mask 1.
        s = self.op("Squeeze", [self.op("Slice", [self.op("Shape", ["input_ids"]), i64([1]), i64([2])])])
        t = self.op("Squeeze", [self.op("Slice", [self.op("Shape", ["attention_mask"]), i64([1]), i64([2])])])
        rows = self.op("Range", [self.op("Sub", [t, s]), t, self.const(np.int64(1))])
        cols = self.op("Range", [self.const(np.int64(0)), t, self.const(np.int64(1))])
        causal = self.op("LessOrEqual", [self.op("Unsqueeze", [cols, i64([0])]), self.op("Unsqueeze", [rows, i64([1])])])
        pad = self.op("Unsqueeze", [self.op("Cast", ["attention_mask"], to=TensorProto.BOOL), i64([1, 2])])
        allowed = self.op("And", [self.op("Unsqueeze", [causal, i64([0, 1])]), pad])
        lowest = np.float32(np.finfo(np.float32).min)
        self.mask = self.op("Where", [allowed, self.const(np.float32(0)), self.const(lowest)], "mask")

    def keep_last(self, x):
        """Only the last `num_logits_to_keep` positions reach the LM head (0, the default, keeps
        all, as the layout expects). A runtime that needs one token's logits after a prompt
        feeds 1 and skips the head's work on every other position: the largest single cost of a
        long prompt."""
        i64 = lambda v: self.const(v, dtype=np.int64)
        seq = self.op("Slice", [self.op("Shape", [x]), i64([1]), i64([2])])
        k = self.op("Where", [self.op("Greater", [KEEP, i64([0])]), KEEP, seq])
        return self.op("Slice", [x, self.op("Neg", [k]), i64([np.iinfo(np.int64).max]), i64([1])], "kept")

    def build(self, source):
        self.source = source
        a = self.a
        B, S, T, P = "batch_size", "sequence_length", "total_sequence_length", "past_sequence_length"
        inputs = [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [B, S]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [B, T]),
        ]
        if not self.genai:
            inputs.append(helper.make_tensor_value_info("position_ids", TensorProto.INT64, [B, S]))
        # An input with a default (an initializer of the same name): callers may leave it out.
        inputs.append(helper.make_tensor_value_info(KEEP, TensorProto.INT64, [1]))
        self.const([0], KEEP, dtype=np.int64)
        hd = "head_size" if self.genai else a.head_dim
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [B, "kept_sequence_length", a.vocab_size])]
        for i in range(a.num_layers):
            for kind in ("key", "value"):
                inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", self.act, [B, a.num_kv_heads, P, hd]))
                outputs.append(helper.make_tensor_value_info(f"present.{i}.{kind}", self.act, [B, a.num_kv_heads, T, hd]))
        self._prologue()

        emb = self.weight("model.embed_tokens.weight", (a.vocab_size, a.hidden_size))
        table_np = np.float16 if self.precision in ("fp16", "int4") else np.float32
        table = self.const(emb.astype(table_np), "model.embed_tokens.weight")
        del emb
        x = self.op("Gather", [table, "input_ids"], "embed")
        if table_np != self.act_np:
            x = self.op("Cast", [x], to=self.act)
        for i in range(a.num_layers):
            p = f"model.layers.{i}"
            h = self.attention(self.rms_norm(x, f"{p}.input_layernorm"), i)
            x = self.op("Add", [x, h], "resid")
            h = self.mlp(self.rms_norm(x, f"{p}.post_attention_layernorm"), i)
            x = self.op("Add", [x, h], "resid")
        x = self.rms_norm(self.keep_last(x), "model.norm")
        head = "lm_head" if not a.tie_word_embeddings else "model.embed_tokens"
        logits = self.linear(x, head, a.vocab_size, a.hidden_size)
        if self.act != TensorProto.FLOAT:
            logits = self.op("Cast", [logits], to=TensorProto.FLOAT)
        self.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits_out"))

        model = self.model
        model.ir_version = 8
        model.producer_name = "inferd-import"
        model.opset_import.append(helper.make_opsetid("", OPSET))
        if self.precision == "int4" or self.genai:
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        g = model.graph
        g.name = f"{a.family}-decoder"
        g.node.extend(self.nodes)
        g.input.extend(inputs)
        g.output.extend(outputs)
        return model


def total_bytes(model):
    return sum(len(t.raw_data) for t in model.graph.initializer)
