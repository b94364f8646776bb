//! The topic tree: `{prefix}/{node}/req/{model}/{op}`, `{prefix}/{node}/cancel`, the shared pool
//! `{prefix}/pool/req/{model}/{op}`, and the topics inferd publishes on.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Embed,
    Infer,
    Classify,
    Generate,
    Chat,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "embed" => Op::Embed,
            "infer" => Op::Infer,
            "classify" => Op::Classify,
            "generate" => Op::Generate,
            "chat" => Op::Chat,
            _ => return None,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Request {
        model: String,
        op: Option<Op>,
        op_name: String,
    },
    Cancel,
}

#[derive(Debug, Clone)]
pub struct Topics {
    pub prefix: String,
    pub node: String,
}

impl Topics {
    /// What the daemon subscribes to (the pool through a shared subscription, so each request
    /// goes to one daemon of the pool).
    pub fn subscriptions(&self) -> Vec<String> {
        let (p, n) = (&self.prefix, &self.node);
        vec![
            format!("{p}/{n}/req/+/+"),
            format!("{p}/{n}/cancel"),
            self.pool_subscription(),
        ]
    }

    pub fn pool_subscription(&self) -> String {
        format!("$share/{p}/{p}/pool/req/+/+", p = self.prefix)
    }

    pub fn status(&self) -> String {
        format!("{}/{}/status", self.prefix, self.node)
    }

    /// Plain `online`/`offline`, for Home Assistant (`homeassistant.rs`).
    pub fn availability(&self) -> String {
        format!("{}/{}/availability", self.prefix, self.node)
    }

    pub fn error(&self) -> String {
        format!("{}/{}/error", self.prefix, self.node)
    }

    pub fn route_errors(&self) -> String {
        format!("{}/{}/route-errors", self.prefix, self.node)
    }

    pub fn parse(&self, topic: &str) -> Option<Target> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let rest = match rest
            .strip_prefix(&self.node)
            .and_then(|r| r.strip_prefix('/'))
        {
            Some("cancel") => return Some(Target::Cancel),
            Some(r) => r,
            None => rest.strip_prefix("pool/")?,
        };
        let mut parts = rest.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("req"), Some(model), Some(op), None) if !model.is_empty() => {
                Some(Target::Request {
                    model: model.to_owned(),
                    op: Op::parse(op),
                    op_name: op.to_owned(),
                })
            }
            _ => None,
        }
    }
}

/// What any topic inferd publishes to must be for a broker to take it: a non-empty topic name
/// (no wildcards) of at most 65,535 bytes with no control characters and no noncharacters
/// (U+0000 is forbidden by the protocol, the rest by its advice; mosquitto disconnects a client
/// that sends any of them).
pub fn encodable(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.contains(['+', '#']) {
        return Err(TopicError::Wildcard);
    }
    if let Some(c) = topic.chars().find(|c| c.is_control()) {
        return Err(TopicError::Control(c));
    }
    if let Some(c) = topic.chars().find(|&c| noncharacter(c)) {
        return Err(TopicError::Noncharacter(c));
    }
    if topic.len() > u16::MAX as usize {
        return Err(TopicError::TooLong(topic.len()));
    }
    Ok(())
}

/// Why a broker would refuse a topic name (see [`encodable`]).
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("it is empty")]
    Empty,
    #[error("it has a wildcard ('+' or '#')")]
    Wildcard,
    #[error("it has the control character {0:?}")]
    Control(char),
    #[error("it has the noncharacter {0:?}")]
    Noncharacter(char),
    #[error("{0} bytes; MQTT allows 65535")]
    TooLong(usize),
}

/// U+FDD0..U+FDEF and the last two code points of every plane.
fn noncharacter(c: char) -> bool {
    let c = c as u32;
    (0xFDD0..=0xFDEF).contains(&c) || c & 0xFFFE == 0xFFFE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse() {
        let t = Topics {
            prefix: "inferd".into(),
            node: "n1".into(),
        };
        let req = |model: &str, op: Option<Op>, name: &str| {
            Some(Target::Request {
                model: model.into(),
                op,
                op_name: name.into(),
            })
        };
        assert_eq!(
            t.parse("inferd/n1/req/minilm/embed"),
            req("minilm", Some(Op::Embed), "embed")
        );
        assert_eq!(
            t.parse("inferd/pool/req/llm/chat"),
            req("llm", Some(Op::Chat), "chat")
        );
        assert_eq!(t.parse("inferd/n1/req/m/sing"), req("m", None, "sing"));
        assert_eq!(t.parse("inferd/n1/cancel"), Some(Target::Cancel));
        for other in [
            "inferd/n2/req/m/embed",
            "inferd/n1/req/m",
            "x/n1/cancel",
            "inferd/n1/req//embed",
        ] {
            assert_eq!(t.parse(other), None, "{other}");
        }
        assert!(t
            .subscriptions()
            .contains(&"$share/inferd/inferd/pool/req/+/+".to_owned()));
    }
}
