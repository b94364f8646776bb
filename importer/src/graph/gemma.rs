//! What Gemma 2 adds to the decoder graph (`Arch::gemma`): soft-capping, its GELU, and the norms
//! around each block's output.

use std::io::Write;

use super::Builder;
use crate::error::Result;
use crate::onnx::Attr;

impl<W: Write> Builder<'_, W> {
    /// `cap · tanh(x / cap)` (fp32 `x`).
    pub(super) fn softcap(&mut self, x: &str, cap: f32) -> String {
        let c = self.f32_scalar("softcap", cap);
        let scaled = self.op("Div", &[x, &c], "", vec![]);
        let t = self.op("Tanh", &[&scaled], "", vec![]);
        self.op("Mul", &[&t, &c], "softcapped", vec![])
    }

    /// GELU, tanh approximation (transformers' `gelu_pytorch_tanh`):
    /// `½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, in the activations' type.
    pub(super) fn gelu_tanh(&mut self, x: &str) -> String {
        let k = (2.0 / std::f64::consts::PI).sqrt() as f32;
        let (c, k, half, one) = (
            self.act_scalar("gelu_c", 0.044715),
            self.act_scalar("gelu_k", k),
            self.act_scalar("half", 0.5),
            self.act_scalar("one", 1.0),
        );
        let x2 = self.op("Mul", &[x, x], "", vec![]);
        let x3 = self.op("Mul", &[&x2, x], "", vec![]);
        let cx3 = self.op("Mul", &[&x3, &c], "", vec![]);
        let inner = self.op("Add", &[x, &cx3], "", vec![]);
        let scaled = self.op("Mul", &[&inner, &k], "", vec![]);
        let t = self.op("Tanh", &[&scaled], "", vec![]);
        let t1 = self.op("Add", &[&t, &one], "", vec![]);
        let hx = self.op("Mul", &[x, &half], "", vec![]);
        self.op("Mul", &[&hx, &t1], "gelu", vec![])
    }

    /// A block's output `h`, normed by `{name}` when the model has such norms (Gemma 2).
    pub(super) fn post_norm(&mut self, h: &str, name: &str) -> Result<String> {
        if self.a.gemma.is_none() {
            return Ok(h.to_owned());
        }
        self.rms_norm(h, name)
    }

    /// Gemma 2's embeddings are scaled by √hidden.
    pub(super) fn scale_embeddings(&mut self, x: &str) -> String {
        if self.a.gemma.is_none() {
            return x.to_owned();
        }
        let s = self.act_scalar("embed_scale", (self.a.hidden_size as f64).sqrt() as f32);
        self.op("Mul", &[x, &s], "embed_scaled", vec![])
    }

    /// The logits, soft-capped where the model says so.
    pub(super) fn final_softcap(&mut self, logits: &str) -> String {
        match self.a.gemma.as_ref().and_then(|g| g.final_softcap) {
            Some(cap) => self.softcap(logits, cap),
            None => logits.to_owned(),
        }
    }

    /// `attn` Attr for GroupQueryAttention: soft-capping and the query scale (Gemma 2).
    pub(super) fn gqa_gemma_attrs(&self) -> Vec<(&'static str, Attr)> {
        match &self.a.gemma {
            Some(g) => {
                let mut v = vec![("scale", Attr::Float(g.query_scale))];
                if let Some(cap) = g.attn_softcap {
                    v.push(("softcap", Attr::Float(cap)));
                }
                v
            }
            None => Vec::new(),
        }
    }
}
