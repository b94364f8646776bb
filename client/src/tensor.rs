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

/// Tensors in JSON (the MQTT payloads): `{"dtype", "shape", "data": [...]}`, or `"data_b64"`
/// holding the little-endian element bytes in base64.
/// One value of a tensor as it was written: a JSON value (MQTT, `--json`) or a word of text
/// (`inferctl --input x=float32:2:1,2`). Each says what it is in each dtype, so both encode
/// through `push`.
pub trait Scalar {
    fn f32(&self) -> Option<f32>;
    fn f16(&self) -> Option<half::f16>;
    fn i64(&self) -> Option<i64>;
    fn u64(&self) -> Option<u64>;
    fn bool(&self) -> Option<bool>;
    /// The value as an error message shows it.
    fn shown(&self) -> String;
}

impl Scalar for serde_json::Value {
    fn f32(&self) -> Option<f32> {
        self.as_f64().map(|x| x as f32)
    }
    fn f16(&self) -> Option<half::f16> {
        self.as_f64().map(half::f16::from_f64)
    }
    fn i64(&self) -> Option<i64> {
        self.as_i64()
    }
    fn u64(&self) -> Option<u64> {
        self.as_u64()
    }
    fn bool(&self) -> Option<bool> {
        match self {
            serde_json::Value::Bool(b) => Some(*b),
            n => n.as_u64().filter(|&x| x <= 1).map(|x| x == 1),
        }
    }
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl Scalar for &str {
    fn f32(&self) -> Option<f32> {
        self.parse().ok()
    }
    fn f16(&self) -> Option<half::f16> {
        self.parse().ok().map(half::f16::from_f32)
    }
    fn i64(&self) -> Option<i64> {
        self.parse().ok()
    }
    fn u64(&self) -> Option<u64> {
        self.parse().ok()
    }
    fn bool(&self) -> Option<bool> {
        match *self {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        }
    }
    fn shown(&self) -> String {
        format!("{self:?}")
    }
}

/// Appends `v`'s little-endian bytes as a `dtype` element, or says it is not one.
pub fn push(dtype: DType, v: &impl Scalar, out: &mut Vec<u8>) -> Result<(), String> {
    let bad = || format!("{} is not a valid {dtype}", v.shown());
    match dtype {
        DType::Float32 => out.extend(v.f32().ok_or_else(bad)?.to_le_bytes()),
        DType::Float16 => out.extend(v.f16().ok_or_else(bad)?.to_le_bytes()),
        DType::Int64 => out.extend(v.i64().ok_or_else(bad)?.to_le_bytes()),
        DType::Int32 => {
            let x = v.i64().and_then(|x| i32::try_from(x).ok());
            out.extend(x.ok_or_else(bad)?.to_le_bytes())
        }
        DType::Uint8 => out.push(v.u64().and_then(|x| u8::try_from(x).ok()).ok_or_else(bad)?),
        DType::Bool => out.push(u8::from(v.bool().ok_or_else(bad)?)),
    }
    Ok(())
}

pub mod json {
    use base64::Engine as _;
    use half::f16;
    use serde_json::{json, Value};

    use super::{element_count, push, DType, WireTensor};

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    /// Reads one tensor; errors say which field is wrong.
    pub fn from_json(v: &Value) -> Result<WireTensor, String> {
        let dtype: DType = v["dtype"]
            .as_str()
            .ok_or("\"dtype\" must be a string such as \"float32\"")?
            .parse()?;
        let shape: Vec<u64> = v["shape"]
            .as_array()
            .ok_or("\"shape\" must be a list of dimensions")?
            .iter()
            .map(|d| d.as_u64().ok_or_else(|| format!("bad dimension {d}")))
            .collect::<Result<_, _>>()?;
        let count = element_count(&shape).ok_or("the shape is too large")?;
        let data = match (&v["data"], &v["data_b64"]) {
            (Value::Array(values), Value::Null) => {
                if values.len() != count {
                    return Err(format!(
                        "shape {shape:?} holds {count} values, {} given",
                        values.len()
                    ));
                }
                let mut data = Vec::with_capacity(count * dtype.size());
                for x in values {
                    push(dtype, x, &mut data)?;
                }
                data
            }
            (Value::Null, Value::String(b)) => B64
                .decode(b)
                .map_err(|e| format!("\"data_b64\" is not base64: {e}"))?,
            _ => return Err("give exactly one of \"data\" (a list) and \"data_b64\"".into()),
        };
        Ok((dtype.name().to_owned(), shape, data))
    }

    /// Writes one tensor with its values as a JSON list.
    pub fn to_json((dtype, shape, data): &WireTensor) -> Value {
        let Ok(d) = dtype.parse::<DType>() else {
            return json!({"dtype": dtype, "shape": shape, "data_b64": B64.encode(data)});
        };
        let values: Vec<Value> = data
            .chunks_exact(d.size())
            .map(|b| match d {
                DType::Float32 => json!(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                DType::Float16 => json!(f16::from_le_bytes([b[0], b[1]]).to_f32()),
                DType::Int64 => json!(i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))),
                DType::Int32 => json!(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                DType::Uint8 => json!(b[0]),
                DType::Bool => json!(b[0] != 0),
            })
            .collect();
        json!({"dtype": dtype, "shape": shape, "data": values})
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trips_and_errors() {
            let t =
                from_json(&json!({"dtype": "float32", "shape": [2], "data": [1.5, -2]})).unwrap();
            assert_eq!(t.2, [1.5f32.to_le_bytes(), (-2f32).to_le_bytes()].concat());
            assert_eq!(to_json(&t)["data"], json!([1.5, -2.0]));
            let b = from_json(&json!({"dtype": "int64", "shape": [1], "data_b64": B64.encode(7i64.to_le_bytes())})).unwrap();
            assert_eq!(b.2, 7i64.to_le_bytes());
            for (v, needle) in [
                (
                    json!({"dtype": "float32", "shape": [3], "data": [1]}),
                    "holds 3 values",
                ),
                (
                    json!({"dtype": "int8", "shape": [1], "data": [1]}),
                    "unknown dtype",
                ),
                (
                    json!({"dtype": "uint8", "shape": [1], "data": [300]}),
                    "not a valid uint8",
                ),
                (json!({"dtype": "float32", "shape": [1]}), "exactly one of"),
            ] {
                let e = from_json(&v).unwrap_err();
                assert!(e.contains(needle), "{e}");
            }
        }
    }
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
