//! OpenAI's request and response bodies, as far as inferd serves them. Fields inferd does not
//! act on are either ignored (when their default is what inferd does anyway: `user`, a zero
//! `frequency_penalty`) or refused by name, so a client never gets silently different output.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The sampling fields every generation request shares, plus inferd's own options
/// (`top_k`, `min_p`, `repetition_penalty`, `reasoning`, `priority`, ...), which are passed
/// through to the transport-independent option rules under the same names.
#[derive(Debug, Default, Deserialize)]
pub struct Sampling {
    pub max_tokens: Option<Value>,
    pub max_completion_tokens: Option<Value>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u64>,
    pub logprobs: Option<Value>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    /// Everything else: OpenAI's `temperature`, `top_p`, `seed`, `stop`, and inferd's options.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    /// OpenAI's messages (`chat::messages_from_json` reads them).
    pub messages: Value,
    #[serde(flatten)]
    pub sampling: Sampling,
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Value,
    #[serde(flatten)]
    pub sampling: Sampling,
}

#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: Value,
    pub encoding_format: Option<String>,
    pub dimensions: Option<u64>,
    /// Ignored, as OpenAI only uses it for abuse monitoring.
    #[allow(dead_code)]
    pub user: Option<String>,
    /// inferd's embedding options (`truncate`, `priority`, `timeout_ms`).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Serialize, Clone, Default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Serialize, Clone, Default)]
pub struct PromptDetails {
    pub cached_tokens: u32,
}

#[derive(Debug, Serialize, Clone, Default)]
pub struct CompletionDetails {
    pub reasoning_tokens: u32,
}

impl From<&crate::work::job::Usage> for Usage {
    fn from(u: &crate::work::job::Usage) -> Usage {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
            prompt_tokens_details: Some(PromptDetails {
                cached_tokens: u.cached_prompt_tokens,
            }),
            completion_tokens_details: Some(CompletionDetails {
                reasoning_tokens: u.reasoning_tokens,
            }),
        }
    }
}
