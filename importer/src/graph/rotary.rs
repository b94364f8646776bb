//! The optimum layout's rotary embedding: cos and sin computed in the graph from
//! `position_ids` (Llama 3.1's divisors and longrope's switch between two factor lists
//! included), applied to the leading `rotary_dim` dimensions of each head (all of them unless the
//! embedding is partial, as Phi-4-mini's is).

use std::io::Write;

use super::Builder;
use crate::onnx::{Attr, DataType};
use crate::ops::f32_bytes;

impl<W: Write> Builder<'_, W> {
    /// The rotary tables `[B, 1, S, rotary_dim]` every layer shares (`self.cos`, `self.sin`).
    pub(super) fn rotary_tables(&mut self) {
        let a = self.a;
        let hd = a.head_dim;
        let rd = a.rotary_dim as i64;
        self.half_split = self.i64s(&[rd / 2, rd / 2]);
        if a.rotary_dim < hd {
            self.rotary_split = self.i64s(&[rd, hd as i64 - rd]);
        }
        let inv_table = |me: &mut Self, name: &str, f: Vec<f64>| {
            let f: Vec<f32> = f.into_iter().map(|f| f as f32).collect();
            me.raw(name, DataType::Float, &[f.len() as i64], f32_bytes(&f))
        };
        let pos = self.op(
            "Cast",
            &["position_ids"],
            "",
            vec![("to", Attr::Int(DataType::Float as i64))],
        );
        let last = self.i64s(&[-1]);
        let pos = self.op("Unsqueeze", &[&pos, &last], "", vec![]);
        let inv = match a.inv_freq_long() {
            None => inv_table(self, "rope_inv_freq", a.inv_freq()),
            // Longrope: a row whose longest position is past the original context rotates with
            // the long factors (transformers' dynamic update), `[B, 1, rotary_dim / 2]`.
            Some(long) => {
                let short = inv_table(self, "rope_inv_freq_short", a.inv_freq());
                let long = inv_table(self, "rope_inv_freq_long", long);
                let original = a.longrope.as_ref().map_or(0, |l| l.original_context);
                let last_allowed = self.i64s(&[original as i64 - 1]);
                let longest = self.op(
                    "ReduceMax",
                    &["position_ids"],
                    "",
                    vec![("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(1))],
                );
                let longest = self.op("Unsqueeze", &[&longest, &last], "", vec![]);
                let beyond = self.op("Greater", &[&longest, &last_allowed], "", vec![]);
                self.op("Where", &[&beyond, &long, &short], "rope_inv_freq", vec![])
            }
        };
        let freqs = self.op("Mul", &[&pos, &inv], "", vec![]);
        let emb = self.concat_last(&[&freqs, &freqs], "");
        let one = self.i64s(&[1]);
        let (mut cos, mut sin) = (
            self.op("Cos", &[&emb], "", vec![]),
            self.op("Sin", &[&emb], "", vec![]),
        );
        if let Some(l) = a.longrope.as_ref().filter(|l| l.attention_factor != 1.0) {
            let factor = self.f32_scalar("rope_attention_factor", l.attention_factor as f32);
            cos = self.op("Mul", &[&cos, &factor], "", vec![]);
            sin = self.op("Mul", &[&sin, &factor], "", vec![]);
        }
        let cos = self.op("Unsqueeze", &[&cos, &one], "", vec![]);
        self.cos = self.cast(&cos, self.act);
        let sin = self.op("Unsqueeze", &[&sin, &one], "", vec![]);
        self.sin = self.cast(&sin, self.act);
    }

    /// x·cos + rotate_half(x)·sin, for x `[B, heads, S, head_dim]`; with a partial rotary
    /// embedding, on its leading `rotary_dim` dimensions only.
    pub(super) fn rotate(&mut self, x: &str) -> String {
        if self.rotary_split.is_empty() {
            return self.rotate_all(x);
        }
        let split = self.rotary_split.clone();
        let [r, pass]: [String; 2] = self
            .split_last(x, &split, &["rot", "pass"])
            .try_into()
            .expect("two pieces");
        let rotated = self.rotate_all(&r);
        self.concat_last(&[&rotated, &pass], "rope")
    }

    fn rotate_all(&mut self, x: &str) -> String {
        let split = self.half_split.clone();
        let [h1, h2]: [String; 2] = self
            .split_last(x, &split, &["half", "half"])
            .try_into()
            .expect("two halves");
        let neg = self.op("Neg", &[&h2], "", vec![]);
        let rot = self.concat_last(&[&neg, &h1], "rot_half");
        let (cos, sin) = (self.cos.clone(), self.sin.clone());
        let a = self.op("Mul", &[x, &cos], "", vec![]);
        let b = self.op("Mul", &[&rot, &sin], "", vec![]);
        self.op("Add", &[&a, &b], "rope", vec![])
    }
}
