//! A GGUF file, memory-mapped: its metadata parsed, its tensors read in place.
//!
//! Format (version 2 and 3, little-endian): magic `GGUF`, version, tensor count, metadata
//! count; the metadata key/values; each tensor's name, dimensions (innermost first), block type
//! and offset; then, aligned to `general.alignment` (32 by default), the tensor data.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::blocks::Format;
use crate::error::{Error, Result};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Uint(v) => Some(v),
            Value::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(v) => Some(v),
            Value::Int(v) => Some(v as f64),
            Value::Uint(v) => Some(v as f64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Innermost first, as GGUF writes them: a weight `[out, in]` is `[in, out]` here.
    pub dims: Vec<u64>,
    pub format: Format,
    /// Which mapped file holds it (a sharded checkpoint has several; a GGUF file one).
    pub file: usize,
    /// Bytes from the start of the file.
    pub start: usize,
    pub len: usize,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

pub struct Gguf {
    map: Mmap,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
}

/// A cursor over the header, every read bounds-checked (a truncated file is an error, not a
/// panic).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end =
            end.ok_or_else(|| Error::Corrupt(format!("header ends early at byte {}", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count or length, checked against what is left of the file so a corrupt one cannot
    /// make a huge allocation.
    fn len(&mut self, per_item: usize) -> Result<usize> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(per_item.max(1) as u64) > left {
            return Err(Error::Corrupt(format!(
                "a length of {n} at byte {} runs past the end",
                self.pos
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String> {
        let n = self.len(1)?;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| Error::Corrupt(format!("a string before byte {} is not UTF-8", self.pos)))
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::Uint(self.array::<1>()?[0] as u64),
            1 => Value::Int(self.array::<1>()?[0] as i8 as i64),
            2 => Value::Uint(u16::from_le_bytes(self.array()?) as u64),
            3 => Value::Int(i16::from_le_bytes(self.array()?) as i64),
            4 => Value::Uint(self.u32()? as u64),
            5 => Value::Int(i32::from_le_bytes(self.array()?) as i64),
            6 => Value::Float(f32::from_le_bytes(self.array()?) as f64),
            7 => Value::Bool(self.array::<1>()?[0] != 0),
            8 => Value::String(self.string()?),
            9 if depth < 4 => {
                let inner = self.u32()?;
                let n = self.len(1)?;
                Value::Array(
                    (0..n)
                        .map(|_| self.value(inner, depth + 1))
                        .collect::<Result<_>>()?,
                )
            }
            10 => Value::Uint(self.u64()?),
            11 => Value::Int(i64::from_le_bytes(self.array()?)),
            12 => Value::Float(f64::from_le_bytes(self.array()?)),
            t => return Err(Error::Corrupt(format!("unknown metadata value type {t}"))),
        })
    }
}

/// Why a tensor's GGML type cannot be imported, and what to do instead.
fn unsupported(name: &str, t: u32) -> Error {
    const IQ: [(u32, &str); 9] = [
        (16, "IQ2_XXS"),
        (17, "IQ2_XS"),
        (18, "IQ3_XXS"),
        (19, "IQ1_S"),
        (20, "IQ4_NL"),
        (21, "IQ3_S"),
        (22, "IQ2_S"),
        (23, "IQ4_XS"),
        (29, "IQ1_M"),
    ];
    let supported = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";
    match IQ.iter().find(|(id, _)| *id == t) {
        Some((_, iq)) => Error::Unsupported(format!(
            "tensor {name:?} is {iq}: IQ formats look weights up in a non-linear codebook, which \
             ONNX Runtime's MatMulNBits (a scale and a zero point a block) cannot express, so it \
             cannot be transcoded without changing the weights. Use a {supported} file of the \
             same model (Q4_K_M is the common choice), or import its Hugging Face checkpoint"
        )),
        None => Error::Unsupported(format!(
            "tensor {name:?} has GGML type {t}; supported: {supported}"
        )),
    }
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Gguf> {
        let file = File::open(path).map_err(|e| Error::Io(path.display().to_string(), e))?;
        // SAFETY: the file is only read, and every slice is bounds-checked against the map's
        // length. A file another process changes while it is mapped gives wrong weights; one it
        // truncates makes reads past its new end fault (SIGBUS), as with any mapped reader.
        let map =
            unsafe { Mmap::map(&file) }.map_err(|e| Error::Io(path.display().to_string(), e))?;
        Self::parse(map)
    }

    fn parse(map: Mmap) -> Result<Gguf> {
        let mut r = Reader { buf: &map, pos: 0 };
        if r.take(4).ok() != Some(b"GGUF".as_slice()) {
            return Err(Error::Corrupt("not a GGUF file (no GGUF magic)".into()));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::Unsupported(format!("GGUF version {version}")));
        }
        let n_tensors = r.len(8)?;
        let n_kv = r.len(8)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            metadata.insert(key, r.value(ty, 0)?);
        }
        let mut infos = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()? as usize;
            if n_dims > 4 {
                return Err(Error::Corrupt(format!(
                    "tensor {name:?} has {n_dims} dimensions"
                )));
            }
            let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>>>()?;
            let format = Format::from_ggml(r.u32()?).map_err(|t| unsupported(&name, t))?;
            let offset = r.u64()?;
            infos.push((name, dims, format, offset));
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(Value::as_u64)
            .unwrap_or(32)
            .max(1) as usize;
        let data = r.pos.div_ceil(alignment) * alignment;
        let tensors = infos
            .into_iter()
            .map(|(name, dims, format, offset)| {
                let elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
                let elements = elements.ok_or_else(|| {
                    Error::Corrupt(format!(
                        "tensor {name:?} has dimensions {dims:?}: too many elements"
                    ))
                })?;
                let len = format.bytes_for(elements).ok_or_else(|| {
                    Error::Corrupt(format!(
                        "tensor {name:?}: {elements} elements are not whole {format:?} blocks, or too many"
                    ))
                })?;
                let start = usize::try_from(offset)
                    .ok()
                    .and_then(|o| o.checked_add(data));
                match start.filter(|s| s.checked_add(len).is_some_and(|e| e <= map.len())) {
                    Some(start) => Ok(TensorInfo {
                        name,
                        dims,
                        format,
                        file: 0,
                        start,
                        len,
                    }),
                    None => Err(Error::Corrupt(format!(
                        "tensor {name:?} runs past the end of the file (truncated?)"
                    ))),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Gguf {
            map,
            version,
            metadata,
            tensors,
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The tensor's bytes, in place in the mapped file.
    pub fn data(&self, t: &TensorInfo) -> &[u8] {
        &self.map[t.start..t.start + t.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF image with no metadata and one tensor of `dims` (F32) at offset 0.
    fn image(dims: &[u64], data: usize) -> Mmap {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.push(b't');
        b.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
        b.extend(0u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.resize(b.len().next_multiple_of(32) + data, 0);
        let mut m = memmap2::MmapMut::map_anon(b.len()).unwrap();
        m.copy_from_slice(&b);
        m.make_read_only().unwrap()
    }

    #[test]
    fn iq_formats_are_refused_by_name_with_a_way_out() {
        let mut m = image(&[256], 0).to_vec();
        let ty = 24 + 9 + 4 + 8; // header, the name "t", its dimension count and one dimension
        m[ty..ty + 4].copy_from_slice(&20u32.to_le_bytes());
        let mut map = memmap2::MmapMut::map_anon(m.len()).unwrap();
        map.copy_from_slice(&m);
        match Gguf::parse(map.make_read_only().unwrap()) {
            Err(Error::Unsupported(e)) => {
                assert!(e.contains("IQ4_NL") && e.contains("Q4_K_M"), "{e}")
            }
            _ => panic!("an IQ4_NL tensor was not refused"),
        }
    }

    fn corrupt(m: Mmap) -> String {
        match Gguf::parse(m) {
            Err(Error::Corrupt(e)) => e,
            Err(e) => panic!("expected a corrupt-file error, got {e}"),
            Ok(_) => panic!("a corrupt file parsed"),
        }
    }

    #[test]
    fn a_whole_file_reads_its_tensor_in_place() {
        let g = Gguf::parse(image(&[2, 3], 24)).unwrap();
        let t = g.tensor("t").unwrap();
        assert_eq!((t.elements(), t.len), (6, 24));
        assert_eq!(g.data(t).len(), 24);
    }

    #[test]
    fn truncated_or_oversized_tensors_are_errors_not_panics() {
        assert!(corrupt(image(&[2, 3], 20)).contains("past the end"));
        assert!(corrupt(image(&[u64::MAX, 3], 0)).contains("too many elements"));
        assert!(corrupt(image(&[u64::MAX / 2], 0)).contains("too many"));
        let whole = image(&[2, 3], 24);
        let cut = &whole[..30];
        let mut m = memmap2::MmapMut::map_anon(cut.len()).unwrap();
        m.copy_from_slice(cut);
        assert!(corrupt(m.make_read_only().unwrap()).contains("ends early"));
    }
}
