//! Turning generated token ids into text a client can show at once: incremental decoding that
//! never splits a UTF-8 character, stop strings that are never half-shown, and the split of
//! `<think>…</think>` reasoning from the answer, with tags that may arrive in pieces.

use crate::work::job::{Channel, Reasoning};

/// Incremental decoding. `decode(ids)` must decode a token slice; text is released only when
/// the decoded suffix is complete (no trailing U+FFFD from a partial byte sequence).
#[derive(Debug, Default)]
pub struct Detokenizer {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl Detokenizer {
    pub fn push(&mut self, id: u32, decode: impl Fn(&[u32]) -> String) -> Option<String> {
        self.ids.push(id);
        let before = decode(&self.ids[self.prefix..self.read]);
        let now = decode(&self.ids[self.prefix..]);
        if now.len() > before.len()
            && !now.ends_with('\u{FFFD}')
            && now.is_char_boundary(before.len())
        {
            let delta = now[before.len()..].to_owned();
            self.prefix = self.read;
            self.read = self.ids.len();
            Some(delta)
        } else {
            None
        }
    }
}

/// Holds back text that could still turn into a stop string.
#[derive(Debug)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            pending: String::new(),
        }
    }

    /// Returns the text safe to emit, and whether a stop string was reached (its text and what
    /// follows are dropped).
    pub fn push(&mut self, delta: &str) -> (String, bool) {
        self.pending.push_str(delta);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            let out = self.pending[..at].to_owned();
            self.pending.clear();
            return (out, true);
        }
        let hold = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.pending, s))
            .max()
            .unwrap_or(0);
        let cut = self.pending.len() - hold;
        let out = self.pending[..cut].to_owned();
        self.pending.drain(..cut);
        (out, false)
    }

    /// What was held back when the generation ends for another reason.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `pat`.
/// How many bytes at the end of `text` could be the start of `pat` (a proper prefix of it).
pub(super) fn longest_suffix_prefix(text: &str, pat: &str) -> usize {
    (1..pat.len().min(text.len() + 1))
        .rev()
        .find(|&n| pat.is_char_boundary(n) && text.ends_with(&pat[..n]))
        .unwrap_or(0)
}

pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";

/// Splits reasoning from content. Starts inside reasoning when the prompt ended with `<think>`
/// (DeepSeek-R1 templates open it for the model).
#[derive(Debug)]
pub struct ReasoningSplitter {
    mode: Reasoning,
    thinking: bool,
    pending: String,
}

impl ReasoningSplitter {
    pub fn new(mode: Reasoning, starts_thinking: bool) -> Self {
        ReasoningSplitter {
            mode,
            thinking: starts_thinking,
            pending: String::new(),
        }
    }

    pub fn thinking(&self) -> bool {
        self.thinking
    }

    /// Routes text to channels; pieces for `hide`d reasoning are dropped.
    pub fn push(&mut self, text: &str) -> Vec<(String, Channel)> {
        if self.mode == Reasoning::Inline {
            self.track_inline(text);
            return if text.is_empty() {
                vec![]
            } else {
                vec![(text.to_owned(), Channel::Content)]
            };
        }
        self.pending.push_str(text);
        let mut out = Vec::new();
        loop {
            let tag = if self.thinking {
                THINK_CLOSE
            } else {
                THINK_OPEN
            };
            if let Some(at) = self.pending.find(tag) {
                let before: String = self.pending.drain(..at).collect();
                self.pending.drain(..tag.len());
                self.emit(&mut out, before);
                self.thinking = !self.thinking;
                continue;
            }
            let hold = longest_suffix_prefix(&self.pending, tag);
            let cut = self.pending.len() - hold;
            let ready: String = self.pending.drain(..cut).collect();
            self.emit(&mut out, ready);
            return out;
        }
    }

    pub fn flush(&mut self) -> Vec<(String, Channel)> {
        let rest = std::mem::take(&mut self.pending);
        let mut out = Vec::new();
        // Inline text has gone out already; `pending` only tracked tags in it.
        if self.mode != Reasoning::Inline {
            self.emit(&mut out, rest);
        }
        out
    }

    fn emit(&self, out: &mut Vec<(String, Channel)>, text: String) {
        if text.is_empty() {
            return;
        }
        match (self.thinking, self.mode) {
            (true, Reasoning::Hide) => {}
            (true, _) => out.push((text, Channel::Reasoning)),
            (false, _) => out.push((text, Channel::Content)),
        }
    }

    /// Inline mode passes everything through but still knows when reasoning ends (for budgets).
    fn track_inline(&mut self, text: &str) {
        self.pending.push_str(text);
        loop {
            let tag = if self.thinking {
                THINK_CLOSE
            } else {
                THINK_OPEN
            };
            let Some(at) = self.pending.find(tag) else {
                break;
            };
            self.pending.drain(..at + tag.len());
            self.thinking = !self.thinking;
        }
        let keep = longest_suffix_prefix(&self.pending, THINK_CLOSE)
            .max(longest_suffix_prefix(&self.pending, THINK_OPEN));
        let cut = self.pending.len() - keep;
        self.pending.drain(..cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds chunks through the splitter and joins each channel.
    fn split(mode: Reasoning, start: bool, chunks: &[&str]) -> (String, String) {
        let mut s = ReasoningSplitter::new(mode, start);
        let mut parts: Vec<(String, Channel)> = chunks.iter().flat_map(|c| s.push(c)).collect();
        parts.extend(s.flush());
        let join = |ch| {
            parts
                .iter()
                .filter(|p| p.1 == ch)
                .map(|p| p.0.as_str())
                .collect::<String>()
        };
        (join(Channel::Reasoning), join(Channel::Content))
    }

    #[test]
    fn tags_split_across_tokens() {
        let chunks = [
            "<th",
            "ink>",
            "Let me ",
            "think.</",
            "thi",
            "nk>",
            "\n\nThe answer",
            " is 4.",
        ];
        let (r, c) = split(Reasoning::Separate, false, &chunks);
        assert_eq!(r, "Let me think.");
        assert_eq!(c, "\n\nThe answer is 4.");
        let (r, c) = split(Reasoning::Hide, false, &chunks);
        assert_eq!((r.as_str(), c.as_str()), ("", "\n\nThe answer is 4."));
        let (r, c) = split(Reasoning::Inline, false, &chunks);
        assert_eq!(r, "");
        assert_eq!(c, chunks.concat());
    }

    #[test]
    fn reasoning_opened_by_the_template() {
        let (r, c) = split(Reasoning::Separate, true, &["Hmm", ".</think>", "Done"]);
        assert_eq!((r.as_str(), c.as_str()), ("Hmm.", "Done"));
    }

    #[test]
    fn a_lone_angle_bracket_is_not_held_forever() {
        let (r, c) = split(Reasoning::Separate, false, &["a < b", " and <t", "ag>"]);
        assert_eq!((r.as_str(), c.as_str()), ("", "a < b and <tag>"));
    }

    #[test]
    fn stop_strings_are_never_half_shown() {
        let mut m = StopMatcher::new(vec!["\nUser:".into()]);
        assert_eq!(m.push("Hello\nU"), ("Hello".into(), false));
        assert_eq!(m.push("se"), ("".into(), false));
        assert_eq!(m.push("r: more"), ("".into(), true));
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("ST"), ("".into(), false));
        assert_eq!(m.push("ay"), ("STay".into(), false));
        assert_eq!(m.push(" ST"), (" ".into(), false));
        assert_eq!(m.flush(), "ST");
    }

    #[test]
    fn detokenizer_waits_for_whole_characters() {
        // Byte-level tokens: "é" is two bytes split over two tokens.
        let table: Vec<Vec<u8>> = vec![b"caf".to_vec(), vec![0xC3], vec![0xA9], b"!".to_vec()];
        let decode = |ids: &[u32]| {
            let bytes: Vec<u8> = ids
                .iter()
                .flat_map(|&i| table[i as usize].clone())
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let mut d = Detokenizer::default();
        let out: Vec<Option<String>> = (0..4).map(|i| d.push(i, decode)).collect();
        assert_eq!(
            out,
            vec![Some("caf".into()), None, Some("é".into()), Some("!".into())]
        );
    }

    #[test]
    fn inline_text_ending_in_a_partial_tag_is_not_repeated() {
        // Found by the `text` fuzz target: flush sent the held "<" a second time.
        let (reasoning, content) = split(Reasoning::Inline, false, &["a <", "b <"]);
        assert_eq!((content.as_str(), reasoning.as_str()), ("a <b <", ""));
        let mut s = ReasoningSplitter::new(Reasoning::Inline, false);
        s.push("<think>x</think>y<think>z");
        assert!(s.thinking(), "three tags in one piece");
    }
}
