//! One request per op, run against the engine: reads `input` and `options`, calls the engine,
//! and hands back what to publish. The same option names and errors as on D-Bus.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use inferd_client::messages::{
    self, ClassifyResult, EmbedResult, GenerateResult, InferInput, InferResult, Label, PromptInput,
    TextsInput,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::topics::Op;
use super::wire::{self, WireError};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::engine::Engine;
use crate::error::Error;
use crate::frontend::options;
use crate::tensor::Tensor;
use crate::work::job::{self, Event, FinishReason, GenerateRequest, Prompt, Ticket};

/// A finished request: its result and usage, or an error.
pub type Answer = Result<(Value, Option<messages::Usage>), WireError>;

fn invalid(msg: impl Into<String>) -> WireError {
    WireError::new("invalid_input", msg)
}

/// The request's `input` as the op's input type; `shape` says what was expected.
fn input<T: DeserializeOwned>(input: &Map<String, Value>, shape: &str) -> Result<T, WireError> {
    serde_json::from_value(Value::Object(input.clone()))
        .map_err(|e| invalid(format!("input must be {shape}: {e}")))
}

fn texts(i: &Map<String, Value>) -> Result<Vec<String>, WireError> {
    let t: TextsInput = input(i, "{\"texts\": [\"...\", ...]}")?;
    Ok(t.texts)
}

fn value(result: impl Serialize) -> Value {
    // Result types have string keys and plain fields.
    serde_json::to_value(result).unwrap_or_default()
}

/// The shorter of the option's timeout and what is left of the message's expiry.
fn timeout(opt: Option<Duration>, deadline: Option<Instant>) -> Option<Duration> {
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    match (opt, left) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub struct Call<'a> {
    pub engine: &'a Engine,
    pub model: &'a str,
    pub input: &'a Map<String, Value>,
    pub options: &'a Map<String, Value>,
    pub deadline: Option<Instant>,
    /// Id and default priority; the request's options may change the priority.
    pub ticket: Ticket,
}

impl Call<'_> {
    pub async fn run(&self, op: Op, cancel: CancellationToken) -> Answer {
        match op {
            Op::Embed => self.embed().await,
            Op::Classify => self.classify().await,
            Op::Infer => self.infer().await,
            Op::Generate | Op::Chat => {
                collect(self.start_generation(op, false, cancel).await?).await
            }
        }
    }

    /// The ticket once the options have been read into it; the message's expiry caps its
    /// timeout.
    fn stamped(&self, mut t: Ticket) -> Ticket {
        t.timeout = timeout(t.timeout, self.deadline);
        t
    }

    async fn embed(&self) -> Answer {
        let mut t = self.ticket.clone();
        let req = options::embedding(self.options, texts(self.input)?, &mut t)?;
        let out = self.engine.embed(self.model, req, &self.stamped(t)).await?;
        let tokens: u32 = out.tokens.iter().sum();
        let usage = messages::Usage {
            prompt_tokens: tokens.into(),
            ..Default::default()
        };
        let result = EmbedResult {
            embeddings: out.vectors,
            truncated: out.truncated,
        };
        Ok((value(result), Some(usage)))
    }

    async fn classify(&self) -> Answer {
        let mut t = self.ticket.clone();
        let (req, top_k) = options::classification(self.options, texts(self.input)?, &mut t)?;
        let t = self.stamped(t);
        let out = self.engine.classify(self.model, req, top_k, &t).await?;
        let labels = out
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|(label, score)| Label { label, score })
                    .collect()
            })
            .collect();
        Ok((value(ClassifyResult { labels }), None))
    }

    async fn infer(&self) -> Answer {
        options::only(self.options, &options::INFER_OPTIONS)?;
        let mut t = self.ticket.clone();
        options::ticket(self.options, &mut t)?;
        let t = self.stamped(t);
        let inputs: InferInput = input(
            self.input,
            "{\"inputs\": {\"NAME\": {\"dtype\", \"shape\", \"data\"}}}",
        )?;
        let mut tensors = BTreeMap::new();
        for (name, v) in inputs.inputs {
            let wire = inferd_client::tensor::json::from_json(&v)
                .map_err(|e| invalid(format!("input {name:?}: {e}")))?;
            let t = Tensor::from_wire(&name, wire)?;
            tensors.insert(name, t);
        }
        let run = self.engine.infer(self.model, tensors, &t);
        let out = match t.timeout {
            Some(limit) => {
                tokio::time::timeout(limit, run)
                    .await
                    .map_err(|_| Error::Timeout {
                        model: self.model.to_owned(),
                        waited_ms: limit.as_millis(),
                    })??
            }
            None => run.await?,
        };
        let outputs = out
            .into_iter()
            .map(|(name, t)| (name, inferd_client::tensor::json::to_json(&t.into_wire())))
            .collect();
        Ok((value(InferResult { outputs }), None))
    }

    fn prompt(&self, op: Op) -> Result<Prompt, WireError> {
        if op == Op::Generate {
            let p: PromptInput = input(self.input, "{\"prompt\": \"...\"}")?;
            return Ok(Prompt::Text(p.prompt));
        }
        let bad = || {
            invalid(
                "input must be {\"messages\": [{\"role\": \"user\", \"content\": \"...\"}, ...]}",
            )
        };
        let list = self.input.get("messages").ok_or_else(bad)?;
        let messages = crate::chat::messages_from_json(list).map_err(|e| invalid(&e))?;
        Ok(Prompt::Chat(messages))
    }

    /// Queues a generation; its events arrive on the returned channel.
    pub async fn start_generation(
        &self,
        op: Op,
        stream: bool,
        cancel: CancellationToken,
    ) -> Result<UnboundedReceiver<Event>, WireError> {
        let mut t = self.ticket.clone();
        let opts = options::generation(self.options, &mut t)?;
        let req = GenerateRequest::new(self.prompt(op)?, opts).streamed(stream);
        let t = self.stamped(t);
        Ok(self.engine.generate(self.model, req, &t, cancel).await?)
    }
}

/// A whole generation as one answer: `{"text", "reasoning"?, "tool_calls"?, "finish_reason"}`
/// and usage.
async fn collect(rx: UnboundedReceiver<Event>) -> Answer {
    let c = job::collect(rx).await?;
    let result = GenerateResult {
        finish_reason: c.reason.map(|r| FinishReason::as_str(r).to_owned()),
        reasoning: (!c.reasoning.is_empty()).then(|| c.reasoning.clone()),
        tool_calls: (!c.tool_calls.is_empty()).then(|| c.tool_calls_json()),
        text: c.content,
    };
    Ok((value(result), Some(wire::usage(&c.usage))))
}

pub fn ended() -> WireError {
    Error::Internal("the generation ended without an answer".into()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earlier_deadline_wins() {
        let soon = Some(Instant::now() + Duration::from_millis(50));
        let t = timeout(Some(Duration::from_secs(5)), soon).unwrap();
        assert!(t <= Duration::from_millis(50));
        assert_eq!(
            timeout(Some(Duration::from_secs(5)), None),
            Some(Duration::from_secs(5))
        );
        assert_eq!(timeout(None, None), None);
    }
}
