//! Parses `--input NAME=DTYPE:SHAPE:VALUES`, `--input NAME=FILE.npy` and `--input NAME=-` (a
//! .npy on stdin) into wire tensors.

use inferd_client::tensor::{element_count, push};
use inferd_client::{DType, WireTensor};

pub fn parse(arg: &str) -> Result<(String, WireTensor), String> {
    let (name, rest) = arg.split_once('=').ok_or_else(|| {
        format!("--input {arg:?}: expected NAME=DTYPE:SHAPE:VALUES, NAME=FILE.npy or NAME=-")
    })?;
    let tensor = if rest == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .map_err(|e| format!("--input {name}: reading stdin: {e}"))?;
        npy(&bytes).map_err(|e| format!("--input {name}: stdin: {e}"))?
    } else if rest.ends_with(".npy") {
        let bytes = std::fs::read(rest).map_err(|e| format!("{rest}: {e}"))?;
        npy(&bytes).map_err(|e| format!("{rest}: {e}"))?
    } else {
        inline(rest).map_err(|e| format!("--input {name}: {e}"))?
    };
    Ok((name.to_owned(), tensor))
}

fn inline(spec: &str) -> Result<WireTensor, String> {
    let mut parts = spec.splitn(3, ':');
    let (Some(dtype), Some(shape), Some(values)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("expected DTYPE:SHAPE:VALUES, e.g. float32:2x3:1,2,3,4,5,6".into());
    };
    let dtype: DType = dtype.parse()?;
    let shape: Vec<u64> = if shape.is_empty() || shape == "scalar" {
        Vec::new()
    } else {
        shape
            .split(['x', ','])
            .map(|d| {
                d.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("bad dimension {d:?}"))
            })
            .collect::<Result<_, _>>()?
    };
    let values: Vec<&str> = values
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let count = element_count(&shape).ok_or("invalid shape")?;
    if values.len() != count {
        return Err(format!(
            "shape {shape:?} holds {count} values, {} given",
            values.len()
        ));
    }
    let mut data = Vec::with_capacity(count * dtype.size());
    for v in values {
        push(dtype, &v, &mut data)?;
    }
    Ok((dtype.name().to_owned(), shape, data))
}

/// Reads a little-endian, C-order `.npy` file (format versions 1–3).
pub fn npy(bytes: &[u8]) -> Result<WireTensor, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated .npy header")?;
    let field = |key: &str| -> Result<&str, String> {
        let at = header
            .find(&format!("'{key}':"))
            .ok_or(format!("no {key} in .npy header"))?;
        Ok(header[at + key.len() + 3..].trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .trim_start_matches('\'')
        .split('\'')
        .next()
        .unwrap_or_default();
    let dtype = match descr {
        "<f4" => DType::Float32,
        "<f2" => DType::Float16,
        "<i8" => DType::Int64,
        "<i4" => DType::Int32,
        "|u1" => DType::Uint8,
        "|b1" => DType::Bool,
        other => return Err(format!("unsupported .npy dtype {other:?}")),
    };
    if field("fortran_order")?.starts_with("True") {
        return Err(
            "Fortran-order arrays are not supported; save with np.ascontiguousarray".into(),
        );
    }
    let shape_text = field("shape")?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("bad shape in .npy header")?;
    let shape: Vec<u64> = inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<u64>().map_err(|_| format!("bad dimension {d:?}")))
        .collect::<Result<_, _>>()?;
    let data = bytes[start + header_len..].to_vec();
    let want = element_count(&shape).ok_or("invalid shape")? * dtype.size();
    if data.len() != want {
        return Err(format!("expected {want} data bytes, found {}", data.len()));
    }
    Ok((dtype.name().to_owned(), shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_tensors() {
        let (name, (dtype, shape, data)) = parse("x=float32:2x2:1,2,3,4").unwrap();
        assert_eq!(
            (name.as_str(), dtype.as_str(), shape),
            ("x", "float32", vec![2, 2])
        );
        assert_eq!(&data[4..8], &2f32.to_le_bytes());
        assert!(parse("x=float32:2x2:1,2,3")
            .unwrap_err()
            .contains("holds 4 values"));
        assert!(parse("x=int32:2:1,z")
            .unwrap_err()
            .contains("not a valid int32"));
        let (_, (_, shape, data)) = parse("b=bool:3:true,0,1").unwrap();
        assert_eq!((shape, data), (vec![3], vec![1, 0, 1]));
    }

    #[test]
    fn npy_v1() {
        let header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1), }";
        let mut f = b"\x93NUMPY\x01\x00".to_vec();
        f.extend((header.len() as u16).to_le_bytes());
        f.extend(header.as_bytes());
        f.extend(7i32.to_le_bytes());
        f.extend(9i32.to_le_bytes());
        let (dtype, shape, data) = npy(&f).unwrap();
        assert_eq!(
            (dtype.as_str(), shape, data.len()),
            ("int32", vec![2, 1], 8)
        );
        assert!(npy(&f[..f.len() - 1]).unwrap_err().contains("expected 8"));
    }
}
