//! Texts → tokens for embedding and classification models. The engine runs this on a blocking
//! thread before the request is queued, so the worker never tokenizes: a large request cannot
//! hold up the other callers' batches or the watchdog's probe.

use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{Error, LoadError, Result};
use crate::work::job::{EmbedRequest, TextTokens};

pub struct TextEncoder {
    tokenizer: Tokenizer,
    max_length: usize,
}

impl TextEncoder {
    /// Reads the model's tokenizer, set to cut texts at `max_length` tokens.
    pub fn new(path: &std::path::Path, max_length: usize) -> Result<Self, LoadError> {
        let tok_err = |message: String| LoadError::Tokenizer {
            path: path.to_owned(),
            message,
        };
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| tok_err(e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                ..Default::default()
            }))
            .map_err(|e| tok_err(e.to_string()))?;
        tokenizer.with_padding(None);
        Ok(TextEncoder {
            tokenizer,
            max_length,
        })
    }

    /// Each text's tokens; with `truncate` false, a text longer than `max_length` is an error.
    pub fn encode(&self, req: &EmbedRequest) -> Result<Vec<TextTokens>> {
        req.texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let enc = self
                    .tokenizer
                    .encode(text.as_str(), true)
                    .map_err(|e| Error::InvalidInput(format!("cannot tokenize text {i}: {e}")))?;
                let truncated = !enc.get_overflowing().is_empty();
                if truncated && !req.truncate {
                    return Err(Error::InvalidInput(format!(
                        "text {i} is longer than the model's max_length of {} tokens and truncate is false",
                        self.max_length
                    )));
                }
                Ok(TextTokens {
                    ids: enc.get_ids().to_vec(),
                    type_ids: enc.get_type_ids().to_vec(),
                    truncated,
                })
            })
            .collect()
    }
}
