//! How inferctl prints replies: aligned tables for people, JSON for scripts.

use std::collections::HashMap;

use half::f16;
use inferd_client::{DType, ModelStatus, WireTensor};
use serde_json::{json, Value};

pub fn models(models: &[ModelStatus], as_json: bool) {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(models).unwrap_or_default()
        );
        return;
    }
    let rows: Vec<[String; 4]> = models
        .iter()
        .map(|m| {
            let provider = if m.provider.is_empty() {
                "-".to_owned()
            } else {
                m.provider.clone()
            };
            [
                m.name.clone(),
                m.kind.clone(),
                m.state.to_string(),
                provider,
            ]
        })
        .collect();
    let header = ["NAME", "KIND", "STATE", "PROVIDER"].map(String::from);
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in [&header].into_iter().chain(&rows) {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    for m in models {
        if let Some(e) = &m.error {
            println!("{}: {e}", m.name);
        }
    }
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

pub fn embeddings(
    texts: &[String],
    vectors: &[Vec<f64>],
    info: &Value,
    similarity: bool,
    as_json: bool,
) {
    if !similarity {
        if as_json {
            println!(
                "{}",
                json!({ "embeddings": vectors, "truncated": info["truncated"], "tokens": info["tokens"] })
            );
        } else {
            for (t, v) in texts.iter().zip(vectors) {
                let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:.4}")).collect();
                println!("{t:?} [{} dims] {} …", v.len(), head.join(" "));
            }
        }
        return;
    }
    let m: Vec<Vec<f64>> = vectors
        .iter()
        .map(|a| vectors.iter().map(|b| cosine(a, b)).collect())
        .collect();
    if as_json {
        println!("{}", json!({ "texts": texts, "similarity": m }));
        return;
    }
    for (i, t) in texts.iter().enumerate() {
        println!("[{}] {t}", i + 1);
    }
    let head: Vec<String> = (1..=texts.len())
        .map(|i| format!("{:>8}", format!("[{i}]")))
        .collect();
    println!("     {}", head.join(""));
    for (i, row) in m.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|x| format!("{x:>8.4}")).collect();
        println!("{:<5}{}", format!("[{}]", i + 1), cells.join(""));
    }
}

pub fn classes(texts: &[String], out: &[Vec<(String, f64)>], as_json: bool) {
    if as_json {
        let rows: Vec<Value> = texts
            .iter()
            .zip(out)
            .map(|(t, c)| json!({ "text": t, "labels": c.iter().map(|(l, p)| json!({"label": l, "score": p})).collect::<Vec<_>>() }))
            .collect();
        println!("{}", Value::Array(rows));
        return;
    }
    for (t, c) in texts.iter().zip(out) {
        let shown: Vec<String> = c.iter().map(|(l, p)| format!("{l} {p:.3}")).collect();
        println!("{t:?}: {}", shown.join(", "));
    }
}

/// Decodes little-endian bytes into JSON numbers (or booleans).
pub fn values(dtype: DType, data: &[u8]) -> Vec<Value> {
    fn chunks<const N: usize>(d: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        d.chunks_exact(N).map(|c| c.try_into().unwrap_or([0; N]))
    }
    match dtype {
        DType::Float32 => chunks::<4>(data)
            .map(|b| json!(f32::from_le_bytes(b)))
            .collect(),
        DType::Float16 => chunks::<2>(data)
            .map(|b| json!(f16::from_le_bytes(b).to_f32()))
            .collect(),
        DType::Int64 => chunks::<8>(data)
            .map(|b| json!(i64::from_le_bytes(b)))
            .collect(),
        DType::Int32 => chunks::<4>(data)
            .map(|b| json!(i32::from_le_bytes(b)))
            .collect(),
        DType::Uint8 => data.iter().map(|b| json!(b)).collect(),
        DType::Bool => data.iter().map(|b| json!(*b != 0)).collect(),
    }
}

pub fn tensors(out: &HashMap<String, WireTensor>, as_json: bool) {
    let mut names: Vec<&String> = out.keys().collect();
    names.sort();
    let mut doc = serde_json::Map::new();
    for name in names {
        let (dtype, shape, data) = &out[name];
        let vals = dtype
            .parse::<DType>()
            .map(|d| values(d, data))
            .unwrap_or_default();
        if as_json {
            doc.insert(
                name.clone(),
                json!({ "dtype": dtype, "shape": shape, "data": vals }),
            );
        } else {
            let shown: Vec<String> = vals.iter().map(Value::to_string).collect();
            println!("{name}: {dtype} {shape:?} [{}]", shown.join(", "));
        }
    }
    if as_json {
        println!("{}", Value::Object(doc));
    }
}
