//! Structured output: what a request constrains its text to (a leaf: the options parse it, the
//! generation kind compiles it into token masks). The same option names on every transport:
//! `response_format` (OpenAI's object), `regex` and `grammar`.

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// `{"type": "json_schema", "json_schema": {"schema": {...}}}`: JSON valid under the schema.
    JsonSchema(Value),
    /// `{"type": "json_object"}`: any JSON object.
    JsonObject,
    /// The whole text matches this regular expression.
    Regex(String),
    /// A grammar in llguidance's Lark dialect.
    Grammar(String),
}

impl Constraint {
    /// OpenAI's `response_format`: `None` for `{"type": "text"}` (no constraint).
    pub fn from_response_format(v: &Value) -> Result<Option<Constraint>, String> {
        match v.get("type").and_then(Value::as_str) {
            Some("text") => Ok(None),
            Some("json_object") => Ok(Some(Constraint::JsonObject)),
            Some("json_schema") => {
                let schema = v
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .ok_or("response_format json_schema needs json_schema.schema")?;
                if !schema.is_object() && !schema.is_boolean() {
                    return Err("json_schema.schema must be a JSON schema (an object)".into());
                }
                Ok(Some(Constraint::JsonSchema(schema.clone())))
            }
            _ => Err(
                "response_format.type must be \"text\", \"json_object\" or \"json_schema\"".into(),
            ),
        }
    }

    /// The JSON schema it stands for, if it is one.
    pub fn schema(&self) -> Option<Value> {
        match self {
            Constraint::JsonSchema(s) => Some(s.clone()),
            Constraint::JsonObject => Some(json!({"type": "object"})),
            _ => None,
        }
    }
}

/// A constraint compiled for one sequence: llguidance's matcher, advanced token by token.
pub struct Constrained(llguidance::Matcher);

impl Constrained {
    pub fn new(m: llguidance::Matcher) -> Constrained {
        Constrained(m)
    }

    /// Sets the logits of every token the constraint does not allow next to -inf (logits past
    /// the vocabulary included). Costs one mask of this sequence's, nothing for the others.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let allowed = self.0.compute_mask_or_eos().map_err(|e| e.to_string())?;
        for (id, l) in logits.iter_mut().enumerate() {
            if id >= allowed.len() || !allowed.is_allowed(id as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    pub fn consume(&mut self, token: u32) -> Result<(), String> {
        self.0.consume_token(token).map_err(|e| e.to_string())
    }

    /// The constraint is complete: nothing more may follow.
    pub fn done(&self) -> bool {
        self.0.is_stopped()
    }
}

/// Each request compiles its own; a copy of one in flight is a deep copy.
impl Clone for Constrained {
    fn clone(&self) -> Self {
        Constrained(self.0.deep_clone())
    }
}

impl std::fmt::Debug for Constrained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Constrained")
    }
}

/// Two compiled constraints are never taken for the same: compare what they were made from.
impl PartialEq for Constrained {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_formats() {
        assert_eq!(
            Constraint::from_response_format(&json!({"type": "text"})),
            Ok(None)
        );
        assert_eq!(
            Constraint::from_response_format(&json!({"type": "json_object"})),
            Ok(Some(Constraint::JsonObject))
        );
        let s = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        assert_eq!(
            Constraint::from_response_format(
                &json!({"type": "json_schema", "json_schema": {"name": "x", "schema": s}})
            ),
            Ok(Some(Constraint::JsonSchema(s)))
        );
        for bad in [
            json!({"type": "json_schema"}),
            json!({"type": "xml"}),
            json!({"type": "json_schema", "json_schema": {"schema": 3}}),
        ] {
            assert!(Constraint::from_response_format(&bad).is_err(), "{bad}");
        }
    }
}
