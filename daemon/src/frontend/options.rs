//! Request options, the same names and rules on every transport. Each transport implements
//! `Options` over its own encoding (a D-Bus `a{sv}`, a JSON object); what the options mean is
//! decided once, here. Unknown keys and wrong types are `InvalidInput` naming the option, so a
//! typo never passes silently.

use std::time::Duration;

use crate::engine::job::{EmbedRequest, GenOptions, Reasoning};
use crate::error::{Error, Result};

/// Typed reads of one request's options. Implementations accept any integer where an integer
/// is meant and an integer where a float is meant; `None` means absent.
pub trait Options {
    fn keys(&self) -> Vec<&str>;
    fn uint(&self, key: &str) -> Result<Option<u64>>;
    fn float(&self, key: &str) -> Result<Option<f64>>;
    fn string(&self, key: &str) -> Result<Option<String>>;
    /// A list of strings; a single string is taken as a list of one.
    fn strings(&self, key: &str) -> Result<Vec<String>>;
    fn boolean(&self, key: &str) -> Result<Option<bool>>;
}

/// Rejects any key not in `known`.
pub fn only(opts: &impl Options, known: &[&str]) -> Result<()> {
    match opts.keys().into_iter().find(|k| !known.contains(k)) {
        Some(k) => Err(Error::InvalidInput(format!(
            "unknown option {k:?}; this request takes: {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn timeout(opts: &impl Options) -> Result<Option<Duration>> {
    Ok(opts.uint("timeout_ms")?.map(Duration::from_millis))
}

pub const EMBED_OPTIONS: [&str; 2] = ["timeout_ms", "truncate"];
pub const CLASSIFY_OPTIONS: [&str; 3] = ["top_k", "timeout_ms", "truncate"];

/// `Embed` options: the request for `texts`, and its deadline.
pub fn embedding(
    opts: &impl Options,
    texts: Vec<String>,
) -> Result<(EmbedRequest, Option<Duration>)> {
    only(opts, &EMBED_OPTIONS)?;
    let truncate = opts.boolean("truncate")?.unwrap_or(true);
    Ok((EmbedRequest { texts, truncate }, timeout(opts)?))
}

/// `Classify` options: the request for `texts`, `top_k` (0 = every label), and its deadline.
pub fn classification(
    opts: &impl Options,
    texts: Vec<String>,
) -> Result<(EmbedRequest, usize, Option<Duration>)> {
    only(opts, &CLASSIFY_OPTIONS)?;
    let truncate = opts.boolean("truncate")?.unwrap_or(true);
    let top_k = opts.uint("top_k")?.unwrap_or(0) as usize;
    Ok((EmbedRequest { texts, truncate }, top_k, timeout(opts)?))
}

pub const GENERATION_OPTIONS: [&str; 13] = [
    "max_tokens",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repetition_penalty",
    "seed",
    "stop",
    "reasoning",
    "reasoning_budget",
    "timeout_ms",
    "truncate",
    "handle_token",
];

/// Generation options, with the `timeout_ms` deadline, which the engine also applies while
/// the request is queued.
pub fn generation(opts: &impl Options) -> Result<(GenOptions, Option<Duration>)> {
    only(opts, &GENERATION_OPTIONS)?;
    let u32_opt = |k: &str| -> Result<Option<u32>> {
        opts.uint(k)?
            .map(|v| {
                u32::try_from(v)
                    .map_err(|_| Error::InvalidInput(format!("option {k:?} is too large: {v}")))
            })
            .transpose()
    };
    let reasoning = match opts.string("reasoning")?.as_deref() {
        None | Some("separate") => Reasoning::Separate,
        Some("hide") => Reasoning::Hide,
        Some("inline") => Reasoning::Inline,
        Some(other) => {
            return Err(Error::InvalidInput(format!(
                "option \"reasoning\" must be \"separate\", \"hide\" or \"inline\", got {other:?}"
            )))
        }
    };
    let o = GenOptions {
        max_tokens: u32_opt("max_tokens")?,
        temperature: opts.float("temperature")?,
        top_k: u32_opt("top_k")?,
        top_p: opts.float("top_p")?,
        min_p: opts.float("min_p")?,
        repetition_penalty: opts.float("repetition_penalty")?,
        seed: opts.uint("seed")?,
        stop: opts.strings("stop")?,
        reasoning,
        reasoning_budget: u32_opt("reasoning_budget")?,
        truncate: opts.boolean("truncate")?.unwrap_or(false),
    };
    for (k, v, lo, hi) in [
        ("temperature", o.temperature, 0.0, 100.0),
        ("top_p", o.top_p, 0.0, 1.0),
        ("min_p", o.min_p, 0.0, 1.0),
        ("repetition_penalty", o.repetition_penalty, 0.01, 100.0),
    ] {
        if v.is_some_and(|v| !(lo..=hi).contains(&v)) {
            return Err(Error::InvalidInput(format!(
                "option {k:?} must be between {lo} and {hi}"
            )));
        }
    }
    let timeout = u32_opt("timeout_ms")?.map(|ms| Duration::from_millis(ms.into()));
    Ok((o, timeout))
}

/// Options as a JSON object (MQTT payloads).
impl Options for serde_json::Map<String, serde_json::Value> {
    fn keys(&self) -> Vec<&str> {
        self.keys().map(String::as_str).collect()
    }

    fn uint(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) => Ok(Some(n)),
                None if v.as_i64().is_some() => Err(Error::InvalidInput(format!(
                    "option {key:?} must not be negative, got {v}"
                ))),
                None => Err(json_wrong(key, "an unsigned integer", v)),
            },
        }
    }

    fn float(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| json_wrong(key, "a number", v)),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| json_wrong(key, "a string", v)),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(serde_json::Value::String(s)) => Ok(vec![s.clone()]),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| json_wrong(key, "a list of strings", x))
                })
                .collect(),
            Some(v) => Err(json_wrong(key, "a list of strings", v)),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| json_wrong(key, "a boolean", v)),
        }
    }
}

fn json_wrong(key: &str, want: &str, v: &serde_json::Value) -> Error {
    let got = match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    };
    Error::InvalidInput(format!("option {key:?} must be {want}, got {got}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn json_options_mean_what_dbus_options_mean() {
        let (o, t) = generation(&map(json!({
            "max_tokens": 8, "temperature": 1, "seed": 42, "stop": "\n",
            "reasoning": "hide", "timeout_ms": 500
        })))
        .unwrap();
        assert_eq!(
            (o.max_tokens, o.temperature, o.seed, o.reasoning),
            (Some(8), Some(1.0), Some(42), Reasoning::Hide)
        );
        assert_eq!(
            (o.stop, t),
            (vec!["\n".to_owned()], Some(Duration::from_millis(500)))
        );
        for (opts, needle) in [
            (json!({"temprature": 1.0}), "unknown option \"temprature\""),
            (
                json!({"temperature": "hot"}),
                "\"temperature\" must be a number, got a string",
            ),
            (json!({"max_tokens": -1}), "must not be negative"),
            (json!({"max_tokens": 1.5}), "must be an unsigned integer"),
            (json!({"stop": [1]}), "a list of strings"),
            (json!({"top_p": 2}), "between 0 and 1"),
        ] {
            let e = generation(&map(opts)).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let (req, k, _) = classification(&map(json!({"top_k": 2})), vec!["x".into()]).unwrap();
        assert_eq!((req.truncate, k), (true, 2));
        assert!(embedding(&map(json!({"top_k": 2})), vec![]).is_err());
    }
}
