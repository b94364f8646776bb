//! Turns a prompt (raw text or chat messages) into tokens and fits it to the context. The engine
//! runs this on a blocking thread before the request is queued, so a long prompt never holds
//! up the worker's decode steps (or its watchdog probe).

use std::sync::Arc;

use tokenizers::Tokenizer;

use super::constrain::Grammars;
use super::facts::Facts;
use super::template::ChatTemplate;
use super::text;
use crate::chat::{Message, Tool, ToolChoice};
use crate::error::{Error, Result};
use crate::work::job::{GenerateRequest, Prompt, PromptTokens};

pub struct PromptEncoder {
    name: String,
    tokenizer: Arc<Tokenizer>,
    template: Option<ChatTemplate>,
    facts: Facts,
    grammars: Grammars,
}

impl PromptEncoder {
    pub fn new(
        name: &str,
        tokenizer: Arc<Tokenizer>,
        template: Option<ChatTemplate>,
        facts: Facts,
        grammars: Grammars,
    ) -> Self {
        PromptEncoder {
            name: name.to_owned(),
            tokenizer,
            template,
            facts,
            grammars,
        }
    }

    fn encode(&self, prompt: &Prompt, tools: &[Tool]) -> Result<(Vec<u32>, bool)> {
        let (text, add_special) = match prompt {
            Prompt::Text(_) if !tools.is_empty() => {
                return Err(Error::InvalidInput(
                    "tools are for chat requests, not raw prompts".into(),
                ))
            }
            Prompt::Text(t) => (t.clone(), true),
            Prompt::Chat(messages) => {
                let t = self.template()?;
                let rendered = if tools.is_empty() || t.takes_tools {
                    t.render(messages, tools, &self.facts)
                } else {
                    // A template that shows no tools: a system message shows them instead,
                    // and earlier calls and results are written out in the same format.
                    let written: Vec<Message> =
                        messages.iter().map(|m| t.calls.written(m)).collect();
                    t.render(
                        &with_system(&written, &t.calls.system_text(tools)),
                        &[],
                        &self.facts,
                    )
                };
                (
                    rendered.map_err(|e| Error::InvalidInput(e.to_string()))?,
                    false,
                )
            }
        };
        let opens_thinking = text.trim_end().ends_with(text::THINK_OPEN);
        let enc = self
            .tokenizer
            .encode(text, add_special)
            .map_err(|e| Error::InvalidInput(format!("cannot tokenize the prompt: {e}")))?;
        Ok((enc.get_ids().to_vec(), opens_thinking))
    }

    fn template(&self) -> Result<&ChatTemplate> {
        self.template.as_ref().ok_or_else(|| {
            Error::InvalidInput(format!(
                "model {:?} has no chat template; use Generate or Complete",
                self.name
            ))
        })
    }

    /// Tokenizes and checks the context: the prompt's tokens, the token budget, whether the
    /// prompt opened a `<think>` block, and the compiled constraints (the request's own, or
    /// its tools').
    pub fn prepare(&self, req: &GenerateRequest) -> Result<PromptTokens> {
        let o = &req.options;
        let (mut tokens, thinking) = self.encode(&req.prompt, &o.tools)?;
        let calls = match &self.template {
            Some(t) if !o.tools.is_empty() && o.tool_choice != ToolChoice::None => Some(t.calls),
            _ => None,
        };
        let forced = calls.and_then(|f| f.forced(&o.tools, &o.tool_choice));
        let constraint = o
            .constraint
            .as_ref()
            .or(forced.as_ref())
            .map(|c| self.grammars.compile(c))
            .transpose()?;
        let trigger = match (calls, &o.tool_choice) {
            (Some(f), ToolChoice::Auto) => f
                .trigger(&o.tools)
                .map(|(start, c)| Ok::<_, Error>((start, self.grammars.compile(&c)?)))
                .transpose()?,
            _ => None,
        };
        let ctx = self.facts.context_length;
        let asked = req.options.max_tokens.map(|m| m as usize);
        let max_new = asked.unwrap_or(self.facts.max_tokens as usize);
        if tokens.is_empty() {
            return Err(Error::InvalidInput("the prompt is empty".into()));
        }
        if tokens.len() + max_new > ctx {
            if req.options.truncate {
                let keep = ctx.saturating_sub(max_new).max(1);
                tokens.drain(..tokens.len().saturating_sub(keep));
            } else if asked.is_some() || tokens.len() >= ctx {
                let room = if self.facts.context_is_kv_room {
                    " (all the KV cache holds: generation.kv_cache_tokens)"
                } else {
                    ""
                };
                return Err(Error::InvalidInput(format!(
                    "prompt of {} tokens + max_tokens {} exceeds the context length of {}{room}; shorten the prompt, lower max_tokens, or set truncate",
                    tokens.len(),
                    max_new,
                    ctx
                )));
            }
        }
        let max_new = max_new.min(ctx.saturating_sub(tokens.len()));
        Ok(PromptTokens {
            tokens,
            max_new,
            thinking,
            constraint,
            calls,
            trigger,
        })
    }
}

/// `messages` with `text` in the system message: added to the first one, or as a new first.
fn with_system(messages: &[Message], text: &str) -> Vec<Message> {
    let mut out = messages.to_vec();
    match out.first_mut() {
        Some(m) if m.role == "system" => m.content = format!("{}\n\n{text}", m.content),
        _ => out.insert(0, Message::new("system", text)),
    }
    out
}
