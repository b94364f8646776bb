//! Tensors as bytes: decoding the wire form, checking it against a model's declared inputs, and
//! moving it in and out of ONNX Runtime values.

use half::f16;
use inferd_client::tensor::element_count;
use inferd_client::{DType, WireTensor};
use ort::value::TensorElementType as Ort;
use ort::value::{DynValue, Tensor as OrtTensor, ValueType};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<i64>,
    /// Row-major, little-endian element bytes.
    pub data: Vec<u8>,
}

/// What a model declares for one input or output; `-1` marks a symbolic dimension.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub dtype: Option<DType>,
    pub shape: Vec<i64>,
    /// Name of each symbolic dimension (empty for fixed or unnamed ones).
    pub symbols: Vec<String>,
}

impl Spec {
    pub fn from_outlet(name: &str, ty: &ValueType) -> Spec {
        match ty {
            ValueType::Tensor {
                ty,
                shape,
                dimension_symbols,
            } => Spec {
                name: name.to_owned(),
                dtype: dtype_from_ort(*ty),
                shape: shape.to_vec(),
                symbols: dimension_symbols.to_vec(),
            },
            _ => Spec {
                name: name.to_owned(),
                dtype: None,
                shape: Vec::new(),
                symbols: Vec::new(),
            },
        }
    }

    pub fn describe(&self) -> String {
        let dtype = self.dtype.map_or("unsupported type", DType::name);
        format!("{dtype} {}", shape_str(&self.shape))
    }

    /// Checks a given tensor against this declaration, naming what differs.
    pub fn check(&self, t: &Tensor) -> Result<()> {
        let mismatch = || {
            Error::InvalidInput(format!(
                "input {:?}: expected {}, got {} {}",
                self.name,
                self.describe(),
                t.dtype,
                shape_str(&t.shape)
            ))
        };
        if self.dtype != Some(t.dtype) || self.shape.len() != t.shape.len() {
            return Err(mismatch());
        }
        // An empty tensor has no rows to batch or answer; it is always a client bug.
        if t.shape.contains(&0) {
            return Err(Error::InvalidInput(format!(
                "input {:?} is empty (shape {}); send at least one element",
                self.name,
                shape_str(&t.shape)
            )));
        }
        let dims_ok = self
            .shape
            .iter()
            .zip(&t.shape)
            .all(|(&want, &got)| want < 0 || want == got);
        if dims_ok {
            Ok(())
        } else {
            Err(mismatch())
        }
    }
}

pub fn shape_str(shape: &[i64]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| {
            if *d < 0 {
                "?".to_owned()
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

pub fn dtype_from_ort(t: Ort) -> Option<DType> {
    Some(match t {
        Ort::Float32 => DType::Float32,
        Ort::Float16 => DType::Float16,
        Ort::Int64 => DType::Int64,
        Ort::Int32 => DType::Int32,
        Ort::Uint8 => DType::Uint8,
        Ort::Bool => DType::Bool,
        _ => return None,
    })
}

fn le_chunks<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    data.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    })
}

impl Tensor {
    /// Decodes `(dtype, shape, bytes)`, checking that the byte count fits the shape.
    pub fn from_wire(name: &str, (dtype, shape, data): WireTensor) -> Result<Tensor> {
        let dtype: DType = dtype
            .parse()
            .map_err(|e| Error::InvalidInput(format!("input {name:?}: {e}")))?;
        let invalid =
            || Error::InvalidInput(format!("input {name:?}: shape {shape:?} is too large"));
        let count = element_count(&shape).ok_or_else(invalid)?;
        let shape: Vec<i64> = shape
            .iter()
            .map(|&d| i64::try_from(d).map_err(|_| invalid()))
            .collect::<Result<_>>()?;
        let want = count.checked_mul(dtype.size());
        if want != Some(data.len()) {
            return Err(Error::InvalidInput(format!(
                "input {name:?}: shape {} of {dtype} needs {} bytes, got {}",
                shape_str(&shape),
                want.map_or("too many".to_owned(), |w| w.to_string()),
                data.len()
            )));
        }
        Ok(Tensor { dtype, shape, data })
    }

    pub fn into_wire(self) -> WireTensor {
        // Shapes of real tensors are never negative.
        let shape = self.shape.iter().map(|&d| d.max(0) as u64).collect();
        (self.dtype.name().to_owned(), shape, self.data)
    }

    pub fn to_ort(&self) -> Result<DynValue> {
        let shape = self.shape.clone();
        let d = &self.data;
        let v = match self.dtype {
            DType::Float32 => {
                let v: Vec<f32> = le_chunks::<4>(d).map(f32::from_le_bytes).collect();
                OrtTensor::from_array((shape, v))?.into_dyn()
            }
            DType::Float16 => {
                let v: Vec<f16> = le_chunks::<2>(d).map(f16::from_le_bytes).collect();
                OrtTensor::from_array((shape, v))?.into_dyn()
            }
            DType::Int64 => {
                let v: Vec<i64> = le_chunks::<8>(d).map(i64::from_le_bytes).collect();
                OrtTensor::from_array((shape, v))?.into_dyn()
            }
            DType::Int32 => {
                let v: Vec<i32> = le_chunks::<4>(d).map(i32::from_le_bytes).collect();
                OrtTensor::from_array((shape, v))?.into_dyn()
            }
            DType::Uint8 => OrtTensor::from_array((shape, d.clone()))?.into_dyn(),
            DType::Bool => {
                let v: Vec<bool> = d.iter().map(|&b| b != 0).collect();
                OrtTensor::from_array((shape, v))?.into_dyn()
            }
        };
        Ok(v)
    }

    pub fn from_ort(name: &str, v: &DynValue) -> Result<Tensor> {
        let Some(dtype) = (match v.dtype() {
            ValueType::Tensor { ty, .. } => dtype_from_ort(*ty),
            _ => None,
        }) else {
            return Err(Error::Internal(format!(
                "output {name:?} has type {:?}, which inferd cannot return",
                v.dtype()
            )));
        };
        fn bytes<T: ort::value::PrimitiveTensorElementType + Copy, const N: usize>(
            v: &DynValue,
            f: impl Fn(T) -> [u8; N],
        ) -> Result<(Vec<i64>, Vec<u8>)> {
            let (shape, data) = v.try_extract_tensor::<T>()?;
            Ok((shape.to_vec(), data.iter().flat_map(|x| f(*x)).collect()))
        }
        let (shape, data) = match dtype {
            DType::Float32 => bytes::<f32, 4>(v, f32::to_le_bytes)?,
            DType::Float16 => bytes::<f16, 2>(v, f16::to_le_bytes)?,
            DType::Int64 => bytes::<i64, 8>(v, i64::to_le_bytes)?,
            DType::Int32 => bytes::<i32, 4>(v, i32::to_le_bytes)?,
            DType::Uint8 => bytes::<u8, 1>(v, |x| [x])?,
            DType::Bool => bytes::<bool, 1>(v, |x| [x as u8])?,
        };
        Ok(Tensor { dtype, shape, data })
    }

    /// Rows along the first dimension.
    pub fn rows(&self) -> i64 {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Joins tensors of equal trailing shape along the first dimension.
    pub fn concat(parts: &[&Tensor]) -> Tensor {
        let first = parts[0];
        let mut shape = first.shape.clone();
        shape[0] = parts.iter().map(|t| t.rows()).sum();
        let data = parts.iter().flat_map(|t| t.data.iter().copied()).collect();
        Tensor {
            dtype: first.dtype,
            shape,
            data,
        }
    }

    /// Splits along the first dimension into pieces of the given row counts.
    pub fn split(&self, rows: &[i64]) -> Vec<Tensor> {
        let total = self.rows().max(1) as usize;
        let row_bytes = self.data.len() / total;
        let mut offset = 0;
        rows.iter()
            .map(|&r| {
                let len = r as usize * row_bytes;
                let mut shape = self.shape.clone();
                shape[0] = r;
                let t = Tensor {
                    dtype: self.dtype,
                    shape,
                    data: self.data[offset..offset + len].to_vec(),
                };
                offset += len;
                t
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(dtype: DType, shape: Vec<i64>) -> Tensor {
        let n = shape.iter().product::<i64>() as usize * dtype.size();
        Tensor {
            dtype,
            shape,
            data: (0..n).map(|i| i as u8).collect(),
        }
    }

    #[test]
    fn wire_byte_count_is_checked() {
        let ok = Tensor::from_wire("x", ("float32".into(), vec![2, 2], vec![0; 16]));
        assert!(ok.is_ok());
        let e = Tensor::from_wire("x", ("float32".into(), vec![2, 2], vec![0; 15])).unwrap_err();
        assert!(e.to_string().contains("needs 16 bytes, got 15"), "{e}");
        let e = Tensor::from_wire("x", ("float32".into(), vec![u64::MAX], vec![])).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        let e = Tensor::from_wire("x", ("int8".into(), vec![1], vec![0])).unwrap_err();
        assert!(e.to_string().contains("unknown dtype"), "{e}");
        let e = Tensor::from_wire("x", ("uint8".into(), vec![1 << 62, 4], vec![])).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
    }

    #[test]
    fn spec_check_names_the_difference() {
        let spec = Spec {
            name: "x".into(),
            dtype: Some(DType::Float32),
            shape: vec![-1, 3],
            symbols: vec!["N".into(), String::new()],
        };
        assert!(spec.check(&t(DType::Float32, vec![5, 3])).is_ok());
        let e = spec
            .check(&t(DType::Float32, vec![5, 4]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected float32 [?, 3], got float32 [5, 4]"),
            "{e}"
        );
        let e = spec
            .check(&t(DType::Int64, vec![5, 3]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("got int64"), "{e}");
    }

    #[test]
    fn concat_then_split_is_identity() {
        let a = t(DType::Int32, vec![2, 3]);
        let b = t(DType::Int32, vec![1, 3]);
        let joined = Tensor::concat(&[&a, &b]);
        assert_eq!(joined.shape, vec![3, 3]);
        assert_eq!(joined.split(&[2, 1]), vec![a, b]);
    }
}
