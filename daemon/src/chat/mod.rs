//! Chat messages and tools, as every transport takes them and chat templates render them (a
//! leaf). The shapes follow OpenAI's API, the de facto one: an assistant message may carry tool
//! calls, a `tool` message answers one, and a tool is a function with a JSON schema for its
//! arguments.

pub mod format;

use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    pub role: String,
    pub content: String,
    /// An assistant's calls.
    pub tool_calls: Vec<ToolCall>,
    /// A `tool` message: the call it answers, and the tool's name when given.
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            ..Default::default()
        }
    }

    /// What a chat template sees: `role`, `content`, and `tool_calls` in transformers' form
    /// (`{"type": "function", "function": {"name", "arguments": {...}}}`, arguments an object).
    pub fn to_template(&self) -> Value {
        let mut m = json!({"role": self.role, "content": self.content});
        if !self.tool_calls.is_empty() {
            m["tool_calls"] = self.tool_calls.iter().map(ToolCall::to_template).collect();
        }
        if let Some(id) = &self.tool_call_id {
            m["tool_call_id"] = json!(id);
        }
        if let Some(n) = &self.name {
            m["name"] = json!(n);
        }
        m
    }

    /// Bytes it adds to a prompt, for `limits.max_prompt_bytes`.
    pub fn bytes(&self) -> usize {
        self.role.len()
            + self.content.len()
            + self
                .tool_calls
                .iter()
                .map(|c| c.name.len() + c.arguments.to_string().len())
                .sum::<usize>()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// A JSON object.
    pub arguments: Value,
}

impl ToolCall {
    fn to_template(&self) -> Value {
        json!({"id": self.id, "type": "function",
               "function": {"name": self.name, "arguments": self.arguments}})
    }

    /// OpenAI's form: arguments as JSON text.
    pub fn to_openai(&self) -> Value {
        json!({"id": self.id, "type": "function",
               "function": {"name": self.name, "arguments": self.arguments.to_string()}})
    }
}

/// What the model may do with the tools it is given.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ToolChoice {
    /// Answer, or call tools: its choice.
    #[default]
    Auto,
    /// Answer; the tools are still shown to it.
    None,
    /// Call one of the tools.
    Required,
    /// Call this one.
    Function(String),
}

/// A function the model may call: OpenAI's `{"type": "function", "function": {...}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    /// The whole definition, as templates show it.
    pub definition: Value,
    /// The JSON schema of its arguments.
    pub parameters: Value,
}

/// Messages in OpenAI's JSON form: `content` a string, a list of text parts, or null (an
/// assistant turn that only calls tools); `tool_calls` with arguments as JSON text (or an
/// object); `tool_call_id` and `name` on tool results.
pub fn messages_from_json(v: &Value) -> Result<Vec<Message>, String> {
    let list = v.as_array().ok_or("messages must be a list")?;
    list.iter()
        .enumerate()
        .map(|(i, m)| message_from_json(m).map_err(|e| format!("messages[{i}]: {e}")))
        .collect()
}

fn message_from_json(m: &Value) -> Result<Message, String> {
    let role = m["role"]
        .as_str()
        .ok_or("role must be a string")?
        .to_owned();
    let content = match &m["content"] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match (p["type"].as_str(), p["text"].as_str()) {
                (Some("text"), Some(t)) => Ok(t),
                (kind, _) => Err(format!(
                    "content of type {} is not supported; send text",
                    kind.unwrap_or("?")
                )),
            })
            .collect::<Result<String, _>>()?,
        _ => return Err("content must be a string or a list of text parts".into()),
    };
    let tool_calls = match &m["tool_calls"] {
        Value::Null => Vec::new(),
        Value::Array(calls) => calls.iter().map(call_from_json).collect::<Result<_, _>>()?,
        _ => return Err("tool_calls must be a list".into()),
    };
    let text = |k: &str| m[k].as_str().map(str::to_owned);
    Ok(Message {
        role,
        content,
        tool_calls,
        tool_call_id: text("tool_call_id"),
        name: text("name"),
    })
}

fn call_from_json(c: &Value) -> Result<ToolCall, String> {
    let f = &c["function"];
    let name = f["name"]
        .as_str()
        .ok_or("a tool call needs function.name")?;
    let arguments = match &f["arguments"] {
        Value::String(s) => serde_json::from_str(s)
            .map_err(|e| format!("tool call {name:?}: arguments are not JSON: {e}"))?,
        Value::Object(o) => Value::Object(o.clone()),
        Value::Null => Value::Object(Map::new()),
        _ => return Err(format!("tool call {name:?}: arguments must be JSON text")),
    };
    Ok(ToolCall {
        id: c["id"].as_str().unwrap_or_default().to_owned(),
        name: name.to_owned(),
        arguments,
    })
}

/// OpenAI's `tools`: only functions, each with a name; a missing `parameters` takes any object.
pub fn tools_from_json(v: &Value) -> Result<Vec<Tool>, String> {
    let list = v.as_array().ok_or("tools must be a list")?;
    let mut tools: Vec<Tool> = Vec::new();
    for t in list {
        if t["type"] != "function" {
            return Err("only tools of type \"function\" are supported".into());
        }
        let f = &t["function"];
        let name = f["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or("a tool needs function.name")?;
        if tools.iter().any(|x| x.name == name) {
            return Err(format!("two tools are named {name:?}"));
        }
        let parameters = match &f["parameters"] {
            Value::Null => json!({"type": "object"}),
            p => p.clone(),
        };
        tools.push(Tool {
            name: name.to_owned(),
            definition: t.clone(),
            parameters,
        });
    }
    Ok(tools)
}

/// OpenAI's `tool_choice`: `"auto"`, `"none"`, `"required"` or
/// `{"type": "function", "function": {"name": ...}}`.
pub fn tool_choice_from_json(v: &Value) -> Result<ToolChoice, String> {
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(format!(
                "tool_choice must be \"auto\", \"none\", \"required\" or a function, got {other:?}"
            )),
        },
        Value::Object(_) => v["function"]["name"]
            .as_str()
            .map(|n| ToolChoice::Function(n.to_owned()))
            .ok_or_else(|| "tool_choice needs function.name".into()),
        _ => Err("tool_choice must be a string or an object".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_messages_with_tool_calls_and_results() {
        let m = messages_from_json(&json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Paris?"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
        ]))
        .unwrap();
        assert_eq!(m[0].content, "Weather in Paris?");
        assert_eq!(m[1].tool_calls[0].arguments, json!({"city": "Paris"}));
        assert_eq!(
            m[1].to_template()["tool_calls"][0]["function"]["arguments"]["city"],
            "Paris"
        );
        assert_eq!(m[2].tool_call_id.as_deref(), Some("call_1"));
        for (bad, needle) in [
            (json!([{"content": "x"}]), "messages[0]: role"),
            (
                json!([{"role": "user", "content": [{"type": "image_url"}]}]),
                "image_url",
            ),
            (
                json!([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{"}}]}]),
                "not JSON",
            ),
        ] {
            let e = messages_from_json(&bad).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn tools_and_choices() {
        let t = tools_from_json(&json!([
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "g"}},
        ]))
        .unwrap();
        assert_eq!(t[1].parameters, json!({"type": "object"}));
        assert!(tools_from_json(&json!([{"type": "retrieval"}])).is_err());
        assert!(tools_from_json(&json!([
            {"type": "function", "function": {"name": "f"}},
            {"type": "function", "function": {"name": "f"}}
        ]))
        .is_err());
        assert_eq!(
            tool_choice_from_json(&json!({"type": "function", "function": {"name": "f"}})),
            Ok(ToolChoice::Function("f".into()))
        );
        assert_eq!(
            tool_choice_from_json(&json!("required")),
            Ok(ToolChoice::Required)
        );
        assert!(tool_choice_from_json(&json!("sometimes")).is_err());
    }
}
