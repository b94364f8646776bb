//! Request and reply payloads, as `inferd_client::messages` types, and the one place engine
//! errors become MQTT error codes. Requests are read by hand rather than by serde so that each
//! mistake gets its own message and the error can still go to the request's reply address.

use inferd_client::messages::{self, Delta, Done, ErrorBody, Reply};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::work::job::{Channel, FinishReason, Usage};

/// A parsed request payload: `{"id", "input", "options", "reply_to", "stream"}`.
pub type Request = messages::Request;

/// Why a payload could not be taken, with whatever could be read of it, so the error can still
/// be answered to the right place.
#[derive(Debug)]
pub struct Rejected {
    pub id: Option<String>,
    pub reply_to: Option<String>,
    pub error: WireError,
}

/// An error as it goes on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    pub code: &'static str,
    pub message: String,
}

impl WireError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for WireError {
    fn from(e: Error) -> Self {
        WireError::new(e.kind(), e.to_string())
    }
}

pub fn parse(payload: &[u8]) -> Result<Request, Rejected> {
    let reject = |id, reply_to, message: String| Rejected {
        id,
        reply_to,
        error: WireError::new("invalid_input", message),
    };
    let v: Value = serde_json::from_slice(payload)
        .map_err(|e| reject(None, None, format!("the payload is not JSON: {e}")))?;
    let Value::Object(mut m) = v else {
        return Err(reject(
            None,
            None,
            "the payload must be a JSON object".into(),
        ));
    };
    // Whether inferd may publish there is the reply policy's to say (reply.rs).
    let reply_to = match m.remove("reply_to") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            let msg = format!("\"reply_to\" must be a topic name, got {other}");
            return Err(reject(None, None, msg));
        }
    };
    let id = match m.remove("id") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        None => return Err(reject(None, reply_to, "the request has no \"id\"".into())),
        Some(other) => {
            let msg = format!("\"id\" must be a non-empty string, got {other}");
            return Err(reject(None, reply_to, msg));
        }
    };
    let object = |m: &mut Map<String, Value>, key: &str| match m.remove(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o),
        Some(other) => Err(format!("\"{key}\" must be a JSON object, got {other}")),
    };
    let input =
        object(&mut m, "input").map_err(|e| reject(Some(id.clone()), reply_to.clone(), e))?;
    let options =
        object(&mut m, "options").map_err(|e| reject(Some(id.clone()), reply_to.clone(), e))?;
    let stream = match m.remove("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(other) => {
            let msg = format!("\"stream\" must be true or false, got {other}");
            return Err(reject(Some(id), reply_to, msg));
        }
    };
    if let Some(k) = m.keys().next() {
        let msg =
            format!("unknown field {k:?}; a request has id, input, options, reply_to, stream");
        return Err(reject(Some(id), reply_to, msg));
    }
    Ok(Request {
        id,
        input,
        options,
        reply_to,
        stream,
    })
}

pub fn usage(u: &Usage) -> messages::Usage {
    messages::Usage {
        prompt_tokens: u.prompt_tokens.into(),
        cached_prompt_tokens: Some(u.cached_prompt_tokens.into()),
        completion_tokens: Some(u.completion_tokens.into()),
        reasoning_tokens: Some(u.reasoning_tokens.into()),
        time_to_first_token_ms: Some(u.time_to_first_token_ms),
        tokens_per_second: Some(u.tokens_per_second),
    }
}

/// A payload as it goes on the wire.
pub fn bytes(v: &impl serde::Serialize) -> Vec<u8> {
    // These types have string keys and no failing Serialize impls.
    serde_json::to_vec(v).unwrap_or_default()
}

pub fn ok(id: &str, result: Value, usage: Option<messages::Usage>) -> Vec<u8> {
    bytes(&Reply::ok(id, result, usage))
}

fn body(e: &WireError) -> ErrorBody {
    ErrorBody {
        code: e.code.to_owned(),
        message: e.message.clone(),
    }
}

/// An error on `{prefix}/{node}/error`, for a request with no reply address: names its topic.
pub fn failed_on(id: Option<&str>, topic: &str, e: &WireError) -> Vec<u8> {
    let mut r: Reply = Reply::failed(id, body(e));
    r.topic = Some(topic.to_owned());
    bytes(&r)
}

pub fn failed(id: Option<&str>, e: &WireError) -> Vec<u8> {
    bytes(&Reply::<Value>::failed(id, body(e)))
}

pub fn delta(id: &str, seq: u64, text: &str, channel: Channel) -> Vec<u8> {
    bytes(&Delta {
        id: id.to_owned(),
        seq,
        delta: text.to_owned(),
        channel: channel.as_str().to_owned(),
    })
}

pub fn done(id: &str, seq: u64, reason: FinishReason, u: &Usage) -> Vec<u8> {
    bytes(&Done {
        id: id.to_owned(),
        seq,
        done: true,
        finish_reason: reason.as_str().to_owned(),
        usage: usage(u),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_or_say_why() {
        let r = parse(br#"{"id":"a1","input":{"texts":["hi"]},"reply_to":"me/r","stream":true}"#)
            .unwrap();
        assert_eq!(
            (r.id.as_str(), r.reply_to.as_deref(), r.stream),
            ("a1", Some("me/r"), true)
        );
        assert_eq!(r.input["texts"][0], "hi");
        for (payload, id, needle) in [
            (&b"{not json"[..], None, "not JSON"),
            (b"[1]", None, "JSON object"),
            (br#"{"input":{}}"#, None, "no \"id\""),
            (
                br#"{"id":"x","input":[1]}"#,
                Some("x"),
                "\"input\" must be a JSON object",
            ),
            (br#"{"id":"x","stream":"yes"}"#, Some("x"), "\"stream\""),
            (
                br#"{"id":"x","inptu":{}}"#,
                Some("x"),
                "unknown field \"inptu\"",
            ),
        ] {
            let e = parse(payload).unwrap_err();
            assert_eq!(e.id.as_deref(), id);
            assert_eq!(e.error.code, "invalid_input");
            assert!(e.error.message.contains(needle), "{}", e.error.message);
        }
        let e = parse(br#"{"reply_to":"r/x"}"#).unwrap_err();
        assert_eq!(
            e.reply_to.as_deref(),
            Some("r/x"),
            "errors still go to reply_to"
        );
    }

    #[test]
    fn error_codes() {
        let e: WireError = Error::ModelNotFound("m".into()).into();
        assert_eq!(e.code, "model_not_found");
        let v: Value = serde_json::from_slice(&failed(Some("7"), &e)).unwrap();
        assert_eq!(
            (v["id"].as_str(), v["ok"].as_bool()),
            (Some("7"), Some(false))
        );
        assert_eq!(v["error"]["code"], "model_not_found");
    }
}
