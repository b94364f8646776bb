//! The MQTT wire contract as types: every payload inferd takes or sends on MQTT (requests,
//! replies, stream messages, cancels, the retained status). The daemon writes and reads these,
//! inferctl reads and writes them, and `docs/mqtt-messages.schema.json` is generated from them
//! for clients in other languages (the Python client's tests validate every message against it).
//! What inferd sends may gain fields in later versions, so those types take unknown fields;
//! what it takes (requests) is strict, as the daemon refuses unknown fields.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::health::MemoryPool;

fn is_false(b: &bool) -> bool {
    !*b
}

/// A request on `{prefix}/{node}/req/{model}/{op}` (or the pool's topic).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Echoed in every reply; also the key for cancel and duplicate detection.
    pub id: String,
    /// What the op takes: [`TextsInput`], [`PromptInput`], [`ChatInput`] or [`InferInput`].
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub input: Map<String, Value>,
    /// The same options, with the same names, as on D-Bus (docs/dbus.md).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub options: Map<String, Value>,
    /// Where to answer, for MQTT 3 clients; MQTT 5 clients set the Response Topic instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// `generate` and `chat`: answer with [`Delta`] messages and a [`Done`].
    #[serde(default, skip_serializing_if = "is_false")]
    pub stream: bool,
}

/// `embed` and `classify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextsInput {
    pub texts: Vec<String>,
}

/// `generate`: a raw prompt (no chat template).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptInput {
    pub prompt: String,
}

/// `chat`: OpenAI-style messages (`role`, `content`, and `tool_calls`/`tool_call_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatInput {
    pub messages: Vec<Value>,
}

/// `infer`: named tensors, each `{"dtype", "shape", "data"}` (`crate::tensor::json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InferInput {
    pub inputs: BTreeMap<String, Value>,
}

/// `{"id"}` on `{prefix}/{node}/cancel`, from the client that made the request: the same
/// reply topic (MQTT 5 Response Topic, or `reply_to`) as the request's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Cancel {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// The answer to a request, and every error (streamed or not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reply<T = Value> {
    /// The request's id; null when it could not be read.
    pub id: Option<String>,
    pub ok: bool,
    /// When `ok`: [`EmbedResult`], [`ClassifyResult`], [`InferResult`] or [`GenerateResult`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// On `{prefix}/{node}/error` only (a request without a reply address): its topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

impl<T> Reply<T> {
    pub fn ok(id: &str, result: T, usage: Option<Usage>) -> Reply<T> {
        Reply {
            id: Some(id.to_owned()),
            ok: true,
            result: Some(result),
            usage,
            error: None,
            topic: None,
        }
    }

    pub fn failed(id: Option<&str>, error: ErrorBody) -> Reply<T> {
        Reply {
            id: id.map(str::to_owned),
            ok: false,
            result: None,
            usage: None,
            error: Some(error),
            topic: None,
        }
    }

    /// The result, or the error as the same typed `Error` as on D-Bus.
    pub fn into_result(self) -> Result<(T, Option<Usage>), crate::Error> {
        match (self.ok, self.result, self.error) {
            (true, Some(r), _) => Ok((r, self.usage)),
            (_, _, Some(e)) => Err(e.into_error()),
            _ => Err(crate::Error::Internal(
                "a reply with neither a result nor an error".into(),
            )),
        }
    }
}

/// `{"code", "message"}`: `code` is the D-Bus error name in snake case (`model_not_found`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    pub fn into_error(self) -> crate::Error {
        crate::mqtt::error_from_code(&self.code, self.message)
    }
}

/// Token counts and speed. `embed` reports `prompt_tokens` only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    pub prompt_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_prompt_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_token_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmbedResult {
    pub embeddings: Vec<Vec<f32>>,
    /// Per text: whether it was cut to the model's length.
    pub truncated: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Label {
    pub label: String,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClassifyResult {
    /// Per text, best first.
    pub labels: Vec<Vec<Label>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InferResult {
    /// Named tensors, each `{"dtype", "shape", "data"}`.
    pub outputs: BTreeMap<String, Value>,
}

/// A whole generation (`generate`/`chat` without `stream`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerateResult {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// `[{"name", "arguments"}]` when the model called tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
    /// `stop`, `length`, `cancelled`, `timeout`, `tool_calls`.
    pub finish_reason: Option<String>,
}

/// Streamed text: `seq` counts from 0 across the stream's messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Delta {
    pub id: String,
    pub seq: u64,
    pub delta: String,
    /// `content`, `reasoning` or `tool_call`.
    pub channel: String,
}

/// The end of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Done {
    pub id: String,
    pub seq: u64,
    /// Always true.
    pub done: bool,
    pub finish_reason: String,
    pub usage: Usage,
}

/// One message of a streamed generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StreamMessage {
    Delta(Delta),
    Done(Done),
    Error(Reply),
}

/// The retained `{prefix}/{node}/status`: online with the models, or offline (also the Last
/// Will, so a crash flips it too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeStatus {
    /// `online` or `offline`.
    pub state: String,
    pub version: String,
    /// `Health()`'s status when online: `ok`, `loading`, `degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<StatusModel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Vec<MemoryPool>>,
}

/// A model in the status: part of its `ListModels` entry; absent values are null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusModel {
    pub name: String,
    pub kind: String,
    /// `loading`, `ready`, `failed`, `unloaded`.
    pub state: String,
    pub provider: String,
    pub error: Option<String>,
    pub engine_build_s: Option<u64>,
    pub queue_depth: u32,
    pub active: u32,
    pub last_error: Option<String>,
    pub memory_bytes: Option<u64>,
    pub memory_pool: Option<String>,
    pub idle_s: Option<u64>,
}

/// Every message type by name, as one JSON Schema document (`$defs`).
pub fn schema() -> Value {
    let mut defs = Map::new();
    let mut add = |name: &str, s: schemars::Schema| {
        let mut v = s.to_value();
        if let Some(Value::Object(inner)) = v.as_object_mut().and_then(|o| o.remove("$defs")) {
            defs.extend(inner);
        }
        if let Some(o) = v.as_object_mut() {
            o.remove("$schema");
        }
        defs.insert(name.to_owned(), v);
    };
    add("Request", schemars::schema_for!(Request));
    add("TextsInput", schemars::schema_for!(TextsInput));
    add("PromptInput", schemars::schema_for!(PromptInput));
    add("ChatInput", schemars::schema_for!(ChatInput));
    add("InferInput", schemars::schema_for!(InferInput));
    add("Cancel", schemars::schema_for!(Cancel));
    add("Reply", schemars::schema_for!(Reply));
    add("EmbedResult", schemars::schema_for!(EmbedResult));
    add("ClassifyResult", schemars::schema_for!(ClassifyResult));
    add("InferResult", schemars::schema_for!(InferResult));
    add("GenerateResult", schemars::schema_for!(GenerateResult));
    add("StreamMessage", schemars::schema_for!(StreamMessage));
    add("NodeStatus", schemars::schema_for!(NodeStatus));
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "inferd MQTT messages",
        "description": "Generated from inferd_client::messages by `cargo test -p inferd-client` with INFERD_WRITE_SCHEMA=1; docs/mqtt.md explains each.",
        "$defs": defs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys in order, so the file's text does not depend on map iteration order.
    fn sorted(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                let m: BTreeMap<String, Value> =
                    m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(m.into_iter().collect())
            }
            Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
            other => other,
        }
    }

    #[test]
    fn the_committed_schema_is_the_types() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/mqtt-messages.schema.json");
        let now = sorted(schema());
        if std::env::var_os("INFERD_WRITE_SCHEMA").is_some() {
            let text = serde_json::to_string_pretty(&now).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
            return;
        }
        let committed: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
                .unwrap_or_default();
        assert!(
            committed == now,
            "{} is stale: INFERD_WRITE_SCHEMA=1 cargo test -p inferd-client messages",
            path.display()
        );
    }

    #[test]
    fn stream_messages_are_told_apart() {
        let d: StreamMessage =
            serde_json::from_str(r#"{"id":"1","seq":0,"delta":"Hi","channel":"content"}"#).unwrap();
        assert!(matches!(d, StreamMessage::Delta(_)));
        let u = r#"{"prompt_tokens":3,"completion_tokens":1}"#;
        let done =
            format!(r#"{{"id":"1","seq":1,"done":true,"finish_reason":"stop","usage":{u}}}"#);
        assert!(matches!(
            serde_json::from_str(&done).unwrap(),
            StreamMessage::Done(_)
        ));
        let e: StreamMessage = serde_json::from_str(
            r#"{"id":"1","ok":false,"error":{"code":"timeout","message":"late"}}"#,
        )
        .unwrap();
        let StreamMessage::Error(r) = e else {
            panic!("{e:?}")
        };
        assert!(matches!(r.into_result(), Err(crate::Error::Timeout(_))));
    }
}
