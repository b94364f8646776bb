//! Building an ONNX graph: nodes with fresh names, small constants inline, weights in the
//! external data file, and the quantized matrix product every GGUF weight becomes.

use std::io::Write;

use half::f16;

use crate::blocks::{Blocks, Layout};
use crate::error::{Error, Result};
use crate::onnx::{Attr, Data, DataType, ExternalData, Initializer, Model, Node, ValueInfo};

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `v` rounded to fp16, as little-endian bytes.
pub fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| f16::from_f32(x).to_le_bytes())
        .collect()
}

/// A quantized weight `[rows, cols]` as written: `MatMulNBits`' initializers over `k` inputs
/// (`cols`, or twice that for 8-bit weights split into 4-bit halves: `Blocks::split`), and for
/// affine formats the block minimums, transposed to `[cols / block, rows]`. `scales` and `mins`
/// name the fp32 values the graph reads (a cast of an fp16 initializer where that is exact).
pub struct NBits {
    /// As stored: always 4 bits.
    pub layout: Layout,
    pub rows: usize,
    pub cols: usize,
    pub k: usize,
    pub b: Initializer,
    pub scales: String,
    pub zeros: Initializer,
    pub mins: Option<String>,
}

pub struct Graph<W: Write> {
    ext: ExternalData<W>,
    pub nodes: Vec<Node>,
    pub inits: Vec<Initializer>,
    n: usize,
    /// `MatMulNBits` with `accuracy_level` 4 (int8 activations): for re-quantized weights,
    /// which are inexact anyway (`Precision::Int4`); transcoded ones compute in fp32.
    pub int8_activations: bool,
}

impl<W: Write> Graph<W> {
    pub fn new(ext: ExternalData<W>) -> Self {
        Graph {
            ext,
            nodes: Vec::new(),
            inits: Vec::new(),
            n: 0,
            int8_activations: false,
        }
    }

    pub fn name(&mut self, hint: &str) -> String {
        self.n += 1;
        format!("{hint}_{}", self.n)
    }

    pub fn op(
        &mut self,
        op: &str,
        inputs: &[&str],
        hint: &str,
        attrs: Vec<(&str, Attr)>,
    ) -> String {
        self.op_in(op, "", inputs, hint, attrs)
    }

    pub fn op_in(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[&str],
        hint: &str,
        attrs: Vec<(&str, Attr)>,
    ) -> String {
        let out = self.name(if hint.is_empty() { op } else { hint });
        self.node(op, domain, inputs, &[&out], attrs);
        out
    }

    pub fn node(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<(&str, Attr)>,
    ) {
        self.nodes.push(Node {
            op: op.into(),
            domain: domain.into(),
            name: format!("{}_node", outputs[0]),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attrs: attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        });
    }

    /// `x` split along its last axis into the pieces `sizes` (an int64 constant) gives, one
    /// output a hint.
    pub fn split_last(&mut self, x: &str, sizes: &str, hints: &[&str]) -> Vec<String> {
        let outs: Vec<String> = hints.iter().map(|h| self.name(h)).collect();
        let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        self.node(
            "Split",
            "",
            &[x, sizes],
            &refs,
            vec![("axis", Attr::Int(-1))],
        );
        outs
    }

    /// `parts` joined along their last axis.
    pub fn concat_last(&mut self, parts: &[&str], hint: &str) -> String {
        self.op("Concat", parts, hint, vec![("axis", Attr::Int(-1))])
    }

    /// A small constant, inline in the model.
    pub fn raw(&mut self, hint: &str, dtype: DataType, dims: &[i64], bytes: Vec<u8>) -> String {
        let name = self.name(hint);
        self.inits.push(Initializer {
            name: name.clone(),
            dtype,
            dims: dims.to_vec(),
            data: Data::Raw(bytes),
        });
        name
    }

    pub fn i64s(&mut self, v: &[i64]) -> String {
        self.raw(
            "const",
            DataType::Int64,
            &[v.len() as i64],
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    pub fn i64_scalar(&mut self, v: i64) -> String {
        self.raw("const", DataType::Int64, &[], v.to_le_bytes().to_vec())
    }

    pub fn f32_scalar(&mut self, hint: &str, v: f32) -> String {
        self.raw(hint, DataType::Float, &[], v.to_le_bytes().to_vec())
    }

    /// A weight in the external data file.
    pub fn external(
        &mut self,
        name: &str,
        dtype: DataType,
        dims: &[i64],
        bytes: &[u8],
    ) -> Result<Initializer> {
        let t = self
            .ext
            .add(name, dtype, dims, bytes)
            .map_err(|e| Error::Io("model.onnx.data".into(), e))?;
        self.inits.push(t.clone());
        Ok(t)
    }

    /// fp32 values for the graph: stored as fp16 and cast when every value is exactly an fp16
    /// (as GGUF's scales and minimums mostly are: an fp16 times a small integer), which halves
    /// them on disk; ONNX Runtime folds the cast into a constant when it loads the model.
    /// Returns the name the graph reads.
    pub fn floats(&mut self, name: &str, dims: &[i64], v: &[f32]) -> Result<String> {
        if v.iter().all(|&x| f16::from_f32(x).to_f32() == x) {
            let t = self.external(
                &format!("{name}_f16"),
                DataType::Float16,
                dims,
                &f16_bytes(v),
            )?;
            let to = vec![("to", Attr::Int(DataType::Float as i64))];
            return Ok(self.op("Cast", &[&t.name], name, to));
        }
        Ok(self
            .external(name, DataType::Float, dims, &f32_bytes(v))?
            .name)
    }

    /// Writes a quantized `[rows, cols]` weight whose blocks are `b`, in row order. Every
    /// product then runs in fp32 on ONNX Runtime's prepacked 4-bit kernel: 8-bit weights are
    /// split into two 4-bit halves, since the CPU kernel prepacks 8-bit weights only for int8
    /// activations, which moved SmolLM2's logits enough to flip near-ties (docs/models.md).
    pub fn nbits(
        &mut self,
        name: &str,
        l: Layout,
        b: &Blocks,
        rows: usize,
        cols: usize,
    ) -> Result<NBits> {
        let split;
        let (b, stored, k) = match l.bits {
            8 => {
                split = b.split(rows);
                (&split, Layout { bits: 4, ..l }, 2 * cols)
            }
            _ => (b, l, cols),
        };
        let p = b.pack(stored, rows);
        let blocks = k / l.block;
        let q = self.external(
            &format!("{name}.weight_Q4"),
            DataType::Uint8,
            &[rows as i64, blocks as i64, (l.block / 2) as i64],
            &p.b,
        )?;
        let scales = self.floats(
            &format!("{name}.weight_scales"),
            &[rows as i64, blocks as i64],
            &p.scales,
        )?;
        let z = self.external(
            &format!("{name}.weight_zp"),
            DataType::Uint8,
            &[rows as i64, blocks.div_ceil(2) as i64],
            &p.zeros,
        )?;
        let mins = match &p.mins {
            Some(m) => {
                let blocks = cols / l.block;
                let mut t = vec![0f32; m.len()];
                for r in 0..rows {
                    for k in 0..blocks {
                        t[k * rows + r] = m[r * blocks + k];
                    }
                }
                let dims = [blocks as i64, rows as i64];
                Some(self.floats(&format!("{name}.weight_mins_T"), &dims, &t)?)
            }
            None => None,
        };
        Ok(NBits {
            layout: stored,
            rows,
            cols,
            k,
            b: q,
            scales,
            zeros: z,
            mins,
        })
    }

    /// x @ Wᵀ for a quantized weight and an input `x` of `rank` dimensions (the last one `cols`):
    /// `MatMulNBits` (over `x` twice, side by side, for a split 8-bit weight), plus, for affine
    /// formats, the minimums' term: each block's minimum times the sum of the inputs it
    /// multiplies.
    pub fn matmul_nbits(&mut self, x: &str, w: &NBits, rank: usize, hint: &str) -> String {
        let l = w.layout;
        let input = if w.k == w.cols {
            x.to_owned()
        } else {
            self.concat_last(&[x, x], "")
        };
        let mut attrs = vec![
            ("K", Attr::Int(w.k as i64)),
            ("N", Attr::Int(w.rows as i64)),
            ("bits", Attr::Int(l.bits.into())),
            ("block_size", Attr::Int(l.block as i64)),
        ];
        if self.int8_activations {
            attrs.push(("accuracy_level", Attr::Int(4)));
        }
        let y = self.op_in(
            "MatMulNBits",
            "com.microsoft",
            &[&input, &w.b.name, &w.scales, &w.zeros.name],
            hint,
            attrs,
        );
        let Some(mins) = &w.mins else {
            return y;
        };
        let mut shape = vec![0i64; rank - 1];
        shape.extend([(w.cols / l.block) as i64, l.block as i64]);
        let shape = self.i64s(&shape);
        let blocked = self.op("Reshape", &[x, &shape], "", vec![]);
        let last = self.i64s(&[-1]);
        let sums = self.op(
            "ReduceSum",
            &[&blocked, &last],
            "block_sums",
            vec![("keepdims", Attr::Int(0))],
        );
        let term = self.op("MatMul", &[&sums, mins], "min_term", vec![]);
        self.op("Add", &[&y, &term], hint, vec![])
    }

    /// The model, and the external data file's writer, flushed.
    pub fn finish(
        self,
        inputs: Vec<ValueInfo>,
        outputs: Vec<ValueInfo>,
        metadata: Vec<(String, String)>,
    ) -> Result<(Model, W)> {
        let model = Model {
            opsets: vec![(String::new(), 17), ("com.microsoft".into(), 1)],
            nodes: self.nodes,
            inputs,
            outputs,
            initializers: self.inits,
            metadata,
        };
        let out = self
            .ext
            .finish()
            .map_err(|e| Error::Io("model.onnx.data".into(), e))?;
        Ok((model, out))
    }
}
