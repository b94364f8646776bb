//! The decoder as an ONNX graph, in the optimum layout (the Python importer's graph.py computes
//! the same, though q/k/v and gate/up are one product here where they can be: `linear.rs`):
//!
//!   inputs   input_ids [B,S], attention_mask [B,T], position_ids [B,S] (int64),
//!            past_key_values.{i}.key/value [B, kv_heads, P, head_dim], and
//!            num_logits_to_keep [1] (default 0: every position)
//!   outputs  logits [B, kept, vocab] (float32), present.{i}.key/value [B, kv_heads, T, head_dim]
//!
//! or in the genai layout (`gqa.rs`: GroupQueryAttention, no `position_ids`). Activations are
//! fp32, or fp16 for `Precision::Fp16` (norms and softmax in fp32, logits returned as fp32).
//!
//! With `Precision::Native` weights are the source's own: block-quantized ones become
//! `MatMulNBits` initializers without being re-quantized (`blocks.rs`, `ops.rs`), and a quantized
//! embedding table is read by `GatherBlockQuantized` and, when the LM head is tied to it, shared
//! with the head's `MatMulNBits` (two initializers over the same bytes of the external data
//! file). Float weights are written as float32, and so is an embedding table with block minimums,
//! which `GatherBlockQuantized` cannot read. Other precisions convert each weight as it is read
//! (`Weight::as_stored`). Each weight is read from its mapped source (`weights.rs`) and written
//! out before the next, so memory stays at about the largest tensor (or a layer's q, k and v
//! together).

use std::io::Write;

use crate::arch::Arch;
use crate::error::Result;
use crate::onnx::{Attr, Data, DataType, Dim, ExternalData, Initializer, Model, ValueInfo};
use crate::ops::{f16_bytes, f32_bytes, Graph, NBits};
use crate::progress::Report;
use crate::source::Source;
use crate::weights::{Weight, Weights};
use crate::{Layout, Precision};

mod gemma;
mod gqa;
mod linear;
mod rotary;

use linear::Proj;

pub const KEEP: &str = "num_logits_to_keep";

pub struct Builder<'a, W: Write> {
    a: &'a Arch,
    w: Weights<'a>,
    g: Graph<W>,
    precision: Precision,
    /// The activations' type: Float, or Float16 for `Precision::Fp16`.
    act: DataType,
    genai: bool,
    /// Names of shared values the prologue makes.
    eps: String,
    scale: String,
    half_split: String,
    /// `[rotary_dim, head_dim − rotary_dim]`, for a partial rotary embedding; empty otherwise.
    rotary_split: String,
    cos: String,
    sin: String,
    mask: String,
    /// The mask of layers that attend within the sliding window (`Arch::windowed`).
    local_mask: String,
    /// The genai layout's lengths from the attention mask (`gqa.rs`).
    seqlens_k: String,
    total_len: String,
}

impl<W: Write> std::ops::Deref for Builder<'_, W> {
    type Target = Graph<W>;
    fn deref(&self) -> &Graph<W> {
        &self.g
    }
}

impl<W: Write> std::ops::DerefMut for Builder<'_, W> {
    fn deref_mut(&mut self) -> &mut Graph<W> {
        &mut self.g
    }
}

impl<'a, W: Write> Builder<'a, W> {
    pub fn new(
        a: &'a Arch,
        src: &'a dyn Source,
        (precision, layout): (Precision, Layout),
        ext: ExternalData<W>,
        report: Report<'a>,
    ) -> Self {
        let mut g = Graph::new(ext);
        g.int8_activations = precision == Precision::Int4;
        Builder {
            a,
            w: Weights::new(a, src, report),
            g,
            precision,
            act: if precision == Precision::Fp16 {
                DataType::Float16
            } else {
                DataType::Float
            },
            genai: layout == Layout::Genai,
            eps: String::new(),
            scale: String::new(),
            half_split: String::new(),
            rotary_split: String::new(),
            cos: String::new(),
            sin: String::new(),
            mask: String::new(),
            local_mask: String::new(),
            seqlens_k: String::new(),
            total_len: String::new(),
        }
    }

    fn rms_norm(&mut self, x: &str, name: &str) -> Result<String> {
        self.rms_norm_of(x, name, self.a.hidden_size)
    }

    /// RMSNorm over the last axis, of `n` values, with the weight `{name}.weight`.
    fn rms_norm_of(&mut self, x: &str, name: &str, n: usize) -> Result<String> {
        let mut w = self.w.floats(&format!("{name}.weight"), n)?;
        if let Some(g) = &self.a.gemma {
            w.iter_mut().for_each(|x| *x += g.norm_offset);
        }
        let w = self.act_weight(&format!("{name}.weight"), &[w.len() as i64], &w)?;
        let x = &self.cast(x, DataType::Float);
        let sq = self.op("Mul", &[x, x], "", vec![]);
        let var = self.op(
            "ReduceMean",
            &[&sq],
            "var",
            vec![("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))],
        );
        let eps = self.eps.clone();
        let sum = self.op("Add", &[&var, &eps], "", vec![]);
        let root = self.op("Sqrt", &[&sum], "", vec![]);
        let inv = self.op("Reciprocal", &[&root], "", vec![]);
        let y = self.op("Mul", &[x, &inv], "normed", vec![]);
        let y = self.cast(&y, self.act);
        Ok(self.op("Mul", &[&y, &w.name], name, vec![]))
    }

    /// `x` as `to` (itself when the activations are fp32: there is nothing to cast).
    fn cast(&mut self, x: &str, to: DataType) -> String {
        if self.act == DataType::Float {
            return x.to_owned();
        }
        self.op("Cast", &[x], "", vec![("to", Attr::Int(to as i64))])
    }

    /// A scalar constant in the activations' type.
    fn act_scalar(&mut self, hint: &str, v: f32) -> String {
        match self.act {
            DataType::Float => self.f32_scalar(hint, v),
            dt => self.raw(hint, dt, &[], f16_bytes(&[v])),
        }
    }

    /// A float weight in the activations' type.
    fn act_weight(&mut self, name: &str, dims: &[i64], v: &[f32]) -> Result<Initializer> {
        if self.act == DataType::Float {
            return self.external(name, DataType::Float, dims, &f32_bytes(v));
        }
        self.external(name, DataType::Float16, dims, &f16_bytes(v))
    }

    /// Layer `i`'s q, k and v projections of `x` (one product where their formats agree).
    fn qkv(&mut self, x: &str, i: usize) -> Result<Vec<String>> {
        let a = self.a;
        let (nh, kv, hd) = (a.num_heads, a.num_kv_heads, a.head_dim);
        let proj = |name: &str, out, order| Proj {
            name: format!("blk.{i}.{name}"),
            out,
            bias: a.attention_bias,
            order,
        };
        let parts = vec![
            proj("attn_q", nh * hd, self.w.unpermute(nh)),
            proj("attn_k", kv * hd, self.w.unpermute(kv)),
            proj("attn_v", kv * hd, None),
        ];
        let mut qkv = self.linears(x, &format!("blk.{i}.attn_qkv"), parts, a.hidden_size)?;
        if a.qk_norm {
            qkv[0] = self.head_norm(&qkv[0], &format!("blk.{i}.attn_q_norm"), nh)?;
            qkv[1] = self.head_norm(&qkv[1], &format!("blk.{i}.attn_k_norm"), kv)?;
        }
        Ok(qkv)
    }

    /// Qwen3's RMSNorm of each head of `y` `[B, S, n·hd]`, before the rotary embedding.
    fn head_norm(&mut self, y: &str, name: &str, n: usize) -> Result<String> {
        let hd = self.a.head_dim;
        let split = self.i64s(&[0, 0, n as i64, hd as i64]);
        let heads = self.op("Reshape", &[y, &split], "", vec![]);
        let normed = self.rms_norm_of(&heads, name, hd)?;
        let joined = self.i64s(&[0, 0, (n * hd) as i64]);
        Ok(self.op("Reshape", &[&normed, &joined], "", vec![]))
    }

    /// `[B, S, n·hd]` → `[B, n, S, hd]`
    fn heads(&mut self, y: &str, n: usize) -> String {
        let hd = self.a.head_dim as i64;
        let shape = self.i64s(&[0, 0, n as i64, hd]);
        let r = self.op("Reshape", &[y, &shape], "", vec![]);
        self.op(
            "Transpose",
            &[&r],
            "",
            vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        )
    }

    fn attention(&mut self, x: &str, i: usize) -> Result<String> {
        if self.genai {
            return self.gqa_attention(x, i);
        }
        let a = self.a;
        let (nh, kv, hd) = (a.num_heads, a.num_kv_heads, a.head_dim);
        let p = format!("blk.{i}");
        let qkv = self.qkv(x, i)?;
        let q = self.heads(&qkv[0], nh);
        let k = self.heads(&qkv[1], kv);
        let v = self.heads(&qkv[2], kv);
        let rq = self.rotate(&q);
        let scale = self.scale.clone();
        let q = self.op("Mul", &[&rq, &scale], "", vec![]);
        let k = self.rotate(&k);
        let (k_all, v_all) = (format!("present.{i}.key"), format!("present.{i}.value"));
        self.node(
            "Concat",
            "",
            &[&format!("past_key_values.{i}.key"), &k],
            &[&k_all],
            vec![("axis", Attr::Int(2))],
        );
        self.node(
            "Concat",
            "",
            &[&format!("past_key_values.{i}.value"), &v],
            &[&v_all],
            vec![("axis", Attr::Int(2))],
        );
        // Grouped-query attention without repeating K/V: each KV head's query heads as rows.
        let s = self.i64s(&[0, kv as i64, -1, hd as i64]);
        let qg = self.op("Reshape", &[&q, &s], "q_grouped", vec![]);
        let kt = self.op(
            "Transpose",
            &[&k_all],
            "",
            vec![("perm", Attr::Ints(vec![0, 1, 3, 2]))],
        );
        let scores = self.op("MatMul", &[&qg, &kt], "scores", vec![]);
        let s = self.i64s(&[0, nh as i64, -1, 0]);
        let scores = self.op("Reshape", &[&scores, &s], "", vec![]);
        let mut scores = self.cast(&scores, DataType::Float);
        if let Some(cap) = a.gemma.as_ref().and_then(|g| g.attn_softcap) {
            scores = self.softcap(&scores, cap);
        }
        let mask = if a.windowed(i) {
            self.local_mask.clone()
        } else {
            self.mask.clone()
        };
        let masked = self.op("Add", &[&scores, &mask], "", vec![]);
        let probs = self.op("Softmax", &[&masked], "", vec![("axis", Attr::Int(-1))]);
        let probs = self.cast(&probs, self.act);
        let s = self.i64s(&[0, kv as i64, -1, 0]);
        let probs = self.op("Reshape", &[&probs, &s], "", vec![]);
        let ctx = self.op("MatMul", &[&probs, &v_all], "ctx", vec![]);
        let s = self.i64s(&[0, nh as i64, -1, hd as i64]);
        let ctx = self.op("Reshape", &[&ctx, &s], "", vec![]);
        let ctx = self.op(
            "Transpose",
            &[&ctx],
            "",
            vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        let s = self.i64s(&[0, 0, (nh * hd) as i64]);
        let ctx = self.op("Reshape", &[&ctx, &s], "", vec![]);
        let o = Proj::new(format!("{p}.attn_output"), a.hidden_size);
        self.linear(&ctx, o, nh * hd)
    }

    fn mlp(&mut self, x: &str, i: usize) -> Result<String> {
        let a = self.a;
        let p = format!("blk.{i}");
        let parts = vec![
            Proj::new(format!("{p}.ffn_gate"), a.intermediate_size),
            Proj::new(format!("{p}.ffn_up"), a.intermediate_size),
        ];
        let gate_up = self.linears(x, &format!("{p}.ffn_gate_up"), parts, a.hidden_size)?;
        let (gate, up) = (&gate_up[0], &gate_up[1]);
        let act = if a.gemma.is_some() {
            self.gelu_tanh(gate)
        } else {
            let sig = self.op("Sigmoid", &[gate], "", vec![]);
            self.op("Mul", &[gate, &sig], "silu", vec![])
        };
        let h = self.op("Mul", &[&act, up], "", vec![]);
        let down = Proj::new(format!("{p}.ffn_down"), a.hidden_size);
        self.linear(&h, down, a.intermediate_size)
    }

    /// Rotary tables and the additive attention mask, shared by every layer.
    fn prologue(&mut self) -> Result<()> {
        let a = self.a;
        self.eps = self.f32_scalar("rms_eps", a.rms_norm_eps);
        if self.genai {
            return self.gqa_prologue();
        }
        self.scale = self.act_scalar("attn_scale", a.query_scale());
        self.rotary_tables();
        // Causal + padding: query row r (absolute position T−S+r) sees key j ≤ T−S+r with mask 1.
        let (b1, b2) = (self.i64s(&[1]), self.i64s(&[2]));
        let dim1 = |me: &mut Self, input: &str| {
            let shape = me.op("Shape", &[input], "", vec![]);
            let sl = me.op("Slice", &[&shape, &b1, &b2], "", vec![]);
            me.op("Squeeze", &[&sl], "", vec![])
        };
        let s = dim1(self, "input_ids");
        let t = dim1(self, "attention_mask");
        let (zero, step) = (self.i64_scalar(0), self.i64_scalar(1));
        let start = self.op("Sub", &[&t, &s], "", vec![]);
        let rows = self.op("Range", &[&start, &t, &step], "", vec![]);
        let cols = self.op("Range", &[&zero, &t, &step], "", vec![]);
        let (ax0, ax1, ax01, ax12) = (
            self.i64s(&[0]),
            self.i64s(&[1]),
            self.i64s(&[0, 1]),
            self.i64s(&[1, 2]),
        );
        let c = self.op("Unsqueeze", &[&cols, &ax0], "", vec![]);
        let r = self.op("Unsqueeze", &[&rows, &ax1], "", vec![]);
        let causal = self.op("LessOrEqual", &[&c, &r], "", vec![]);
        let m = self.op(
            "Cast",
            &["attention_mask"],
            "",
            vec![("to", Attr::Int(DataType::Bool as i64))],
        );
        let pad = self.op("Unsqueeze", &[&m, &ax12], "", vec![]);
        let (open, shut) = (
            self.f32_scalar("zero", 0.0),
            self.f32_scalar("lowest", f32::MIN),
        );
        let mask = |me: &mut Self, allowed: &str, hint: &str| {
            let allowed = me.op("Unsqueeze", &[allowed, &ax01], "", vec![]);
            let allowed = me.op("And", &[&allowed, &pad], "", vec![]);
            me.op("Where", &[&allowed, &open, &shut], hint, vec![])
        };
        self.mask = mask(self, &causal, "mask");
        if let Some(w) = a.sliding_window {
            // And fewer than `w` positions back (Mistral's window; Gemma 2's local layers).
            let back = self.op("Sub", &[&r, &c], "", vec![]);
            let w = self.i64_scalar(w as i64);
            let near = self.op("Less", &[&back, &w], "", vec![]);
            let local = self.op("And", &[&causal, &near], "", vec![]);
            self.local_mask = mask(self, &local, "local_mask");
        }
        Ok(())
    }

    /// Only the last `num_logits_to_keep` positions reach the LM head (0 keeps all).
    fn keep_last(&mut self, x: &str) -> String {
        let (b1, b2, zero) = (self.i64s(&[1]), self.i64s(&[2]), self.i64s(&[0]));
        let shape = self.op("Shape", &[x], "", vec![]);
        let seq = self.op("Slice", &[&shape, &b1, &b2], "", vec![]);
        let some = self.op("Greater", &[KEEP, &zero], "", vec![]);
        let k = self.op("Where", &[&some, KEEP, &seq], "", vec![]);
        let from = self.op("Neg", &[&k], "", vec![]);
        let (end, axis) = (self.i64s(&[i64::MAX]), self.i64s(&[1]));
        self.op("Slice", &[x, &from, &end, &axis], "kept", vec![])
    }

    /// The embedding lookup; the table's initializers when the LM head can share them.
    fn embed(&mut self) -> Result<(String, Option<NBits>)> {
        let a = self.a;
        let (v, h) = (a.vocab_size, a.hidden_size);
        let native = self.precision == Precision::Native;
        match self.w.get("token_embd.weight", v, h, None)? {
            // GatherBlockQuantized has no block minimums.
            Weight::Blocks(l, b) if native && !l.affine => {
                let w = self.nbits("token_embd", l, &b, v, h)?;
                let (rows, k) = (v as i64, w.k as i64);
                // The same bytes as the head's weight, as the 2-D table GatherBlockQuantized reads.
                let table =
                    w.b.alias("token_embd.table", DataType::Uint8, &[rows, k / 2]);
                let data = table.name.clone();
                self.inits.push(table);
                let (scales, zeros) = (w.scales.clone(), w.zeros.name.clone());
                let x = self.op_in(
                    "GatherBlockQuantized",
                    "com.microsoft",
                    &[&data, "input_ids", &scales, &zeros],
                    "embed",
                    vec![
                        ("gather_axis", Attr::Int(0)),
                        ("quantize_axis", Attr::Int(1)),
                        ("block_size", Attr::Int(w.layout.block as i64)),
                        ("bits", Attr::Int(w.layout.bits.into())),
                    ],
                );
                if w.k == w.cols {
                    return Ok((x, Some(w)));
                }
                // A split 8-bit table: each row is its high halves, then its low halves.
                let halves = self.i64s(&[0, 0, 2, h as i64]);
                let halves = self.op("Reshape", &[&x, &halves], "", vec![]);
                let axis = self.i64s(&[2]);
                let x = self.op(
                    "ReduceSum",
                    &[&halves, &axis],
                    "embed",
                    vec![("keepdims", Attr::Int(0))],
                );
                Ok((x, Some(w)))
            }
            w => {
                let floats = w.into_floats();
                let dims = [v as i64, h as i64];
                if self.precision != Precision::Int4 {
                    let t = self.act_weight("token_embd.weight", &dims, &floats)?;
                    return Ok((
                        self.op("Gather", &[&t.name, "input_ids"], "embed", vec![]),
                        None,
                    ));
                }
                // As the Python importer's int4: the table in fp16, rows cast after the lookup.
                let half = f16_bytes(&floats);
                let t = self.external("token_embd.weight", DataType::Float16, &dims, &half)?;
                let x = self.op("Gather", &[&t.name, "input_ids"], "", vec![]);
                let to = Attr::Int(DataType::Float as i64);
                Ok((self.op("Cast", &[&x], "embed", vec![("to", to)]), None))
            }
        }
    }

    pub fn build(mut self, metadata: Vec<(String, String)>) -> Result<(Model, W)> {
        let a = self.a;
        let named = |s: &str| Dim::Named(s.to_owned());
        let (b, s, t, p) = (
            "batch_size",
            "sequence_length",
            "total_sequence_length",
            "past_sequence_length",
        );
        let info = |name: &str, dtype, dims: Vec<Dim>| ValueInfo {
            name: name.to_owned(),
            dtype,
            dims,
        };
        let mut inputs = vec![
            info("input_ids", DataType::Int64, vec![named(b), named(s)]),
            info("attention_mask", DataType::Int64, vec![named(b), named(t)]),
            info(KEEP, DataType::Int64, vec![Dim::Fixed(1)]),
        ];
        if !self.genai {
            inputs.push(info(
                "position_ids",
                DataType::Int64,
                vec![named(b), named(s)],
            ));
        }
        // An input with a default (an initializer of the same name): callers may leave it out.
        self.inits.push(Initializer {
            name: KEEP.into(),
            dtype: DataType::Int64,
            dims: vec![1],
            data: Data::Raw(0i64.to_le_bytes().to_vec()),
        });
        let mut outputs = vec![info(
            "logits",
            DataType::Float,
            vec![
                named(b),
                named("kept_sequence_length"),
                Dim::Fixed(a.vocab_size as i64),
            ],
        )];
        let kv = Dim::Fixed(a.num_kv_heads as i64);
        // The builder's cache shapes leave the head size symbolic (it is in genai_config.json).
        let hd = if self.genai {
            named("head_size")
        } else {
            Dim::Fixed(a.head_dim as i64)
        };
        for i in 0..a.num_layers {
            for kind in ["key", "value"] {
                inputs.push(info(
                    &format!("past_key_values.{i}.{kind}"),
                    self.act,
                    vec![named(b), kv.clone(), named(p), hd.clone()],
                ));
                outputs.push(info(
                    &format!("present.{i}.{kind}"),
                    self.act,
                    vec![named(b), kv.clone(), named(t), hd.clone()],
                ));
            }
        }
        self.prologue()?;
        let (x, table) = self.embed()?;
        let mut x = self.scale_embeddings(&x);
        for i in 0..a.num_layers {
            let n = self.rms_norm(&x, &format!("blk.{i}.attn_norm"))?;
            let h = self.attention(&n, i)?;
            let h = self.post_norm(&h, &format!("blk.{i}.post_attention_norm"))?;
            x = self.op("Add", &[&x, &h], "resid", vec![]);
            let n = self.rms_norm(&x, &format!("blk.{i}.ffn_norm"))?;
            let h = self.mlp(&n, i)?;
            let h = self.post_norm(&h, &format!("blk.{i}.post_ffw_norm"))?;
            x = self.op("Add", &[&x, &h], "resid", vec![]);
        }
        let kept = self.keep_last(&x);
        let x = self.rms_norm(&kept, "output_norm")?;
        let logits = match (a.tie_word_embeddings, table) {
            (true, Some(w)) => self.matmul_nbits(&x, &w, 3, "lm_head"),
            (true, None) => {
                let head = Proj::new("token_embd".into(), a.vocab_size);
                self.linear(&x, head, a.hidden_size)?
            }
            (false, _) => {
                let head = Proj::new("output".into(), a.vocab_size);
                self.linear(&x, head, a.hidden_size)?
            }
        };
        let logits = self.cast(&logits, DataType::Float);
        let logits = self.final_softcap(&logits);
        self.node("Identity", "", &[&logits], &["logits"], vec![]);
        self.g.finish(inputs, outputs, metadata)
    }
}
