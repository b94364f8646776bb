//! Splitting generated text into content and tool calls, in the format of the model's family
//! (`chat::format`).

use super::text::longest_suffix_prefix;
use crate::chat::format::Format;
use crate::work::job::Channel;

/// Splits a generation's content into text and calls. Text before a call streams as it comes;
/// from the call's opening marker on, text is held and, at the end, parsed into calls (sent on
/// the `tool_call` channel, one JSON object each) or, if it is none, sent as text after all.
pub struct CallSplitter {
    format: Format,
    /// Held: the answer may be a call (formats without a marker hold everything).
    held: String,
    in_call: bool,
}

impl CallSplitter {
    pub fn new(format: Format) -> Self {
        CallSplitter {
            in_call: format.open.is_empty(),
            format,
            held: String::new(),
        }
    }

    /// The content to send now.
    pub fn push(&mut self, text: &str) -> String {
        self.held.push_str(text);
        if self.in_call {
            return String::new();
        }
        let open = self.format.open.trim();
        if let Some(at) = self.held.find(open) {
            self.in_call = true;
            let before = self.held[..at].to_owned();
            self.held.drain(..at);
            return before;
        }
        // Keep what could be the start of the marker.
        let cut = self.held.len() - longest_suffix_prefix(&self.held, open);
        self.held.drain(..cut).collect()
    }

    /// At the end: the calls, or the held text as content.
    pub fn flush(&mut self) -> Vec<(String, Channel)> {
        let held = std::mem::take(&mut self.held);
        match self.format.parse(&held) {
            Some((content, calls)) if !calls.is_empty() => {
                let mut out: Vec<(String, Channel)> = Vec::new();
                if !content.is_empty() {
                    out.push((content, Channel::Content));
                }
                out.extend(
                    calls
                        .into_iter()
                        .map(|c| (c.to_string(), Channel::ToolCall)),
                );
                out
            }
            _ if held.is_empty() => Vec::new(),
            _ => vec![(held, Channel::Content)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::format::{HERMES, LLAMA3, MISTRAL};
    use serde_json::{json, Value};

    #[test]
    fn calls_split_from_content_in_each_format() {
        let mut s = CallSplitter::new(HERMES);
        let mut sent = String::new();
        for piece in [
            "Let me check. <tool",
            "_call>\n{\"name\": \"get_weather\", ",
            "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
        ] {
            sent.push_str(&s.push(piece));
        }
        assert_eq!(sent, "Let me check. ");
        let out = s.flush();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].1, Channel::ToolCall);
        let call: Value = serde_json::from_str(&out[0].0).unwrap();
        assert_eq!(
            call,
            json!({"name": "get_weather", "arguments": {"city": "Paris"}})
        );

        let mut s = CallSplitter::new(LLAMA3);
        assert_eq!(
            s.push("{\"name\": \"f\", \"parameters\": {\"city\": \"Oslo\"}}"),
            ""
        );
        assert_eq!(s.flush()[0].1, Channel::ToolCall);
        let mut s = CallSplitter::new(LLAMA3);
        s.push("Just text.");
        assert_eq!(s.flush(), [("Just text.".to_owned(), Channel::Content)]);
        let mut s = CallSplitter::new(MISTRAL);
        s.push("[{\"name\": \"f\", \"arguments\": {\"city\": \"Rome\"}}]");
        assert_eq!(s.flush()[0].1, Channel::ToolCall);
        // Text that only looks like a marker's start is sent once it turns out not to be one.
        let mut s = CallSplitter::new(HERMES);
        assert_eq!(s.push("a <to"), "a ");
        assert_eq!(s.push("day"), "<today");
        assert!(s.flush().is_empty());
    }
}
