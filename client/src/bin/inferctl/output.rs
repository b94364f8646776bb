//! How inferctl prints replies: aligned tables for people, JSON for scripts.

use std::collections::HashMap;

use inferd_client::{ModelStatus, WireTensor};
use serde_json::{json, Value};

pub fn health(h: &inferd_client::Health, as_json: bool) {
    if as_json {
        println!("{}", serde_json::to_string_pretty(h).unwrap_or_default());
        return;
    }
    println!(
        "{}  inferd {}, up {}, {} MiB resident",
        h.status,
        h.version,
        inferd_client::status::elapsed(h.uptime_s),
        h.rss_bytes >> 20
    );
    let header = ["NAME", "STATE", "PROVIDER", "QUEUE", "MEMORY", "IDLE"].map(String::from);
    let rows: Vec<[String; 6]> = h
        .models
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                m.state.to_string(),
                if m.provider.is_empty() {
                    "-".into()
                } else {
                    m.provider.clone()
                },
                m.queue_depth.to_string(),
                match (m.memory_bytes, &m.memory_pool) {
                    (Some(b), Some(pool)) => format!("{} MiB {pool}", b >> 20),
                    (Some(b), None) => format!("{} MiB", b >> 20),
                    _ => "-".into(),
                },
                m.idle_s.map_or("-".into(), inferd_client::status::elapsed),
            ]
        })
        .collect();
    table(&header, &rows);
    for p in &h.memory {
        let budget = p
            .budget_bytes
            .map_or("no budget".into(), |b| format!("budget {} MiB", b >> 20));
        let estimated = match p.estimated {
            0 => String::new(),
            n => format!(" ({n} estimated from their files: each loaded alongside another)"),
        };
        println!(
            "memory {}: models {} MiB{estimated}, {budget}",
            p.pool,
            p.models_bytes >> 20
        );
    }
    for m in &h.models {
        if let Some(kv) = kv_line(m) {
            println!("{}: {kv}", m.name);
        }
    }
    for m in &h.models {
        for e in m.error.iter().chain(&m.last_error) {
            println!("{}: {e}", m.name);
        }
    }
}

/// A text-generation model's KV cache: in use, its limit, per token, full-context streams.
fn kv_line(m: &ModelStatus) -> Option<String> {
    let kv = m.kv?;
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / f64::from(1 << 20));
    Some(format!(
        "KV cache {} in use of {}, {:.1} KiB a token, {} full-context streams fit",
        mib(kv.kv_bytes_in_use),
        mib(kv.kv_cache_bytes),
        kv.kv_bytes_per_token as f64 / 1024.0,
        kv.full_context_streams
    ))
}

/// Prints rows under a header, each column as wide as its widest cell.
fn table<const N: usize>(header: &[String; N], rows: &[[String; N]]) {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .chain([header])
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in [header].into_iter().chain(rows) {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

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
            let mut provider = if m.provider.is_empty() {
                "-".to_owned()
            } else {
                m.provider.clone()
            };
            if let Some(s) = m.engine_build_s {
                let building = inferd_client::status::elapsed(s);
                provider = format!("{provider} → tensorrt (building engine, {building})");
            }
            [
                m.name.clone(),
                m.kind.clone(),
                m.state.to_string(),
                provider,
            ]
        })
        .collect();
    let header = ["NAME", "KIND", "STATE", "PROVIDER"].map(String::from);
    table(&header, &rows);
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

pub fn tensors(out: &HashMap<String, WireTensor>, as_json: bool) {
    let mut names: Vec<&String> = out.keys().collect();
    names.sort();
    let mut doc = serde_json::Map::new();
    for name in names {
        let t = inferd_client::tensor::json::to_json(&out[name]);
        if as_json {
            doc.insert(name.clone(), t);
        } else {
            let vals = t["data"].as_array().cloned().unwrap_or_default();
            let shown: Vec<String> = vals.iter().map(Value::to_string).collect();
            let (dtype, shape, _) = &out[name];
            println!("{name}: {dtype} {shape:?} [{}]", shown.join(", "));
        }
    }
    if as_json {
        println!("{}", Value::Object(doc));
    }
}
