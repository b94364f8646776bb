//! Request options, the same names and rules on every transport. Each transport implements
//! `Options` over its own encoding (a D-Bus `a{sv}`, a JSON object); what the options mean is
//! decided once, here. Unknown keys and wrong types are `InvalidInput` naming the option, so a
//! typo never passes silently.

use std::time::Duration;

use crate::chat::{self, ToolChoice};
use crate::constraint::Constraint;
use crate::error::{Error, Result};
use crate::work::job::{EmbedRequest, GenOptions, Priority, Reasoning, Sampling, Ticket};

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
    /// A JSON value. Transports without nested values (D-Bus) take an object or a list as
    /// JSON text in a string; other strings stay strings.
    fn json(&self, key: &str) -> Result<Option<serde_json::Value>> {
        self.string(key)?.map(|t| json_text(key, t)).transpose()
    }
}

fn json_text(key: &str, text: String) -> Result<serde_json::Value> {
    if !text.trim_start().starts_with(['{', '[']) {
        return Ok(serde_json::Value::String(text));
    }
    serde_json::from_str(&text)
        .map_err(|e| Error::InvalidInput(format!("option {key:?} must be JSON: {e}")))
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

/// The options every request takes: `timeout_ms` and `priority`, read into its ticket.
pub fn ticket(opts: &impl Options, ticket: &mut Ticket) -> Result<()> {
    if let Some(ms) = opts.uint("timeout_ms")? {
        let ms = u32::try_from(ms).map_err(|_| {
            Error::InvalidInput(format!("option \"timeout_ms\" is too large: {ms}"))
        })?;
        ticket.timeout = Some(Duration::from_millis(ms.into()));
    }
    if let Some(p) = opts.string("priority")? {
        ticket.priority = Priority::parse(&p).ok_or_else(|| {
            Error::InvalidInput(format!(
                "option \"priority\" must be \"interactive\" or \"background\", got {p:?}"
            ))
        })?;
    }
    Ok(())
}

pub const EMBED_OPTIONS: [&str; 3] = ["timeout_ms", "priority", "truncate"];
pub const CLASSIFY_OPTIONS: [&str; 4] = ["top_k", "timeout_ms", "priority", "truncate"];
pub const INFER_OPTIONS: [&str; 2] = ["timeout_ms", "priority"];

/// `Embed` options: the request for `texts`.
pub fn embedding(opts: &impl Options, texts: Vec<String>, t: &mut Ticket) -> Result<EmbedRequest> {
    only(opts, &EMBED_OPTIONS)?;
    ticket(opts, t)?;
    let truncate = opts.boolean("truncate")?.unwrap_or(true);
    Ok(EmbedRequest { texts, truncate })
}

/// `Classify` options: the request for `texts` and `top_k` (0 = every label).
pub fn classification(
    opts: &impl Options,
    texts: Vec<String>,
    t: &mut Ticket,
) -> Result<(EmbedRequest, usize)> {
    only(opts, &CLASSIFY_OPTIONS)?;
    ticket(opts, t)?;
    let truncate = opts.boolean("truncate")?.unwrap_or(true);
    let top_k = opts.uint("top_k")?.unwrap_or(0) as usize;
    Ok((EmbedRequest { texts, truncate }, top_k))
}

pub const GENERATION_OPTIONS: [&str; 19] = [
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
    "priority",
    "truncate",
    "handle_token",
    "response_format",
    "regex",
    "grammar",
    "tools",
    "tool_choice",
];

/// Generation options; `timeout_ms` (applied while queued and while generating) and
/// `priority` go to the ticket.
pub fn generation(opts: &impl Options, t: &mut Ticket) -> Result<GenOptions> {
    only(opts, &GENERATION_OPTIONS)?;
    ticket(opts, t)?;
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
        sampling: Sampling {
            temperature: opts.float("temperature")?,
            top_k: u32_opt("top_k")?,
            top_p: opts.float("top_p")?,
            min_p: opts.float("min_p")?,
            repetition_penalty: opts.float("repetition_penalty")?,
            seed: opts.uint("seed")?,
        },
        stop: opts.strings("stop")?,
        reasoning,
        reasoning_budget: u32_opt("reasoning_budget")?,
        truncate: opts.boolean("truncate")?.unwrap_or(false),
        constraint: constraint(opts)?,
        tools: match opts.json("tools")? {
            Some(v) => chat::tools_from_json(&v).map_err(|e| bad_option("tools", e))?,
            None => Vec::new(),
        },
        tool_choice: match opts.json("tool_choice")? {
            Some(v) => chat::tool_choice_from_json(&v).map_err(|e| bad_option("tool_choice", e))?,
            None => ToolChoice::Auto,
        },
    };
    if let ToolChoice::Function(name) = &o.tool_choice {
        if !o.tools.iter().any(|t| &t.name == name) {
            return Err(bad_option(
                "tool_choice",
                format!("no tool is named {name:?}"),
            ));
        }
    }
    if o.constraint.is_some() && !o.tools.is_empty() && o.tool_choice != ToolChoice::None {
        return Err(Error::InvalidInput(
            "tools cannot be combined with response_format, regex or grammar".into(),
        ));
    }
    let s = &o.sampling;
    for (k, v, lo, hi) in [
        ("temperature", s.temperature, 0.0, 100.0),
        ("top_p", s.top_p, 0.0, 1.0),
        ("min_p", s.min_p, 0.0, 1.0),
        ("repetition_penalty", s.repetition_penalty, 0.01, 100.0),
    ] {
        if v.is_some_and(|v| !(lo..=hi).contains(&v)) {
            return Err(Error::InvalidInput(format!(
                "option {k:?} must be between {lo} and {hi}"
            )));
        }
    }
    Ok(o)
}

fn bad_option(key: &str, why: String) -> Error {
    Error::InvalidInput(format!("option {key:?}: {why}"))
}

/// At most one of `response_format`, `regex` and `grammar`.
fn constraint(opts: &impl Options) -> Result<Option<Constraint>> {
    let mut found = Vec::new();
    if let Some(v) = opts.json("response_format")? {
        let c =
            Constraint::from_response_format(&v).map_err(|e| bad_option("response_format", e))?;
        found.extend(c);
    }
    found.extend(opts.string("regex")?.map(Constraint::Regex));
    found.extend(opts.string("grammar")?.map(Constraint::Grammar));
    if found.len() > 1 {
        return Err(Error::InvalidInput(
            "give at most one of response_format, regex and grammar".into(),
        ));
    }
    Ok(found.pop())
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

    /// A nested value as it is; JSON text in a string is parsed, as on D-Bus.
    fn json(&self, key: &str) -> Result<Option<serde_json::Value>> {
        match self.get(key) {
            Some(serde_json::Value::String(t)) => json_text(key, t.clone()).map(Some),
            v => Ok(v.cloned()),
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

    fn base() -> Ticket {
        Ticket::new(
            "t1",
            crate::work::job::Transport::Mqtt,
            Priority::Background,
        )
    }

    #[test]
    fn json_options_mean_what_dbus_options_mean() {
        let mut t = base();
        let o = generation(
            &map(json!({
                "max_tokens": 8, "temperature": 1, "seed": 42, "stop": "\n",
                "reasoning": "hide", "timeout_ms": 500, "priority": "interactive"
            })),
            &mut t,
        )
        .unwrap();
        assert_eq!(
            (
                o.max_tokens,
                o.sampling.temperature,
                o.sampling.seed,
                o.reasoning
            ),
            (Some(8), Some(1.0), Some(42), Reasoning::Hide)
        );
        assert_eq!(
            (o.stop, t.timeout, t.priority),
            (
                vec!["\n".to_owned()],
                Some(Duration::from_millis(500)),
                Priority::Interactive
            )
        );
        let mut t = base();
        embedding(&map(json!({})), vec![], &mut t).unwrap();
        assert_eq!(t.priority, Priority::Background, "the transport's default");
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
            (
                json!({"priority": "urgent"}),
                "\"interactive\" or \"background\"",
            ),
            (json!({"timeout_ms": 1u64 << 40}), "too large"),
        ] {
            let e = generation(&map(opts), &mut base()).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let schema = json!({"type": "object"});
        let rf = json!({"type": "json_schema", "json_schema": {"schema": schema}});
        for opts in [
            json!({"response_format": rf}),
            json!({"response_format": rf.to_string()}),
        ] {
            let o = generation(&map(opts), &mut base()).unwrap();
            assert_eq!(o.constraint, Some(Constraint::JsonSchema(schema.clone())));
        }
        let o = generation(&map(json!({"regex": "[0-9]+"})), &mut base()).unwrap();
        assert_eq!(o.constraint, Some(Constraint::Regex("[0-9]+".into())));
        for (opts, needle) in [
            (
                json!({"regex": "x", "grammar": "start: \"x\""}),
                "at most one",
            ),
            (json!({"response_format": "{not json"}), "must be JSON"),
            (
                json!({"response_format": {"type": "xml"}}),
                "response_format.type",
            ),
        ] {
            let e = generation(&map(opts), &mut base()).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let (req, k) =
            classification(&map(json!({"top_k": 2})), vec!["x".into()], &mut base()).unwrap();
        assert_eq!((req.truncate, k), (true, 2));
        assert!(embedding(&map(json!({"top_k": 2})), vec![], &mut base()).is_err());
    }
}
