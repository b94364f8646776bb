//! `POST /v1/chat/completions` and `POST /v1/completions`: OpenAI's generation requests on
//! the engine's generations, whole or streamed as server-sent events (`data: [DONE]` last).
//! The generation is cancelled when the client goes: dropping the handler (a whole answer) or
//! the event stream (a streamed one) drops the guard that cancels it.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, State};
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::DropGuard;

use super::errors::{ApiError, Body};
use super::wire::{ChatRequest, CompletionRequest, Sampling, Usage};
use super::Api;
use crate::frontend::options;
use crate::listen::Peer;
use crate::work::job::{self, Channel, Event, FinishReason, GenerateRequest, Prompt, Reasoning};

/// Fields OpenAI clients send that change nothing here (their defaults are what inferd does).
const IGNORED: [&str; 5] = [
    "user",
    "store",
    "metadata",
    "service_tier",
    "parallel_tool_calls",
];

/// Which OpenAI object the answer is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Chat,
    Text,
}

pub async fn chat(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Body(req): Body<ChatRequest>,
) -> Result<Response, ApiError> {
    let messages = crate::chat::messages_from_json(&req.messages).map_err(ApiError::invalid)?;
    let prompt = Prompt::Chat(messages);
    run(api, peer, req.model, prompt, req.sampling).await
}

pub async fn completions(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Body(req): Body<CompletionRequest>,
) -> Result<Response, ApiError> {
    let prompt = match req.prompt {
        Value::String(s) => s,
        Value::Array(a) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().into()
        }
        _ => return Err(ApiError::invalid("prompt must be one string")),
    };
    let prompt = Prompt::Text(prompt);
    run(api, peer, req.model, prompt, req.sampling).await
}

/// What the OpenAI fields ask for, as the transport-independent generation options (so the
/// same names mean the same things and are checked the same way as on D-Bus and MQTT).
fn option_map(s: Sampling) -> Result<(Map<String, Value>, bool, bool), ApiError> {
    if s.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(
            "n must be 1: inferd makes one choice per request",
        ));
    }
    if s.logprobs
        .as_ref()
        .is_some_and(|v| v != &Value::Bool(false) && !v.is_null())
    {
        return Err(ApiError::invalid("logprobs are not supported"));
    }
    for (k, v) in [
        ("frequency_penalty", s.frequency_penalty),
        ("presence_penalty", s.presence_penalty),
    ] {
        if v.is_some_and(|v| v != 0.0) {
            return Err(ApiError::invalid(format!(
                "{k} is not supported; use repetition_penalty"
            )));
        }
    }
    let mut map: Map<String, Value> = s
        .rest
        .into_iter()
        .filter(|(k, v)| !v.is_null() && !IGNORED.contains(&k.as_str()))
        .collect();
    if let Some(max) = s
        .max_completion_tokens
        .or(s.max_tokens)
        .filter(|v| !v.is_null())
    {
        map.insert("max_tokens".into(), max);
    }
    if map.contains_key("handle_token") {
        return Err(ApiError::invalid("handle_token is a D-Bus option"));
    }
    let stream = s.stream.unwrap_or(false);
    let usage = s.stream_options.is_some_and(|o| o.include_usage);
    Ok((map, stream, usage))
}

async fn run(
    api: Api,
    peer: Peer,
    model: String,
    prompt: Prompt,
    sampling: Sampling,
) -> Result<Response, ApiError> {
    let shape = match prompt {
        Prompt::Chat(_) => Shape::Chat,
        Prompt::Text(_) => Shape::Text,
    };
    let mut t = api.ticket(peer);
    let fail = |e, id: &str| ApiError::for_request(e, id);
    let (map, stream, include_usage) = option_map(sampling)?;
    let gen = options::generation(&map, &mut t).map_err(|e| fail(e, &t.id))?;
    let reasoning = gen.reasoning;
    let cancel = tokio_util::sync::CancellationToken::new();
    let req = GenerateRequest::new(prompt, gen).streamed(stream);
    let rx = api
        .engine
        .generate(&model, req, &t, cancel.clone())
        .await
        .map_err(|e| fail(e, &t.id))?;
    let answer = Answer {
        request_id: t.id.clone(),
        model,
        created: now(),
        shape,
        reasoning,
    };
    let guard = cancel.drop_guard();
    if stream {
        let events = answer.stream(rx, guard, include_usage);
        return Ok(axum::response::Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let c = job::collect(rx).await.map_err(|e| fail(e, &t.id))?;
    drop(guard);
    Ok(axum::Json(answer.whole(&c)).into_response())
}

impl Shape {
    fn prefix(self) -> &'static str {
        match self {
            Shape::Chat => "chatcmpl",
            Shape::Text => "cmpl",
        }
    }

    fn object(self, chunk: bool) -> &'static str {
        match (self, chunk) {
            (Shape::Chat, false) => "chat.completion",
            (Shape::Chat, true) => "chat.completion.chunk",
            (Shape::Text, _) => "text_completion",
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What every object of one answer repeats.
struct Answer {
    request_id: String,
    model: String,
    created: u64,
    shape: Shape,
    reasoning: Reasoning,
}

impl Answer {
    fn object(&self, chunk: bool, choices: Value, usage: Option<Usage>) -> Value {
        let mut o = json!({
            "id": format!("{}-{}", self.shape.prefix(), self.request_id),
            "object": self.shape.object(chunk),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(u) = usage {
            o["usage"] = json!(u);
        }
        o
    }

    fn whole(&self, c: &job::Completion) -> Value {
        let called = !c.tool_calls.is_empty();
        let reason = c.reason.map(|r| finish_reason(r, called));
        let choice = match self.shape {
            Shape::Chat => {
                let mut message = json!({"role": "assistant", "content": c.content});
                if self.reasoning == Reasoning::Separate && !c.reasoning.is_empty() {
                    message["reasoning_content"] = json!(c.reasoning);
                }
                if called {
                    let calls: Vec<Value> = (0..c.tool_calls.len())
                        .map(|i| self.call(i, &c.tool_calls[i]))
                        .collect();
                    message["tool_calls"] = json!(calls);
                    if c.content.is_empty() {
                        message["content"] = Value::Null;
                    }
                }
                json!({"index": 0, "message": message, "finish_reason": reason})
            }
            Shape::Text => {
                json!({"index": 0, "text": c.content, "finish_reason": reason, "logprobs": null})
            }
        };
        self.object(false, json!([choice]), Some(Usage::from(&c.usage)))
    }

    /// Call `i` in OpenAI's form (`{"id", "type", "function": {"name", "arguments"}}`,
    /// arguments as JSON text) from the engine's `{"name", "arguments"}`.
    fn call(&self, i: usize, call: &str) -> Value {
        let v: Value = serde_json::from_str(call).unwrap_or_default();
        json!({
            "id": format!("call_{}_{i}", self.request_id),
            "type": "function",
            "function": {"name": v["name"], "arguments": v["arguments"].to_string()},
        })
    }

    /// One chunk of a stream: `delta` text on `channel` (call number `calls` for a tool call),
    /// or the end with `reason`.
    fn chunk(&self, delta: Option<(&str, Channel)>, calls: usize, reason: Option<Value>) -> Value {
        let choice = match self.shape {
            Shape::Chat => {
                let delta = match delta {
                    Some((t, Channel::Content)) => json!({"content": t}),
                    Some((t, Channel::Reasoning)) => json!({"reasoning_content": t}),
                    Some((t, Channel::ToolCall)) => {
                        let mut call = self.call(calls, t);
                        call["index"] = json!(calls);
                        json!({"tool_calls": [call]})
                    }
                    None => json!({}),
                };
                json!({"index": 0, "delta": delta, "finish_reason": reason})
            }
            Shape::Text => json!({
                "index": 0,
                "text": delta.map(|(t, _)| t).unwrap_or_default(),
                "finish_reason": reason,
                "logprobs": null,
            }),
        };
        self.object(true, json!([choice]), None)
    }

    /// The generation's events as server-sent events. The guard lives as long as the stream:
    /// a client that disconnects drops it, and with it the generation.
    fn stream(
        self,
        rx: UnboundedReceiver<Event>,
        guard: DropGuard,
        include_usage: bool,
    ) -> impl Stream<Item = Result<Sse, Infallible>> + Send {
        let first = (self.shape == Shape::Chat).then(|| {
            let mut c = self.chunk(None, 0, None);
            c["choices"][0]["delta"] = json!({"role": "assistant", "content": ""});
            c
        });
        let state = Streaming {
            answer: self,
            rx,
            _guard: guard,
            include_usage,
            pending: first.into_iter().map(data).collect(),
            done: false,
            calls: 0,
        };
        stream::unfold(state, |mut s| async move {
            loop {
                if let Some(ev) = s.pending.pop_front() {
                    return Some((Ok(ev), s));
                }
                if s.done {
                    return None;
                }
                s.next().await;
            }
        })
    }
}

struct Streaming {
    answer: Answer,
    rx: UnboundedReceiver<Event>,
    _guard: DropGuard,
    include_usage: bool,
    pending: std::collections::VecDeque<Sse>,
    done: bool,
    /// Tool calls sent so far.
    calls: usize,
}

impl Streaming {
    /// Queues what the next engine event becomes.
    async fn next(&mut self) {
        let a = &self.answer;
        match self.rx.recv().await {
            Some(Event::Delta { text, channel }) => {
                let chunk = a.chunk(Some((&text, channel)), self.calls, None);
                self.calls += usize::from(channel == Channel::ToolCall);
                self.pending.push_back(data(chunk));
            }
            Some(Event::Finished { reason, usage }) => {
                let reason = json!(finish_reason(reason, self.calls > 0));
                self.pending.push_back(data(a.chunk(None, 0, Some(reason))));
                if self.include_usage {
                    let u = a.object(true, json!([]), Some(Usage::from(&usage)));
                    self.pending.push_back(data(u));
                }
                self.pending.push_back(Sse::default().data("[DONE]"));
                self.done = true;
            }
            Some(Event::Failed(e)) => {
                let e = ApiError::for_request(e, &a.request_id);
                self.pending.push_back(data(e.body()));
                self.done = true;
            }
            None => self.done = true,
        }
    }
}

fn data(v: Value) -> Sse {
    Sse::default().data(v.to_string())
}

/// OpenAI's `tool_calls` for a generation that ended with calls; inferd's reason otherwise.
fn finish_reason(r: FinishReason, called: bool) -> &'static str {
    match (r, called) {
        (FinishReason::Stop, true) => "tool_calls",
        _ => r.as_str(),
    }
}
