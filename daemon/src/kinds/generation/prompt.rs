//! Turns a prompt (raw text or chat messages) into tokens and fits it to the context. The engine
//! runs this on a blocking thread before the request is queued, so a long prompt never holds
//! up the worker's decode steps (or its watchdog probe).

use std::sync::Arc;

use tokenizers::Tokenizer;

use super::constrain::Grammars;
use super::facts::Facts;
use super::template::ChatTemplate;
use super::text;
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

    fn encode(&self, prompt: &Prompt) -> Result<(Vec<u32>, bool)> {
        let (text, add_special) = match prompt {
            Prompt::Text(t) => (t.clone(), true),
            Prompt::Chat(messages) => {
                let t = self.template.as_ref().ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "model {:?} has no chat template; use Generate or Complete",
                        self.name
                    ))
                })?;
                (
                    t.render(messages, &self.facts)
                        .map_err(|e| Error::InvalidInput(e.to_string()))?,
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

    /// Tokenizes and checks the context: the prompt's tokens, the token budget, whether the
    /// prompt opened a `<think>` block, and the compiled constraint.
    pub fn prepare(&self, req: &GenerateRequest) -> Result<PromptTokens> {
        let constraint = req
            .options
            .constraint
            .as_ref()
            .map(|c| self.grammars.compile(c))
            .transpose()?;
        let (mut tokens, thinking) = self.encode(&req.prompt)?;
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
                return Err(Error::InvalidInput(format!(
                    "prompt of {} tokens + max_tokens {} exceeds the context length of {}; shorten the prompt, lower max_tokens, or set truncate",
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
        })
    }
}
