//! Where a decoder's weights come from, in GGUF's tensor names (`blk.{i}.attn_q.weight`, …): a
//! GGUF file, or a Hugging Face checkpoint folder whose names `hf.rs` maps, so the graph is
//! built one way for both.

use std::borrow::Cow;

use crate::gguf::{Gguf, TensorInfo};

pub trait Source {
    fn tensors(&self) -> &[TensorInfo];

    /// The tensor's bytes: in place in a mapped file, or made on demand (random weights).
    fn data(&self, t: &TensorInfo) -> Cow<'_, [u8]>;

    /// Whether llama's q/k rows are in llama.cpp's rotary order (GGUF files), to be undone.
    fn rotary_permuted(&self) -> bool;

    fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors().iter().find(|t| t.name == name)
    }
}

impl Source for Gguf {
    fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    fn data(&self, t: &TensorInfo) -> Cow<'_, [u8]> {
        Cow::Borrowed(Gguf::data(self, t))
    }

    fn rotary_permuted(&self) -> bool {
        true
    }
}
