//! The genai layout's attention, as onnxruntime-genai's model builder writes it: one
//! `com.microsoft.GroupQueryAttention` a layer, with the rotary embedding inside it (tables for
//! every position up to the context length) and each row's length read from the attention mask
//! (`seqlens_k`, `total_sequence_length`); no `position_ids` input.

use std::io::Write;

use super::linear::Proj;
use super::Builder;
use crate::error::Result;
use crate::onnx::{Attr, DataType};
use crate::ops::{f16_bytes, f32_bytes};

impl<W: Write> Builder<'_, W> {
    /// Rotary tables `[context, head_dim / 2]`, and the mask's lengths, shared by every layer.
    pub(super) fn gqa_prologue(&mut self) -> Result<()> {
        let a = self.a;
        if a.longrope.is_some() {
            // GroupQueryAttention reads one table; the builder switches two with an If node.
            return Err(crate::error::Error::Unsupported(
                "longrope in the genai layout (GroupQueryAttention takes one rotary table); import with --layout optimum".into(),
            ));
        }
        // With a partial rotary embedding the tables are narrower than the head.
        let hd = a.rotary_dim;
        if hd < a.head_dim && !(hd / 2).is_multiple_of(8) {
            return Err(crate::error::Error::Unsupported(format!(
                "a partial rotary embedding of {hd} dimensions in the genai layout (GroupQueryAttention needs half of it to be a multiple of 8); import with --layout optimum"
            )));
        }
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        let inv_freq = a.inv_freq();
        for pos in 0..a.context_length {
            for f in &inv_freq {
                let angle = pos as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let dims = [a.context_length as i64, (hd / 2) as i64];
        let table = |me: &mut Self, name: &str, v: &[f32]| match me.act {
            DataType::Float => me.external(name, DataType::Float, &dims, &f32_bytes(v)),
            dt => me.external(name, dt, &dims, &f16_bytes(v)),
        };
        self.cos = table(self, "cos_cache", &cos)?.name;
        self.sin = table(self, "sin_cache", &sin)?.name;
        let one = self.i64s(&[1]);
        let lengths = self.op(
            "ReduceSum",
            &["attention_mask", &one],
            "",
            vec![("keepdims", Attr::Int(0))],
        );
        let step = self.i64_scalar(1);
        let last = self.op("Sub", &[&lengths, &step], "", vec![]);
        let int32 = || vec![("to", Attr::Int(DataType::Int32 as i64))];
        self.seqlens_k = self.op("Cast", &[&last], "seqlens_k", int32());
        let shape = self.op("Shape", &["attention_mask"], "", vec![]);
        let two = self.i64s(&[2]);
        let t = self.op("Slice", &[&shape, &one, &two], "", vec![]);
        let zero = self.i64s(&[0]);
        let t = self.op("Squeeze", &[&t, &zero], "", vec![]);
        self.total_len = self.op("Cast", &[&t], "total_len", int32());
        Ok(())
    }

    pub(super) fn gqa_attention(&mut self, x: &str, i: usize) -> Result<String> {
        let a = self.a;
        let (nh, kv, hd) = (a.num_heads, a.num_kv_heads, a.head_dim);
        let qkv = self.qkv(x, i)?;
        let ctx = self.name("gqa");
        let (past_k, past_v) = (
            format!("past_key_values.{i}.key"),
            format!("past_key_values.{i}.value"),
        );
        let (seqlens, total, cos, sin) = (
            self.seqlens_k.clone(),
            self.total_len.clone(),
            self.cos.clone(),
            self.sin.clone(),
        );
        let window = if a.windowed(i) {
            a.sliding_window.map_or(-1, |w| w as i64)
        } else {
            -1
        };
        let mut attrs = vec![
            ("num_heads", Attr::Int(nh as i64)),
            ("kv_num_heads", Attr::Int(kv as i64)),
            ("do_rotary", Attr::Int(1)),
            ("rotary_interleaved", Attr::Int(0)),
            // Mistral's window, Gemma 2's on its local layers, as the model builder writes it.
            ("local_window_size", Attr::Int(window)),
        ];
        attrs.extend(self.gqa_gemma_attrs());
        self.node(
            "GroupQueryAttention",
            "com.microsoft",
            &[
                &qkv[0], &qkv[1], &qkv[2], &past_k, &past_v, &seqlens, &total, &cos, &sin,
            ],
            &[
                &ctx,
                &format!("present.{i}.key"),
                &format!("present.{i}.value"),
            ],
            attrs,
        );
        let o = Proj::new(format!("blk.{i}.attn_output"), a.hidden_size);
        self.linear(&ctx, o, nh * hd)
    }
}
