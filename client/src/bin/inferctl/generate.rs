//! `inferctl generate` (one shot, streaming) and `inferctl chat` (an interactive REPL).

use std::collections::HashMap;
use std::io::Write;

use clap::Args;
use inferd_client::messages::{ChatInput, PromptInput, StreamMessage};
use inferd_client::mqtt::MqttStream;
use inferd_client::stream::{Input, Stream, StreamEvent};
use inferd_client::Error;
use serde_json::json;
use zbus::zvariant::{OwnedValue, Value};

use crate::transport::Transport;

/// Generation options shared by `generate` and `chat`.
#[derive(Args, Clone)]
pub struct GenArgs {
    /// Tokens to generate at most (default: the model's)
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Sampling temperature; 0 is greedy (default: the model's)
    #[arg(long)]
    temperature: Option<f64>,
    /// Sample among the k most likely tokens only
    #[arg(long)]
    top_k: Option<u32>,
    /// Sample among the most likely tokens whose probabilities add up to p
    #[arg(long)]
    top_p: Option<f64>,
    /// Drop tokens less likely than this fraction of the most likely one
    #[arg(long)]
    min_p: Option<f64>,
    /// Penalize tokens already in the prompt or the answer (1.0: none)
    #[arg(long)]
    repetition_penalty: Option<f64>,
    /// Seed for sampling, for repeatable answers
    #[arg(long)]
    seed: Option<u64>,
    /// Stop before this text (repeatable)
    #[arg(long)]
    stop: Vec<String>,
    /// Do not show the model's reasoning (<think>…</think>)
    #[arg(long)]
    hide_reasoning: bool,
    /// Reasoning models: think for at most this many tokens, then answer
    #[arg(long)]
    reasoning_budget: Option<u32>,
    /// Give up if the request waits longer than this in the queue
    #[arg(long)]
    timeout_ms: Option<u32>,
    /// interactive (the D-Bus default) or background (the MQTT default): background work
    /// yields to interactive work
    #[arg(long)]
    priority: Option<String>,
}

impl GenArgs {
    /// The options that were given, as JSON (MQTT sends these as they are).
    fn json_options(&self) -> serde_json::Map<String, serde_json::Value> {
        let all = json!({
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "min_p": self.min_p,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed,
            "reasoning_budget": self.reasoning_budget,
            "timeout_ms": self.timeout_ms,
            "priority": self.priority,
            "reasoning": self.hide_reasoning.then_some("hide"),
            "stop": (!self.stop.is_empty()).then_some(&self.stop),
        });
        let set = all
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()));
        set.collect()
    }

    /// The same as an `a{sv}` (the daemon takes any integer type where an integer is meant).
    fn options(&self) -> HashMap<String, Value<'static>> {
        let to_value = |v: &serde_json::Value| -> Value<'static> {
            match v {
                serde_json::Value::Number(n) => match n.as_u64() {
                    Some(u) => Value::U64(u),
                    None => Value::F64(n.as_f64().unwrap_or_default()),
                },
                serde_json::Value::Array(a) => Value::from(
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect::<Vec<_>>(),
                ),
                other => Value::from(other.as_str().unwrap_or_default().to_owned()),
            }
        };
        self.json_options()
            .iter()
            .map(|(k, v)| (k.clone(), to_value(v)))
            .collect()
    }
}

/// A started generation on either transport.
enum Source {
    Bus(Stream),
    Mqtt(MqttStream),
}

impl Source {
    async fn start(
        t: &Transport<'_>,
        model: &str,
        input: Input<'_>,
        args: &GenArgs,
    ) -> Result<Source, Error> {
        Ok(match t {
            Transport::Bus { conn, .. } => {
                let (keys, values): (Vec<String>, Vec<Value>) = args.options().into_iter().unzip();
                let options = keys.iter().map(String::as_str).zip(values).collect();
                Source::Bus(Stream::start(conn, model, input, options).await?)
            }
            Transport::Mqtt(b) => {
                let c = b.client;
                let options = args.json_options();
                let s = match input {
                    Input::Prompt(p) => {
                        let input = PromptInput {
                            prompt: p.to_owned(),
                        };
                        c.stream(model, "generate", input, options).await?
                    }
                    Input::Messages(m) => {
                        let messages = m
                            .iter()
                            .map(|(r, c)| json!({"role": r, "content": c}))
                            .collect();
                        c.stream(model, "chat", ChatInput { messages }, options)
                            .await?
                    }
                };
                Source::Mqtt(s)
            }
        })
    }

    async fn next(&mut self) -> Option<StreamEvent> {
        match self {
            Source::Bus(s) => s.next().await,
            Source::Mqtt(s) => Some(match s.next().await? {
                Ok(StreamMessage::Done(d)) => StreamEvent::Finished {
                    reason: d.finish_reason,
                    info: HashMap::new(),
                },
                Ok(StreamMessage::Delta(d)) => StreamEvent::Delta {
                    text: d.delta,
                    channel: d.channel,
                },
                Ok(StreamMessage::Error(r)) => StreamEvent::Failed {
                    name: "Internal".into(),
                    message: format!("unexpected reply {r:?}"),
                },
                Err(e) => StreamEvent::Failed {
                    name: e.short_name(),
                    message: e.message(),
                },
            }),
        }
    }

    async fn cancel(&self) -> Result<(), Error> {
        match self {
            Source::Bus(s) => Ok(s.request.cancel().await?),
            Source::Mqtt(s) => s.cancel().await,
        }
    }
}

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

fn info_json(info: &HashMap<String, OwnedValue>) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in info {
        let j = match &**v {
            Value::Str(s) => json!(s.as_str()),
            Value::U32(x) => json!(x),
            Value::U64(x) => json!(x),
            Value::F64(x) => json!(x),
            other => json!(other.to_string()),
        };
        m.insert(k.clone(), j);
    }
    serde_json::Value::Object(m)
}

/// Streams one answer to stdout; returns the content text. Ctrl-C cancels the answer.
async fn stream_answer(
    transport: &Transport<'_>,
    model: &str,
    input: Input<'_>,
    args: &GenArgs,
    json_out: bool,
) -> Result<String, Error> {
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Error::Internal(format!("cannot watch Ctrl-C: {e}")))?;
    let mut stream = Source::start(transport, model, input, args).await?;
    let mut content = String::new();
    let mut any_text = false;
    let mut out = std::io::stdout();
    loop {
        let ev = tokio::select! {
            ev = stream.next() => ev,
            _ = interrupt.recv() => {
                stream.cancel().await?;
                continue;
            }
        };
        let Some(ev) = ev else {
            return Err(Error::Internal("the connection closed".into()));
        };
        match ev {
            StreamEvent::Delta { text, channel } => {
                any_text |= !text.is_empty();
                if json_out {
                    println!(
                        "{}",
                        json!({"type": "delta", "text": text, "channel": channel})
                    );
                } else if channel == "reasoning" {
                    let _ = write!(out, "{DIM}{text}{RESET}");
                } else {
                    let _ = write!(out, "{text}");
                }
                let _ = out.flush();
                if channel == "content" {
                    content.push_str(&text);
                }
            }
            StreamEvent::Finished { reason, info } => {
                if json_out {
                    println!(
                        "{}",
                        json!({"type": "finished", "finish_reason": reason, "info": info_json(&info)})
                    );
                } else {
                    println!();
                    if !any_text {
                        // An empty line alone reads like a failure; say what happened.
                        eprintln!("(the model ended without text: finish_reason {reason})");
                    }
                }
                return match reason.as_str() {
                    "cancelled" => Err(Error::Cancelled("the answer was cancelled".into())),
                    "timeout" => Err(Error::Timeout("the generation passed its deadline".into())),
                    _ => Ok(content),
                };
            }
            StreamEvent::Failed { name, message } => {
                if json_out {
                    println!(
                        "{}",
                        json!({"type": "failed", "error": name, "message": message})
                    );
                }
                return Err(Error::from_wire(&name, message));
            }
        }
    }
}

pub async fn generate(
    transport: &Transport<'_>,
    model: &str,
    prompt: &str,
    args: &GenArgs,
    json_out: bool,
) -> Result<(), Error> {
    stream_answer(transport, model, Input::Prompt(prompt), args, json_out)
        .await
        .map(|_| ())
}

/// The REPL: multi-turn, streaming; `/reset` starts over; Ctrl-C cancels the current answer.
pub async fn chat(
    transport: &Transport<'_>,
    model: &str,
    system: Option<String>,
    args: &GenArgs,
) -> Result<(), Error> {
    let mut history: Vec<(String, String)> = system
        .iter()
        .map(|s| ("system".to_owned(), s.clone()))
        .collect();
    let initial = history.clone();
    eprintln!("chatting with {model}; /reset starts over, Ctrl-D quits, Ctrl-C stops an answer");
    loop {
        eprint!(">>> ");
        let line = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            std::io::stdin().read_line(&mut s).map(|n| (n, s))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Internal(e.to_string()))?;
        let (n, line) = line;
        if n == 0 {
            return Ok(());
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/reset" => {
                history = initial.clone();
                eprintln!("(new conversation)");
                continue;
            }
            _ => {}
        }
        history.push(("user".into(), line.to_owned()));
        let msgs: Vec<(&str, &str)> = history
            .iter()
            .map(|(r, c)| (r.as_str(), c.as_str()))
            .collect();
        match stream_answer(transport, model, Input::Messages(&msgs), args, false).await {
            Ok(answer) => history.push(("assistant".into(), answer)),
            Err(e) => {
                eprintln!("({}: {})", e.short_name(), e.message());
                history.pop();
            }
        }
    }
}
