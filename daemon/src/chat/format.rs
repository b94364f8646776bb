//! How a model family writes tool calls (told from its chat template): the grammar that keeps
//! a call valid (its name one of the tools, its arguments fitting that tool's schema), the
//! system text for templates that do not show tools, and parsing calls out of finished text.

use serde_json::{json, Value};

use super::{Message, Tool, ToolChoice};
use crate::constraint::Constraint;

/// How a family writes a call: `open`, the call as JSON (`{"name", <args_key>}`, in a list
/// when `list`), `close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub open: &'static str,
    close: &'static str,
    args_key: &'static str,
    list: bool,
}

/// Qwen2.5, Qwen3, Hermes; and the format shown to models whose template takes no tools.
pub const HERMES: Format = Format {
    open: "<tool_call>\n",
    close: "\n</tool_call>",
    args_key: "arguments",
    list: false,
};
/// Mistral (Nemo, Small): `[TOOL_CALLS]` is a control token, dropped from the text, so the
/// call list is what the text holds. Phi-4-mini's `<|tool_call|>[...]<|/tool_call|>` reads
/// the same once its special tokens are dropped.
pub const MISTRAL: Format = Format {
    open: "",
    close: "",
    args_key: "arguments",
    list: true,
};
/// Llama 3.1/3.2: the whole answer is the call.
pub const LLAMA3: Format = Format {
    open: "",
    close: "",
    args_key: "parameters",
    list: false,
};

impl Format {
    /// The format a chat template asks for.
    pub fn of(template: &str) -> Format {
        if template.contains("[TOOL_CALLS]") || template.contains("<|tool_call|>") {
            MISTRAL
        } else if template.contains("<tool_call>") {
            HERMES
        } else if template.contains("ipython") || template.contains("\"parameters\"") {
            LLAMA3
        } else {
            HERMES
        }
    }

    /// A call's JSON schema: one of the tools by name, its arguments that tool's parameters.
    fn call_schema(&self, tools: &[&Tool]) -> Value {
        let one = |t: &Tool| {
            json!({
                "type": "object",
                "properties": {"name": {"const": t.name}, self.args_key: t.parameters},
                "required": ["name", self.args_key],
                "additionalProperties": false,
            })
        };
        match tools {
            [t] => one(t),
            many => json!({"anyOf": many.iter().map(|t| one(t)).collect::<Vec<_>>()}),
        }
    }

    /// What the text must be when the model must call (`required`, or a named function): one
    /// call, in the family's format.
    pub fn forced(&self, tools: &[Tool], choice: &ToolChoice) -> Option<Constraint> {
        let allowed: Vec<&Tool> = match choice {
            ToolChoice::Required => tools.iter().collect(),
            ToolChoice::Function(name) => tools.iter().filter(|t| &t.name == name).collect(),
            ToolChoice::Auto | ToolChoice::None => return None,
        };
        let call = format!("%json {}", self.call_schema(&allowed));
        let body = if self.list {
            format!("\"[\" {call} \"]\"")
        } else {
            call
        };
        Some(Constraint::Grammar(format!(
            "start: {} {body} {}",
            lark_string(self.open),
            lark_string(self.close)
        )))
    }

    /// For an `auto` choice: the text that starts a call, and what must follow it.
    pub fn trigger(&self, tools: &[Tool]) -> Option<(String, Constraint)> {
        let (start, rest) = self.open.split_once('\n')?;
        let all: Vec<&Tool> = tools.iter().collect();
        let grammar = format!(
            "start: {} %json {} {}",
            lark_string(&format!("\n{rest}")),
            self.call_schema(&all),
            lark_string(self.close)
        );
        Some((start.to_owned(), Constraint::Grammar(grammar)))
    }

    /// For templates that do not show tools: a system message that does, in this format.
    pub fn system_text(&self, tools: &[Tool]) -> String {
        let defs: Vec<String> = tools.iter().map(|t| t.definition.to_string()).collect();
        format!(
            "You may call one or more functions to assist with the user query.\n\n\
             You are provided with function signatures within <tools></tools> XML tags:\n\
             <tools>\n{}\n</tools>\n\n\
             For each function call, return a json object with function name and arguments \
             within <tool_call></tool_call> XML tags:\n<tool_call>\n\
             {{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>",
            defs.join("\n")
        )
    }

    /// `m` for a template that knows nothing of tools: an assistant's calls written into its
    /// content as the model would write them, a tool's result wrapped as Hermes wraps it.
    pub fn written(&self, m: &Message) -> Message {
        let mut out = Message::new(m.role.clone(), m.content.clone());
        for c in &m.tool_calls {
            let call = json!({"name": c.name, self.args_key: c.arguments});
            let call = if self.list { json!([call]) } else { call };
            if !out.content.is_empty() {
                out.content.push('\n');
            }
            out.content
                .push_str(&format!("{}{call}{}", self.open, self.close));
        }
        if m.role == "tool" {
            out.content = format!("<tool_response>\n{}\n</tool_response>", m.content);
        }
        out
    }

    /// The calls in a finished text, each as `{"name", "arguments"}`, and the content around
    /// them; `None` when the text holds no well-formed call.
    pub fn parse(&self, text: &str) -> Option<(String, Vec<Value>)> {
        let one = |v: &Value| -> Option<Value> {
            let name = v.get("name")?.as_str()?;
            let args = v.get(self.args_key).cloned().unwrap_or(json!({}));
            args.is_object()
                .then(|| json!({"name": name, "arguments": args}))
        };
        let (open, close) = (self.open.trim(), self.close.trim());
        if open.is_empty() {
            let v: Value = serde_json::from_str(text.trim()).ok()?;
            let calls = match (&v, self.list) {
                (Value::Array(a), true) => a.iter().map(one).collect::<Option<Vec<_>>>()?,
                (Value::Object(_), false) => vec![one(&v)?],
                _ => return None,
            };
            return Some((String::new(), calls));
        }
        let at = text.find(open)?;
        let mut calls = Vec::new();
        let mut rest = &text[at..];
        while let Some(body) = rest.strip_prefix(open) {
            let end = body.find(close).unwrap_or(body.len());
            calls.push(one(&serde_json::from_str(body[..end].trim()).ok()?)?);
            rest = body[(end + close.len()).min(body.len())..].trim_start();
        }
        Some((text[..at].trim_end().to_owned(), calls))
    }
}

/// A Lark string literal.
fn lark_string(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Vec<Tool> {
        super::super::tools_from_json(&json!([{"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}]))
        .unwrap()
    }

    #[test]
    fn formats_from_templates() {
        assert_eq!(Format::of("... <tool_call> ..."), HERMES);
        assert_eq!(Format::of("... [TOOL_CALLS] ..."), MISTRAL);
        assert_eq!(
            Format::of("<|tool|>{{ tools }}<|/tool|> <|tool_call|>"),
            MISTRAL
        );
        assert_eq!(
            Format::of("<|start_header_id|>ipython<|end_header_id|>"),
            LLAMA3
        );
        assert_eq!(Format::of("{{ messages }}"), HERMES);
    }

    #[test]
    fn calls_parse_in_each_format() {
        let (content, calls) = HERMES
            .parse("Let me check.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>")
            .unwrap();
        assert_eq!(content, "Let me check.");
        assert_eq!(calls, [json!({"name": "f", "arguments": {"a": 1}})]);
        let (_, calls) = LLAMA3
            .parse("{\"name\": \"f\", \"parameters\": {\"a\": 2}}")
            .unwrap();
        assert_eq!(calls, [json!({"name": "f", "arguments": {"a": 2}})]);
        let (_, calls) = MISTRAL
            .parse("[{\"name\": \"f\", \"arguments\": {}}, {\"name\": \"g\", \"arguments\": {}}]")
            .unwrap();
        assert_eq!(calls.len(), 2);
        assert!(LLAMA3.parse("plain text").is_none());
        assert!(HERMES
            .parse("<tool_call>\nnot json\n</tool_call>")
            .is_none());
    }

    #[test]
    fn calls_and_results_written_for_templates_without_tools() {
        let m = super::super::messages_from_json(&json!([
            {"role": "assistant", "content": "", "tool_calls": [{"id": "1", "type": "function",
             "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
            {"role": "tool", "tool_call_id": "1", "content": "42"}
        ]))
        .unwrap();
        let call = HERMES.written(&m[0]);
        assert_eq!(
            call.content,
            "<tool_call>\n{\"name\":\"f\",\"arguments\":{\"a\":1}}\n</tool_call>"
        );
        assert_eq!(
            HERMES.parse(&call.content).unwrap().1.len(),
            1,
            "it parses back"
        );
        assert_eq!(
            HERMES.written(&m[1]).content,
            "<tool_response>\n42\n</tool_response>"
        );
    }

    #[test]
    fn forced_calls_are_grammars_of_the_tools() {
        let tools = weather();
        let Some(Constraint::Grammar(g)) = HERMES.forced(&tools, &ToolChoice::Required) else {
            panic!("a grammar");
        };
        assert!(g.starts_with("start: \"<tool_call>\\n\" %json {"), "{g}");
        assert!(g.contains("\"const\":\"get_weather\""), "{g}");
        assert_eq!(HERMES.forced(&tools, &ToolChoice::Auto), None);
        let (start, _) = HERMES.trigger(&tools).unwrap();
        assert_eq!(start, "<tool_call>");
        assert!(LLAMA3.trigger(&tools).is_none());
    }
}
