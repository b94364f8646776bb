//! Tensors on the wire: `(dtype name, shape, raw little-endian bytes)`, D-Bus type `(satay)`.

use std::fmt;
use std::str::FromStr;

/// D-Bus wire form of one tensor.
pub type WireTensor = (String, Vec<u64>, Vec<u8>);

/// Element types inferd moves between clients and models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    Float32,
    Float16,
    Int64,
    Int32,
    Uint8,
    Bool,
}

impl DType {
    pub const ALL: [DType; 6] = [
        DType::Float32,
        DType::Float16,
        DType::Int64,
        DType::Int32,
        DType::Uint8,
        DType::Bool,
    ];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Float32 | DType::Int32 => 4,
            DType::Float16 => 2,
            DType::Int64 => 8,
            DType::Uint8 | DType::Bool => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::Float32 => "float32",
            DType::Float16 => "float16",
            DType::Int64 => "int64",
            DType::Int32 => "int32",
            DType::Uint8 => "uint8",
            DType::Bool => "bool",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DType::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                let known: Vec<_> = DType::ALL.iter().map(|d| d.name()).collect();
                format!("unknown dtype {s:?}; expected one of {}", known.join(", "))
            })
    }
}

/// Number of elements a shape holds, or `None` on overflow.
pub fn element_count(shape: &[u64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names_round_trip() {
        for d in DType::ALL {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
        }
        assert!("float64".parse::<DType>().unwrap_err().contains("float32"));
    }

    #[test]
    fn element_count_rejects_overflow() {
        assert_eq!(element_count(&[2, 3]), Some(6));
        assert_eq!(element_count(&[]), Some(1));
        assert_eq!(element_count(&[0, 5]), Some(0));
        assert_eq!(element_count(&[u64::MAX, 2]), None);
    }
}
