//! `[limits]`: how big one request may be, on every transport. Each is checked before the
//! request is tokenized or its tensors are copied, so a client cannot make inferd spend
//! unbounded time or memory on one call; a request over one is `InvalidInput` naming the key.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::work::job::{GenerateRequest, Prompt, Tensors};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Texts in one Embed or Classify request.
    pub max_texts: usize,
    /// Bytes of one text of an Embed or Classify request.
    pub max_text_bytes: usize,
    /// Bytes of a generation's prompt: the raw prompt, or every message's role and content
    /// plus `MESSAGE_BYTES` for each (its share of the chat template).
    pub max_prompt_bytes: usize,
    /// Stop strings of one generation.
    pub max_stop: usize,
    /// Bytes of one stop string.
    pub max_stop_bytes: usize,
    /// Bytes of an Infer request's input tensors together.
    pub max_tensor_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_texts: 256,
            max_text_bytes: 64 << 10,
            max_prompt_bytes: 512 << 10,
            max_stop: 16,
            max_stop_bytes: 256,
            max_tensor_bytes: 64 << 20,
        }
    }
}

/// What one chat message counts for besides its role and content: the template wraps each in
/// markers, so a flood of empty messages is not free.
pub const MESSAGE_BYTES: usize = 32;

fn over(what: String, limit: usize, key: &str) -> Error {
    Error::InvalidInput(format!("{what}; the limit is {limit} (limits.{key})"))
}

impl Limits {
    pub fn texts(&self, texts: &[String]) -> Result<()> {
        if texts.len() > self.max_texts {
            let what = format!("{} texts", texts.len());
            return Err(over(what, self.max_texts, "max_texts"));
        }
        if let Some((i, t)) = texts
            .iter()
            .enumerate()
            .find(|(_, t)| t.len() > self.max_text_bytes)
        {
            let what = format!("text {i} is {} bytes", t.len());
            return Err(over(what, self.max_text_bytes, "max_text_bytes"));
        }
        Ok(())
    }

    pub fn generation(&self, req: &GenerateRequest) -> Result<()> {
        let bytes = match &req.prompt {
            Prompt::Text(t) => t.len(),
            Prompt::Chat(m) => m.iter().map(|m| m.bytes() + MESSAGE_BYTES).sum(),
        };
        if bytes > self.max_prompt_bytes {
            let what = format!("the prompt is {bytes} bytes");
            return Err(over(what, self.max_prompt_bytes, "max_prompt_bytes"));
        }
        let stop = &req.options.stop;
        if stop.len() > self.max_stop {
            let what = format!("{} stop strings", stop.len());
            return Err(over(what, self.max_stop, "max_stop"));
        }
        if let Some(s) = stop.iter().find(|s| s.len() > self.max_stop_bytes) {
            let what = format!("a stop string is {} bytes", s.len());
            return Err(over(what, self.max_stop_bytes, "max_stop_bytes"));
        }
        Ok(())
    }

    pub fn tensors(&self, inputs: &Tensors) -> Result<()> {
        let bytes: usize = inputs.values().map(|t| t.data.len()).sum();
        if bytes > self.max_tensor_bytes {
            let what = format!("the input tensors are {bytes} bytes");
            return Err(over(what, self.max_tensor_bytes, "max_tensor_bytes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::job::GenOptions;

    #[test]
    fn each_limit_names_its_key() {
        let l = Limits {
            max_texts: 2,
            max_text_bytes: 4,
            max_prompt_bytes: 8,
            max_stop: 1,
            max_stop_bytes: 2,
            max_tensor_bytes: 16,
        };
        let texts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(l.texts(&texts(&["a", "bcde"])).is_ok());
        let msg = |r: Result<()>| r.unwrap_err().to_string();
        assert!(msg(l.texts(&texts(&["a", "b", "c"]))).contains("limits.max_texts"));
        assert!(msg(l.texts(&texts(&["abcde"]))).contains("limits.max_text_bytes"));
        let gen = |prompt: Prompt, stop: &[&str]| {
            let options = GenOptions {
                stop: texts(stop),
                ..Default::default()
            };
            GenerateRequest::new(prompt, options)
        };
        assert!(l
            .generation(&gen(Prompt::Text("12345678".into()), &["ab"]))
            .is_ok());
        let chat = Prompt::Chat(vec![crate::chat::Message::new("user", "hello")]);
        assert!(msg(l.generation(&gen(chat, &[]))).contains("limits.max_prompt_bytes"));
        let l = Limits {
            max_prompt_bytes: 1000,
            ..l
        };
        let empty = Prompt::Chat(vec![crate::chat::Message::default(); 40]);
        assert!(
            msg(l.generation(&gen(empty, &[]))).contains("limits.max_prompt_bytes"),
            "empty messages count"
        );
        assert!(
            msg(l.generation(&gen(Prompt::Text("x".into()), &["a", "b"])))
                .contains("limits.max_stop")
        );
        assert!(msg(l.generation(&gen(Prompt::Text("x".into()), &["abc"])))
            .contains("limits.max_stop_bytes"));
        let t = |n: usize| {
            crate::tensor::Tensor::from_wire("x", ("uint8".into(), vec![n as u64], vec![0; n]))
                .unwrap()
        };
        let mut inputs = Tensors::new();
        inputs.insert("a".into(), t(10));
        assert!(l.tensors(&inputs).is_ok());
        inputs.insert("b".into(), t(10));
        assert!(msg(l.tensors(&inputs)).contains("limits.max_tensor_bytes"));
    }
}
