//! Compiling a request's constraint (`constraint.rs`) against its model's vocabulary with
//! llguidance. The vocabulary's token trie is built on the first constrained request, not at
//! load: models that never see one pay nothing. Compiling runs with the prompt's tokenizing,
//! off the worker, so an invalid schema is an `InvalidInput` before any decoding.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use tokenizers::Tokenizer;

use crate::constraint::{Constrained, Constraint};
use crate::error::{Error, Result};

pub struct Grammars {
    tokenizer: Arc<Tokenizer>,
    tokenizer_json: PathBuf,
    eos: Option<u32>,
    factory: OnceLock<std::result::Result<ParserFactory, String>>,
}

/// The vocabulary as llguidance sees it: each token's bytes, and our tokenizer for text it
/// must tokenize itself.
struct Vocabulary {
    trie: TokTrie,
    tokenizer: Arc<Tokenizer>,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        self.tokenizer
            .encode(String::from_utf8_lossy(s), false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }
}

impl Grammars {
    pub fn new(tokenizer: Arc<Tokenizer>, tokenizer_json: PathBuf, eos: Option<u32>) -> Self {
        Grammars {
            tokenizer,
            tokenizer_json,
            eos,
            factory: OnceLock::new(),
        }
    }

    fn factory(&self) -> Result<&ParserFactory> {
        self.factory
            .get_or_init(|| self.build())
            .as_ref()
            .map_err(|e| Error::Internal(format!("structured output is unavailable: {e}")))
    }

    fn build(&self) -> std::result::Result<ParserFactory, String> {
        let text = std::fs::read_to_string(&self.tokenizer_json).map_err(|e| e.to_string())?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let words =
            llguidance::token_bytes_from_tokenizer_json(&json).map_err(|e| e.to_string())?;
        let eos = self.eos.ok_or("the model has no end-of-sequence token")?;
        let info = TokRxInfo::new(words.len() as u32, eos);
        let env: TokEnv = Arc::new(Vocabulary {
            trie: TokTrie::from(&info, &words),
            tokenizer: self.tokenizer.clone(),
        });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(factory)
    }

    /// A fresh matcher for `c`; `InvalidInput` when the schema, regex or grammar is not one.
    pub fn compile(&self, c: &Constraint) -> Result<Constrained> {
        let grammar = match c {
            Constraint::Regex(rx) => TopLevelGrammar::from_regex(rx),
            Constraint::Grammar(lark) => TopLevelGrammar::from_lark(lark.clone()),
            _ => TopLevelGrammar::from_json_schema(c.schema().unwrap_or_default()),
        };
        let parser = self
            .factory()?
            .create_parser(grammar)
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", what(c))))?;
        let m = Matcher::new(Ok(parser));
        match m.get_error() {
            Some(e) => Err(Error::InvalidInput(format!("{}: {e}", what(c)))),
            None => Ok(Constrained::new(m)),
        }
    }
}

fn what(c: &Constraint) -> &'static str {
    match c {
        Constraint::JsonSchema(_) | Constraint::JsonObject => "invalid response_format schema",
        Constraint::Regex(_) => "invalid regex",
        Constraint::Grammar(_) => "invalid grammar",
    }
}
