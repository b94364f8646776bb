//! Requests as the engine carries them to a worker, each with the channel its answer goes back on.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use super::priority::Priority;
use super::queue;
use crate::error::{Error, Result};
pub use crate::sampling::Sampling;
use crate::tensor::Tensor;

pub type Reply<T> = oneshot::Sender<Result<T>>;
pub type Tensors = BTreeMap<String, Tensor>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Dbus,
    Mqtt,
    Http,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Dbus => "dbus",
            Transport::Mqtt => "mqtt",
            Transport::Http => "http",
        }
    }
}

/// What travels with every request from its frontend to its worker: its id (for logs, errors
/// and the answer), its priority, where it came from (for metrics), who sent it (whose cached
/// prompts it may reuse), and its own timeout.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub id: String,
    pub priority: Priority,
    pub transport: Transport,
    pub timeout: Option<Duration>,
    /// The caller as the transport knows it: `uid:1000` on D-Bus, `reply:<topic>` on MQTT,
    /// `route:<filter>` for a route. Empty: unknown, shares with nobody.
    pub caller: String,
}

impl Ticket {
    pub fn new(id: impl Into<String>, transport: Transport, priority: Priority) -> Ticket {
        Ticket {
            id: id.into(),
            priority,
            transport,
            timeout: None,
            caller: String::new(),
        }
    }

    pub fn with_caller(mut self, caller: impl Into<String>) -> Ticket {
        self.caller = caller.into();
        self
    }
}

#[derive(Debug, Clone)]
pub struct EmbedRequest {
    pub texts: Vec<String>,
    /// When false, a text longer than the model's `max_length` is an error instead of being cut.
    pub truncate: bool,
}

/// One text as the model takes it, tokenized before it is queued.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextTokens {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Cut to the model's `max_length`.
    pub truncated: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbedOutput {
    pub vectors: Vec<Vec<f32>>,
    /// Per text: whether it was cut to `max_length`.
    pub truncated: Vec<bool>,
    /// Per text: tokens fed to the model.
    pub tokens: Vec<u32>,
}

/// What to generate from: a raw prompt (special tokens parsed) or chat messages (templated).
#[derive(Debug, Clone)]
pub enum Prompt {
    Text(String),
    Chat(Vec<crate::chat::Message>),
}

/// How reasoning (`<think>…</think>`) is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reasoning {
    /// On its own `reasoning` channel.
    #[default]
    Separate,
    /// Dropped, but counted in usage.
    Hide,
    /// Left in the content, tags included.
    Inline,
}

/// Generation options; `None` means the model's default.
#[derive(Debug, Clone, Default)]
pub struct GenOptions {
    pub max_tokens: Option<u32>,
    pub sampling: Sampling,
    pub stop: Vec<String>,
    pub reasoning: Reasoning,
    pub reasoning_budget: Option<u32>,
    /// Cut the prompt's start instead of failing when it does not fit the context.
    pub truncate: bool,
    /// Structured output: the text must fit this.
    pub constraint: Option<crate::constraint::Constraint>,
    /// Functions the model may call (chat only), and whether it must.
    pub tools: Vec<crate::chat::Tool>,
    pub tool_choice: crate::chat::ToolChoice,
}

/// A generation as a frontend asks for it.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    pub options: GenOptions,
    /// The caller reads the text as it is made. When false, the worker hands over the text in
    /// one piece at the end: no wake-up of the frontend per token, which on a small device
    /// takes a core from the decoding threads.
    pub stream: bool,
}

impl GenerateRequest {
    pub fn new(prompt: Prompt, options: GenOptions) -> GenerateRequest {
        GenerateRequest {
            prompt,
            options,
            stream: false,
        }
    }

    pub fn streamed(mut self, stream: bool) -> GenerateRequest {
        self.stream = stream;
        self
    }
}

/// A generation as its worker takes it: the prompt already tokenized (off the worker), with
/// the ticket's deadline, priority and caller.
#[derive(Debug, Clone)]
pub struct Generation {
    pub prompt: PromptTokens,
    pub options: GenOptions,
    /// Stop at this instant with finish reason `timeout`.
    pub deadline: Option<std::time::Instant>,
    pub priority: Priority,
    /// Only this caller's cached prompts are reused (see `Ticket::caller`).
    pub caller: String,
    /// See `GenerateRequest::stream`.
    pub stream: bool,
}

/// A prompt tokenized and checked against the context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptTokens {
    pub tokens: Vec<u32>,
    /// New tokens it may generate: `max_tokens`, or what the context leaves.
    pub max_new: usize,
    /// The prompt opened a `<think>` block, so the answer starts inside reasoning.
    pub thinking: bool,
    /// The request's constraint, compiled for the model's vocabulary: from the first token.
    pub constraint: Option<crate::constraint::Constrained>,
    /// The tool-call format to split calls out of the text with, when tools may be called.
    pub calls: Option<crate::chat::format::Format>,
    /// For tools the model may call or not: the text that starts a call, and the constraint
    /// that holds from there.
    pub trigger: Option<(String, crate::constraint::Constrained)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Content,
    Reasoning,
    /// One tool call, whole: `{"name", "arguments"}` as JSON text.
    ToolCall,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Content => "content",
            Channel::Reasoning => "reasoning",
            Channel::ToolCall => "tool_call",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    Cancelled,
    Timeout,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
            FinishReason::Timeout => "timeout",
        }
    }
}

/// Counts and timings reported when a generation ends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u32,
    /// Prompt tokens served from the prompt-prefix cache.
    pub cached_prompt_tokens: u32,
    pub completion_tokens: u32,
    pub reasoning_tokens: u32,
    pub time_to_first_token_ms: f64,
    pub tokens_per_second: f64,
}

#[derive(Debug, Clone)]
pub enum Event {
    Delta { text: String, channel: Channel },
    Finished { reason: FinishReason, usage: Usage },
    Failed(Error),
}

/// A whole generation, gathered from its events (for callers that do not stream).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub content: String,
    pub reasoning: String,
    /// Each call as `{"name", "arguments"}` JSON text.
    pub tool_calls: Vec<String>,
    pub reason: Option<FinishReason>,
    pub usage: Usage,
}

impl Completion {
    /// Adds one delta's text to its channel.
    pub fn add(&mut self, text: &str, channel: Channel) {
        match channel {
            Channel::Content => self.content.push_str(text),
            Channel::Reasoning => self.reasoning.push_str(text),
            Channel::ToolCall => self.tool_calls.push(text.to_owned()),
        }
    }

    /// The calls as a JSON list of `{"name", "arguments"}`.
    pub fn tool_calls_json(&self) -> serde_json::Value {
        self.tool_calls
            .iter()
            .filter_map(|c| serde_json::from_str::<serde_json::Value>(c).ok())
            .collect()
    }
}

/// Waits for a generation to end and gathers its text by channel.
pub async fn collect(mut rx: mpsc::UnboundedReceiver<Event>) -> Result<Completion> {
    let mut c = Completion::default();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Delta { text, channel } => c.add(&text, channel),
            Event::Finished { reason, usage } => {
                c.reason = Some(reason);
                c.usage = usage;
                return Ok(c);
            }
            Event::Failed(e) => return Err(e),
        }
    }
    Err(Error::Internal(
        "the generation ended without an answer".into(),
    ))
}

/// Per text: labels with their probabilities, best first.
pub type Classes = Vec<Vec<(String, f32)>>;

/// The sending side of a generation's events. It records the request's outcome in the
/// metrics when the generation ends, or as `abandoned` when it is dropped without an end
/// (its caller left).
pub struct Events {
    tx: mpsc::UnboundedSender<Event>,
    model: String,
    ticket: Ticket,
    ended: bool,
}

impl Events {
    pub fn new(tx: mpsc::UnboundedSender<Event>, model: &str, ticket: &Ticket) -> Events {
        Events {
            tx,
            model: model.to_owned(),
            ticket: ticket.clone(),
            ended: false,
        }
    }

    pub fn send(&mut self, ev: Event) {
        if self.ended {
            return;
        }
        let outcome = match &ev {
            Event::Delta { .. } => None,
            Event::Finished { usage, reason } => {
                if usage.completion_tokens > 0 {
                    let ttft = usage.time_to_first_token_ms / 1e3;
                    crate::metrics::get().generation(&self.model, ttft, usage.tokens_per_second);
                }
                Some(match reason {
                    FinishReason::Cancelled => "cancelled",
                    FinishReason::Timeout => "timeout",
                    FinishReason::Stop | FinishReason::Length => "ok",
                })
            }
            Event::Failed(e) => Some(e.kind()),
        };
        if let Some(outcome) = outcome {
            self.ended = true;
            self.record(outcome);
        }
        // A send error means the caller left; the worker notices through `is_closed`.
        let _ = self.tx.send(ev);
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    fn record(&self, outcome: &'static str) {
        crate::metrics::get().request(crate::metrics::RequestLabels {
            model: self.model.clone(),
            op: "generate",
            transport: self.ticket.transport.as_str(),
            outcome,
        });
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if !self.ended {
            self.record("abandoned");
        }
    }
}

pub enum Job {
    Classify {
        texts: Vec<TextTokens>,
        top_k: usize,
        reply: Reply<Classes>,
    },
    Generate {
        req: Box<Generation>,
        events: Events,
        cancel: CancellationToken,
    },
    Embed {
        texts: Vec<TextTokens>,
        reply: Reply<EmbedOutput>,
    },
    Infer {
        inputs: Tensors,
        reply: Reply<Tensors>,
    },
}

impl queue::Queued for Job {
    fn is_abandoned(&self) -> bool {
        match self {
            Job::Embed { reply, .. } => reply.is_closed(),
            Job::Infer { reply, .. } => reply.is_closed(),
            Job::Classify { reply, .. } => reply.is_closed(),
            Job::Generate { events, cancel, .. } => events.is_closed() || cancel.is_cancelled(),
        }
    }

    fn fail(self, error: Error) {
        // A send error means the caller left; there is nobody to tell.
        match self {
            Job::Embed { reply, .. } => drop(reply.send(Err(error))),
            Job::Infer { reply, .. } => drop(reply.send(Err(error))),
            Job::Classify { reply, .. } => drop(reply.send(Err(error))),
            Job::Generate { mut events, .. } => events.send(Event::Failed(error)),
        }
    }

    fn weight(&self) -> usize {
        match self {
            Job::Embed { texts, .. } | Job::Classify { texts, .. } => texts.len().max(1),
            Job::Infer { inputs, .. } => inputs
                .values()
                .next()
                .map_or(1, |t| t.rows().max(1) as usize),
            Job::Generate { .. } => 1,
        }
    }
}
