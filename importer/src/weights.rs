//! A source's weights in the graph's terms: by GGUF name, dimensions checked, rows in
//! transformers' order, block-quantized ones transcoded (`blocks.rs`), float ones as f32; and as
//! a precision stores them (`Weight::as_stored`).

use crate::arch::Arch;
use crate::blocks::{Blocks, Layout};
use crate::error::{Error, Result};
use crate::gguf::TensorInfo;
use crate::progress::{Report, Step};
use crate::source::Source;
use crate::Precision;

/// A weight as it will be written.
pub enum Weight {
    Blocks(Layout, Blocks),
    /// Row-major `[rows, cols]`.
    Floats(Vec<f32>),
}

impl Weight {
    /// As `precision` stores a linear layer's weight (int4 needs rows of whole blocks of 32;
    /// a layer without them stays float).
    pub fn as_stored(self, precision: Precision, rows: usize) -> Weight {
        match (precision, self) {
            (Precision::Native, w) => w,
            (Precision::Fp32 | Precision::Fp16, w) => Weight::Floats(w.into_floats()),
            (Precision::Int4, w) => {
                let floats = w.into_floats();
                if !(floats.len() / rows.max(1)).is_multiple_of(Blocks::INT4.block) {
                    return Weight::Floats(floats);
                }
                let mut b = Blocks::default();
                for row in floats.chunks(floats.len() / rows.max(1)) {
                    b.quantize_int4(row);
                }
                Weight::Blocks(Blocks::INT4, b)
            }
        }
    }

    /// Whether these weights can be one matrix, their rows one after another: all float, or
    /// all blocks of one layout.
    pub fn stackable(ws: &[Weight]) -> bool {
        ws.windows(2).all(|w| match (&w[0], &w[1]) {
            (Weight::Blocks(a, _), Weight::Blocks(b, _)) => a == b,
            (Weight::Floats(_), Weight::Floats(_)) => true,
            _ => false,
        })
    }

    /// The weights as one, rows after rows (`stackable` ones).
    pub fn stack(ws: Vec<Weight>) -> Weight {
        let mut ws = ws.into_iter();
        let mut first = ws.next().expect("at least one weight");
        for w in ws {
            match (&mut first, w) {
                (Weight::Blocks(_, a), Weight::Blocks(_, b)) => a.append(b),
                (Weight::Floats(a), Weight::Floats(b)) => a.extend(b),
                _ => unreachable!("stack only stackable weights"),
            }
        }
        first
    }

    /// The weights as f32, de-quantized if they are blocks.
    pub fn into_floats(self) -> Vec<f32> {
        match self {
            Weight::Floats(v) => v,
            Weight::Blocks(_, b) => b.dequantize(),
        }
    }
}

pub struct Weights<'a> {
    a: &'a Arch,
    src: &'a dyn Source,
    report: Report<'a>,
    read: usize,
}

impl<'a> Weights<'a> {
    pub fn new(a: &'a Arch, src: &'a dyn Source, report: Report<'a>) -> Self {
        Weights {
            a,
            src,
            report,
            read: 0,
        }
    }

    /// Reports a tensor read. The graph reads each once (a tied head whose table has block
    /// minimums twice: the count stops short of the end, which the importer reports itself).
    fn advance(&mut self) {
        self.read += 1;
        let total = self.src.tensors().len();
        (self.report)(Step::of("convert", self.read.min(total - 1), total));
    }

    /// A tensor by GGUF name, its dimensions (innermost first) checked.
    fn tensor(&self, name: &str, dims: &[usize]) -> Result<&'a TensorInfo> {
        let t = self
            .src
            .tensor(name)
            .ok_or_else(|| Error::Corrupt(format!("the checkpoint has no tensor {name}")))?;
        if t.dims.iter().map(|&d| d as usize).ne(dims.iter().copied()) {
            return Err(Error::Corrupt(format!(
                "{name} has dimensions {:?}, but the metadata implies {dims:?}",
                t.dims
            )));
        }
        Ok(t)
    }

    /// A `[rows, cols]` weight (GGUF dimensions `[cols, rows]`), its rows in `order` (llama.cpp
    /// permutes llama's q/k rows for its rotary embedding; transformers' order is restored).
    pub fn get(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        order: Option<Vec<usize>>,
    ) -> Result<Weight> {
        let t = if rows == 1 {
            self.tensor(name, &[cols])?
        } else {
            self.tensor(name, &[cols, rows])?
        };
        if rows == 0 || cols == 0 || !cols.is_multiple_of(t.format.block().0) {
            return Err(Error::Corrupt(format!(
                "{name}: rows of {cols} weights are not whole {:?} blocks",
                t.format
            )));
        }
        self.advance();
        let data = self.src.data(t);
        let row_bytes = data.len() / rows;
        let order = order.unwrap_or_else(|| (0..rows).collect());
        let Some(layout) = t.format.nbits() else {
            // Float rows are converted as they are gathered: one fp32 copy of the tensor, not
            // two (an 8B model's LM head is 2 GB in fp32).
            let mut out = Vec::with_capacity(rows * cols);
            for &r in &order {
                t.format
                    .append_floats(&data[r * row_bytes..(r + 1) * row_bytes], &mut out);
            }
            return Ok(Weight::Floats(out));
        };
        let (_, block_bytes) = t.format.block();
        let mut blocks = Blocks::default();
        for &r in &order {
            for b in data[r * row_bytes..(r + 1) * row_bytes].chunks_exact(block_bytes) {
                t.format.transcode(b, &mut blocks);
            }
        }
        Ok(Weight::Blocks(layout, blocks))
    }

    pub fn floats(&mut self, name: &str, n: usize) -> Result<Vec<f32>> {
        Ok(self.get(name, 1, n, None)?.into_floats())
    }

    /// llama.cpp's rotary permutation of a q/k weight's rows, undone: row (h, j, d) of the
    /// result is row (h, d, j) of the GGUF's (head h, pair member j, pair d).
    pub fn unpermute(&self, heads: usize) -> Option<Vec<usize>> {
        if self.a.family != "llama" || !self.src.rotary_permuted() {
            return None;
        }
        let dim = self.a.head_dim / 2;
        Some(
            (0..heads)
                .flat_map(|h| {
                    (0..2).flat_map(move |j| (0..dim).map(move |d| h * 2 * dim + 2 * d + j))
                })
                .collect(),
        )
    }
}
