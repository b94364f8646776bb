//! GGUF's block formats, read as ONNX Runtime's `MatMulNBits` stores weights: each block of
//! `block` consecutive weights along a row is `(q − zero) × scale`, with `q` an unsigned integer
//! of `bits` (4 or 8) bits and `zero` an integer. The affine formats (a block minimum besides
//! the scale: `d·q + min`) keep that minimum as one more value per block, `min`, so a GGUF weight
//! transcodes without being de-quantized and quantized again:
//!
//! | GGUF | weights a block | as MatMulNBits | zero point | block minimum |
//! |---|---:|---|---|---|
//! | Q4_0 | 32 | 4-bit, blocks of 32 | 8 | – |
//! | Q4_1 | 32 | 4-bit, blocks of 32 | 0 | min |
//! | Q5_0 | 32 | 8-bit, blocks of 32 | 16 | – |
//! | Q5_1 | 32 | 8-bit, blocks of 32 | 0 | min |
//! | Q8_0 | 32 | 8-bit, blocks of 32 (q + 128) | 128 | – |
//! | Q2_K | 256 | 4-bit, blocks of 16 | 0 | −dmin·m |
//! | Q3_K | 256 | 4-bit, blocks of 16 (q + 4) | 4 | – |
//! | Q4_K | 256 | 4-bit, blocks of 32 | 0 | −dmin·m |
//! | Q5_K | 256 | 8-bit, blocks of 32 | 0 | −dmin·m |
//! | Q6_K | 256 | 8-bit, blocks of 16 | 32 | – |
//!
//! Every weight is then exactly GGUF's: the scale is an fp16 times a small integer, exact in
//! fp32, and `q·scale + min` is GGUF's own formula. Integer zero points matter for speed too:
//! ONNX Runtime's CPU `MatMulNBits` prepacks only weights with uint8 zero points, and
//! de-quantizes the others in full on every run. The graph adds the minimums as a second, small
//! product (`graph.rs`: the input's block sums times the minimums).

use half::{bf16, f16};

/// A tensor's storage format in a GGUF file (its GGML type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    F32,
    F16,
    Bf16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

/// One block format's shape as `MatMulNBits` weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub bits: u8,
    /// Weights per `MatMulNBits` block.
    pub block: usize,
    /// Each block has a minimum added to its weights (the graph's second term).
    pub affine: bool,
}

/// Blocks in `MatMulNBits` terms, block after block: `q` holds `block` values each (one
/// byte a value, unpacked), `scales` and `zeros` one each, and `mins` one each for affine
/// formats.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Blocks {
    pub q: Vec<u8>,
    pub scales: Vec<f32>,
    pub zeros: Vec<u8>,
    pub mins: Vec<f32>,
}

impl Blocks {
    fn push(&mut self, scale: f32, zero: u8, q: impl IntoIterator<Item = u8>) {
        self.q.extend(q);
        self.scales.push(scale);
        self.zeros.push(zero);
    }

    /// `d·q + min` for each q.
    fn push_affine(&mut self, d: f32, min: f32, q: impl IntoIterator<Item = u8>) {
        self.push(d, 0, q);
        self.mins.push(min);
    }

    /// The weights, as `MatMulNBits` and the minimums' term compute them.
    pub fn dequantize(&self) -> Vec<f32> {
        let block = self.q.len() / self.scales.len().max(1);
        self.q
            .chunks(block.max(1))
            .enumerate()
            .flat_map(|(i, q)| {
                let (s, z) = (self.scales[i], self.zeros[i] as f32);
                let min = self.mins.get(i).copied();
                q.iter().map(move |&q| match min {
                    Some(m) => q as f32 * s + m,
                    None => (q as f32 - z) * s,
                })
            })
            .collect()
    }
}

impl Blocks {
    /// `quantize_int4`'s layout.
    pub const INT4: Layout = Layout {
        bits: 4,
        block: 32,
        affine: false,
    };

    /// A row of floats (a multiple of 32 long) as symmetric 4-bit blocks of 32, as onnxruntime's
    /// blockwise quantizer (`MlasQuantizeBlockwise`) makes them: the scale is the block's
    /// value of largest magnitude over −8, so that value is exactly −8 steps, and each weight
    /// rounds to the nearest step (halves away from zero), offset by the zero point 8.
    pub fn quantize_int4(&mut self, row: &[f32]) {
        for block in row.chunks(Self::INT4.block) {
            let extreme = block
                .iter()
                .fold(0f32, |m, &x| if x.abs() > m.abs() { x } else { m });
            let scale = extreme / -8.0;
            let inv = if scale == 0.0 { 0.0 } else { 1.0 / scale };
            let q = block
                .iter()
                .map(|&x| ((x * inv).round() + 8.0).clamp(0.0, 15.0) as u8);
            self.push(scale, 8, q);
        }
    }

    /// `other`'s rows after these.
    pub fn append(&mut self, other: Blocks) {
        self.q.extend(other.q);
        self.scales.extend(other.scales);
        self.zeros.extend(other.zeros);
        self.mins.extend(other.mins);
    }

    /// 8-bit blocks as twice as many 4-bit ones, exactly: with `q = 16·hi + lo` and
    /// `z = 16·zh + zl`, `(q − z)·s = (hi − zh)·16s + (lo − zl)·s`. Each row becomes its high
    /// halves' blocks, then its low halves' (`K` doubles; the graph feeds the input twice), so
    /// ONNX Runtime's prepacked 4-bit kernel computes it in fp32. The block minimums stay as they
    /// are: they belong to the original blocks.
    pub fn split(&self, rows: usize) -> Blocks {
        let n = self.scales.len();
        let (per_row, block) = (n / rows.max(1), self.q.len() / n.max(1));
        let mut out = Blocks {
            q: Vec::with_capacity(2 * self.q.len()),
            scales: Vec::with_capacity(2 * n),
            zeros: Vec::with_capacity(2 * n),
            mins: self.mins.clone(),
        };
        for r in 0..rows {
            let row = r * per_row..(r + 1) * per_row;
            for (shift, mask, factor) in [(4, 0x0f, 16.0), (0, 0x0f, 1.0)] {
                for i in row.clone() {
                    let q = &self.q[i * block..(i + 1) * block];
                    out.push(
                        factor * self.scales[i],
                        (self.zeros[i] >> shift) & mask,
                        q.iter().map(|&q| (q >> shift) & mask),
                    );
                }
            }
        }
        out
    }
}

/// A weight's `MatMulNBits` initializers, and its block minimums.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    /// `[rows, blocks, block × bits / 8]`: 4-bit values two to a byte, the first in the low
    /// nibble.
    pub b: Vec<u8>,
    /// `[rows × blocks]`
    pub scales: Vec<f32>,
    /// uint8, `[rows × ⌈blocks / 2⌉]` (two to a byte, as the weights).
    pub zeros: Vec<u8>,
    /// `[rows, blocks]` for affine formats.
    pub mins: Option<Vec<f32>>,
}

impl Blocks {
    /// The initializers of a 4-bit weight of `rows` rows whose blocks are these, in row order
    /// (8-bit formats are split into 4-bit halves first: `split`).
    pub fn pack(&self, l: Layout, rows: usize) -> Packed {
        debug_assert_eq!(l.bits, 4, "8-bit blocks are split before they are packed");
        let nibbles = |v: &[u8]| -> Vec<u8> {
            v.chunks(2)
                .map(|p| p[0] | (p.get(1).copied().unwrap_or(0) << 4))
                .collect()
        };
        let per_row = self.zeros.len() / rows.max(1);
        Packed {
            b: nibbles(&self.q),
            scales: self.scales.clone(),
            zeros: self
                .zeros
                .chunks(per_row.max(1))
                .flat_map(nibbles)
                .collect(),
            mins: l.affine.then(|| self.mins.clone()),
        }
    }
}

fn h(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Q4_K's and Q5_K's 6-bit scale and min of sub-block `j` (of 8), from their 12 packed bytes.
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Q3_K's 16 6-bit scales (each less 32 when used), from their 12 packed bytes.
fn scales_q3k(s: &[u8]) -> [i8; 16] {
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (k1, k2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
    let (a0, a1, tmp) = (w(0), w(1), w(2));
    let aux = [
        (a0 & k2) | ((tmp & k1) << 4),
        (a1 & k2) | (((tmp >> 2) & k1) << 4),
        ((a0 >> 4) & k2) | (((tmp >> 4) & k1) << 4),
        ((a1 >> 4) & k2) | (((tmp >> 6) & k1) << 4),
    ];
    let mut out = [0i8; 16];
    for (i, a) in aux.iter().enumerate() {
        for (k, b) in a.to_le_bytes().iter().enumerate() {
            out[4 * i + k] = *b as i8;
        }
    }
    out
}

impl Format {
    /// From a GGUF tensor's GGML type id; the id back when inferd cannot read it.
    pub fn from_ggml(t: u32) -> Result<Format, u32> {
        Ok(match t {
            0 => Format::F32,
            1 => Format::F16,
            2 => Format::Q4_0,
            3 => Format::Q4_1,
            6 => Format::Q5_0,
            7 => Format::Q5_1,
            8 => Format::Q8_0,
            10 => Format::Q2K,
            11 => Format::Q3K,
            12 => Format::Q4K,
            13 => Format::Q5K,
            14 => Format::Q6K,
            30 => Format::Bf16,
            t => return Err(t),
        })
    }

    /// (weights, bytes) of one block.
    pub fn block(self) -> (usize, usize) {
        match self {
            Format::F32 => (1, 4),
            Format::F16 | Format::Bf16 => (1, 2),
            Format::Q4_0 => (32, 18),
            Format::Q4_1 => (32, 20),
            Format::Q5_0 => (32, 22),
            Format::Q5_1 => (32, 24),
            Format::Q8_0 => (32, 34),
            Format::Q2K => (256, 84),
            Format::Q3K => (256, 110),
            Format::Q4K => (256, 144),
            Format::Q5K => (256, 176),
            Format::Q6K => (256, 210),
        }
    }

    /// Bytes `elements` weights take; `None` unless they are whole blocks.
    pub fn bytes_for(self, elements: u64) -> Option<usize> {
        let (n, b) = self.block();
        if !elements.is_multiple_of(n as u64) {
            return None;
        }
        usize::try_from(elements / n as u64).ok()?.checked_mul(b)
    }

    /// How the format reads as `MatMulNBits`; `None` for float formats.
    pub fn nbits(self) -> Option<Layout> {
        let l = |bits, block, affine| {
            Some(Layout {
                bits,
                block,
                affine,
            })
        };
        match self {
            Format::F32 | Format::F16 | Format::Bf16 => None,
            Format::Q4_0 => l(4, 32, false),
            Format::Q4_1 => l(4, 32, true),
            Format::Q5_0 => l(8, 32, false),
            Format::Q5_1 => l(8, 32, true),
            Format::Q8_0 => l(8, 32, false),
            Format::Q2K => l(4, 16, true),
            Format::Q3K => l(4, 16, false),
            Format::Q4K => l(4, 32, true),
            Format::Q5K => l(8, 32, true),
            Format::Q6K => l(8, 16, false),
        }
    }

    /// Float weights as f32 (`None` for block formats).
    pub fn floats(self, data: &[u8]) -> Option<Vec<f32>> {
        let mut out = Vec::with_capacity(data.len() / 2);
        self.append_floats(data, &mut out).then_some(out)
    }

    /// Appends a float tensor's values (`data`, any whole number of them) to `out`, so rows can
    /// be gathered without a copy of the whole tensor; false for a block format.
    pub fn append_floats(self, data: &[u8], out: &mut Vec<f32>) -> bool {
        match self {
            Format::F32 => out.extend(
                data.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            Format::F16 => out.extend(
                data.chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            Format::Bf16 => out.extend(
                data.chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            _ => return false,
        }
        true
    }

    /// Appends the `MatMulNBits` blocks of one GGUF block (`self.block().1` bytes).
    pub fn transcode(self, b: &[u8], out: &mut Blocks) {
        match self {
            Format::F32 | Format::F16 | Format::Bf16 => {
                unreachable!("float formats have no blocks")
            }
            Format::Q4_0 => {
                let qs = &b[2..18];
                let q = qs.iter().map(|x| x & 0xF).chain(qs.iter().map(|x| x >> 4));
                out.push(h(b, 0), 8, q);
            }
            Format::Q4_1 => {
                let qs = &b[4..20];
                let q = qs.iter().map(|x| x & 0xF).chain(qs.iter().map(|x| x >> 4));
                out.push_affine(h(b, 0), h(b, 2), q);
            }
            Format::Q5_0 | Format::Q5_1 => {
                let (d, min, at) = match self {
                    Format::Q5_0 => (h(b, 0), None, 2),
                    _ => (h(b, 0), Some(h(b, 2)), 4),
                };
                let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                let qs = &b[at + 4..at + 20];
                let lo = (0..16).map(|j| (qs[j] & 0xF) | ((((qh >> j) << 4) & 0x10) as u8));
                let hi = (0..16).map(|j| (qs[j] >> 4) | (((qh >> (j + 12)) & 0x10) as u8));
                match min {
                    None => out.push(d, 16, lo.chain(hi)),
                    Some(m) => out.push_affine(d, m, lo.chain(hi)),
                }
            }
            Format::Q8_0 => out.push(
                h(b, 0),
                128,
                b[2..34].iter().map(|&x| (x as i8 as i16 + 128) as u8),
            ),
            Format::Q2K => {
                let (scales, qs, d, dmin) = (&b[0..16], &b[16..80], h(b, 80), h(b, 82));
                let mut is = 0;
                for n in 0..2 {
                    let q = &qs[32 * n..32 * n + 32];
                    for shift in [0, 2, 4, 6] {
                        for half in [&q[..16], &q[16..]] {
                            let sc = scales[is];
                            is += 1;
                            let (dl, ml) = (d * (sc & 0xF) as f32, dmin * (sc >> 4) as f32);
                            out.push_affine(dl, -ml, half.iter().map(|x| (x >> shift) & 3));
                        }
                    }
                }
            }
            Format::Q3K => {
                let (hmask, qs, d) = (&b[0..32], &b[32..96], h(b, 108));
                let scales = scales_q3k(&b[96..108]);
                let (mut is, mut m) = (0, 1u8);
                for n in 0..2 {
                    let q = &qs[32 * n..32 * n + 32];
                    for shift in [0, 2, 4, 6] {
                        for off in [0, 16] {
                            let dl = d * (scales[is] as i32 - 32) as f32;
                            is += 1;
                            let vals = (off..off + 16).map(|l| {
                                let v = ((q[l] >> shift) & 3) as i8
                                    - if hmask[l] & m != 0 { 0 } else { 4 };
                                (v + 4) as u8
                            });
                            out.push(dl, 4, vals);
                        }
                        m = m.wrapping_shl(1);
                    }
                }
            }
            Format::Q4K | Format::Q5K => {
                let (d, dmin, scales) = (h(b, 0), h(b, 2), &b[4..16]);
                let (qh, ql) = match self {
                    Format::Q4K => (None, &b[16..144]),
                    _ => (Some(&b[16..48]), &b[48..176]),
                };
                for j in 0..4 {
                    let q = &ql[32 * j..32 * j + 32];
                    for (k, shift) in [(0, 0), (1, 4)] {
                        let (sc, m) = scale_min_k4(2 * j + k, scales);
                        let bit = 1u8 << (2 * j + k);
                        let vals = (0..32).map(|l| {
                            let high = qh.map_or(0, |qh| if qh[l] & bit != 0 { 16 } else { 0 });
                            ((q[l] >> shift) & 0xF) + high
                        });
                        out.push_affine(d * sc as f32, -(dmin * m as f32), vals);
                    }
                }
            }
            Format::Q6K => {
                let (ql, qh, sc, d) = (&b[0..128], &b[128..192], &b[192..208], h(b, 208));
                for n in 0..2 {
                    let (ql, qh, sc) = (&ql[64 * n..], &qh[32 * n..], &sc[8 * n..]);
                    // Element l + 32·i of this half: ql's nibble and qh's two bits for part i.
                    let part = |i: usize, l: usize| {
                        let low = match i {
                            0 => ql[l] & 0xF,
                            1 => ql[l + 32] & 0xF,
                            2 => ql[l] >> 4,
                            _ => ql[l + 32] >> 4,
                        };
                        low | (((qh[l] >> (2 * i)) & 3) << 4)
                    };
                    for i in 0..4 {
                        for g in 0..2 {
                            let s = d * sc[2 * i + g] as i8 as f32;
                            out.push(s, 32, (16 * g..16 * g + 16).map(|l| part(i, l)));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16b(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q4_0_is_d_times_q_less_8() {
        let mut b = vec![0u8; 18];
        b[..2].copy_from_slice(&f16b(0.5));
        b[2] = 0x3A; // weight 0: 0xA, weight 16: 0x3
        let mut out = Blocks::default();
        Format::Q4_0.transcode(&b, &mut out);
        let w = out.dequantize();
        assert_eq!((w[0], w[16], w[1]), (1.0, -2.5, -4.0));
    }

    #[test]
    fn a_zero_scale_block_is_its_min() {
        let mut b = vec![0u8; 20];
        b[2..4].copy_from_slice(&f16b(-1.25)); // d = 0, min = -1.25
        b[4] = 0xFF;
        let mut out = Blocks::default();
        Format::Q4_1.transcode(&b, &mut out);
        assert!(out.dequantize().iter().all(|&x| x == -1.25));
    }

    #[test]
    fn int4_puts_a_blocks_extreme_at_minus_8_steps_and_rounds_halves_away_from_zero() {
        let mut row = vec![0f32; 32];
        row[0] = -2.0; // the extreme: scale −2 / −8 = 0.25
        row[1] = 0.125; // half a step: rounds away from zero, to 1 step
        row[2] = 1.0;
        let mut b = Blocks::default();
        b.quantize_int4(&row);
        assert_eq!((b.scales[0], b.zeros[0]), (0.25, 8));
        assert_eq!(&b.q[..3], &[0, 9, 12]);
        assert_eq!(&b.dequantize()[..3], &[-2.0, 0.25, 1.0]);
    }

    #[test]
    fn split_halves_add_up_to_the_8_bit_weights() {
        // Two rows of two blocks of 4, with Q8_0's, Q5_0's and Q6_K's zero points.
        let (rows, block) = (2, 4);
        let b = Blocks {
            q: (0..16u8).map(|i| i.wrapping_mul(37)).collect(),
            scales: vec![0.5, -0.25, 3.0, 0.125],
            zeros: vec![128, 16, 32, 0],
            mins: vec![],
        };
        let w = b.dequantize();
        let halves = b.split(rows).dequantize();
        for r in 0..rows {
            let cols = 2 * block;
            let (hi, lo) = halves[2 * r * cols..2 * (r + 1) * cols].split_at(cols);
            let sum: Vec<f32> = hi.iter().zip(lo).map(|(h, l)| h + l).collect();
            assert_eq!(sum, w[r * cols..(r + 1) * cols]);
        }
        assert!(b
            .split(rows)
            .q
            .iter()
            .chain(&b.split(rows).zeros)
            .all(|&v| v < 16));
    }

    #[test]
    fn q8_0_offsets_signed_values_by_128() {
        let mut b = vec![0u8; 34];
        b[..2].copy_from_slice(&f16b(0.25));
        b[2] = (-128i8) as u8;
        b[3] = 127;
        let mut out = Blocks::default();
        Format::Q8_0.transcode(&b, &mut out);
        let w = out.dequantize();
        assert_eq!((w[0], w[1], w[2]), (-32.0, 31.75, 0.0));
        assert_eq!(out.q[0], 0);
    }

    #[test]
    fn sizes_are_whole_blocks() {
        assert_eq!(Format::Q4K.bytes_for(512), Some(288));
        assert_eq!(Format::Q4K.bytes_for(300), None);
        assert_eq!(Format::from_ggml(12), Ok(Format::Q4K));
        assert_eq!(Format::from_ggml(16), Err(16));
    }
}
