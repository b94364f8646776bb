//! The decoder's linear layers. Projections that read the same input (q, k and v; gate and up)
//! run as one product, split into each one's outputs, when their weights share a format: fewer
//! and larger nodes, and one minimums' term instead of several, which is what a small model's
//! decode step is bound by.

use std::io::Write;

use super::Builder;
use crate::error::Result;
use crate::weights::Weight;

/// One `[out, in]` projection: its GGUF name (without `.weight`), and the order of its rows
/// where llama.cpp permuted them.
pub struct Proj {
    pub name: String,
    pub out: usize,
    pub bias: bool,
    pub order: Option<Vec<usize>>,
}

impl Proj {
    pub fn new(name: String, out: usize) -> Self {
        Proj {
            name,
            out,
            bias: false,
            order: None,
        }
    }
}

impl<W: Write> Builder<'_, W> {
    /// x @ Wᵀ (+ b) for one projection.
    pub(super) fn linear(&mut self, x: &str, p: Proj, in_f: usize) -> Result<String> {
        let name = p.name.clone();
        Ok(self.linears(x, &name, vec![p], in_f)?.remove(0))
    }

    /// x @ Wᵀ (+ b) for projections of the same input, merged as `name` where they can be.
    pub(super) fn linears(
        &mut self,
        x: &str,
        name: &str,
        parts: Vec<Proj>,
        in_f: usize,
    ) -> Result<Vec<String>> {
        let mut weights = Vec::with_capacity(parts.len());
        for p in &parts {
            let w = self
                .w
                .get(&format!("{}.weight", p.name), p.out, in_f, p.order.clone())?;
            weights.push(w.as_stored(self.precision, p.out));
        }
        if !Weight::stackable(&weights) {
            let mut ys = Vec::with_capacity(parts.len());
            for (p, w) in parts.iter().zip(weights) {
                let y = self.product(x, &p.name, w, p.out, in_f)?;
                ys.push(self.bias(&y, std::slice::from_ref(p))?);
            }
            return Ok(ys);
        }
        let out: usize = parts.iter().map(|p| p.out).sum();
        let y = self.product(x, name, Weight::stack(weights), out, in_f)?;
        let y = self.bias(&y, &parts)?;
        if parts.len() == 1 {
            return Ok(vec![y]);
        }
        let sizes: Vec<i64> = parts.iter().map(|p| p.out as i64).collect();
        let sizes = self.i64s(&sizes);
        let hints: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        Ok(self.split_last(&y, &sizes, &hints))
    }

    fn product(
        &mut self,
        x: &str,
        name: &str,
        w: Weight,
        out_f: usize,
        in_f: usize,
    ) -> Result<String> {
        Ok(match w {
            Weight::Blocks(l, b) => {
                let w = self.nbits(name, l, &b, out_f, in_f)?;
                self.matmul_nbits(x, &w, 3, name)
            }
            Weight::Floats(w) => {
                let mut t = vec![0f32; w.len()];
                for r in 0..out_f {
                    for c in 0..in_f {
                        t[c * out_f + r] = w[r * in_f + c];
                    }
                }
                let dims = [in_f as i64, out_f as i64];
                let init = self.act_weight(&format!("{name}.weight_T"), &dims, &t)?;
                self.op("MatMul", &[x, &init.name], name, vec![])
            }
        })
    }

    /// The projections' biases, side by side, added to their product (zeros for one without).
    fn bias(&mut self, y: &str, parts: &[Proj]) -> Result<String> {
        if !parts.iter().any(|p| p.bias) {
            return Ok(y.to_owned());
        }
        let mut all = Vec::new();
        for p in parts {
            if !p.bias {
                all.resize(all.len() + p.out, 0.0);
                continue;
            }
            let b = self.w.floats(&format!("{}.bias", p.name), p.out)?;
            match &p.order {
                Some(o) => all.extend(o.iter().map(|&r| b[r])),
                None => all.extend(b),
            }
        }
        let name = parts
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join("+");
        let init = self.act_weight(&format!("{name}.bias"), &[all.len() as i64], &all)?;
        Ok(self.op("Add", &[y, &init.name], &format!("{name}_bias"), vec![]))
    }
}
