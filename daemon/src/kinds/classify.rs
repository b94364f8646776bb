//! `classification`: an encoder whose output is one logit per label. Labels come from the
//! manifest or the model folder's `config.json` (`id2label`); scores are a softmax.

use std::path::Path;

use crate::error::LoadError;

/// The label names, checked against the model's output width when the graph fixes it.
pub fn labels(
    dir: &Path,
    manifest: &[String],
    width: Option<usize>,
) -> Result<Vec<String>, LoadError> {
    let labels = if manifest.is_empty() {
        from_config(dir).ok_or_else(|| {
            LoadError::Graph(
                "no labels: set [classification] labels in model.toml or id2label in config.json"
                    .into(),
            )
        })?
    } else {
        manifest.to_vec()
    };
    if let Some(w) = width.filter(|&w| w != labels.len()) {
        return Err(LoadError::Graph(format!(
            "the model has {w} outputs but {} labels",
            labels.len()
        )));
    }
    Ok(labels)
}

fn from_config(dir: &Path) -> Option<Vec<String>> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).ok()?).ok()?;
    let map = v["id2label"].as_object()?;
    let mut pairs: Vec<(usize, String)> = map
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_owned())))
        .collect();
    pairs.sort();
    Some(pairs.into_iter().map(|(_, l)| l).collect())
}

/// Softmax over `logits`, labelled, best first, at most `top_k` (0: all).
pub fn top_classes(logits: &[f32], labels: &[String], top_k: usize) -> Vec<(String, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let mut out: Vec<(String, f32)> = labels
        .iter()
        .cloned()
        .zip(exp.iter().map(|e| e / sum))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    if top_k > 0 {
        out.truncate(top_k);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_labels_best_first() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let out = top_classes(&[1.0, 3.0, 2.0], &labels, 2);
        assert_eq!(
            out.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        let all = top_classes(&[1.0, 3.0, 2.0], &labels, 0);
        assert!((all.iter().map(|p| p.1).sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn labels_from_config_or_manifest_must_fit_the_output() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("config.json"),
            r#"{"id2label":{"1":"pos","0":"neg"}}"#,
        )
        .unwrap();
        assert_eq!(labels(d.path(), &[], Some(2)).unwrap(), ["neg", "pos"]);
        let e = labels(d.path(), &["x".into()], Some(2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 outputs but 1 labels"), "{e}");
    }
}
