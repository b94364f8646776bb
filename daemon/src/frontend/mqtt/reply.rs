//! Where answers may go. A reply topic comes from a client (the MQTT 5 Response Topic or the
//! payload's `reply_to`), so it is checked before anything is published to it: one topic the
//! broker refuses would cut inferd's connection, and its unacknowledged publish would be resent
//! on every reconnect.

use bytes::Bytes;
use rumqttc::QoS;

use super::link::Out;
use super::wire::WireError;

/// What a reply topic must be, from the `[mqtt]` config.
#[derive(Debug, Clone)]
pub struct ReplyPolicy {
    /// inferd's own topic tree (`prefix`): its request, cancel and status topics and every
    /// other node's. Never a reply topic.
    own: String,
    /// `mqtt.max_reply_topic`, in bytes.
    max_len: usize,
    /// `mqtt.reply_prefix`: when set, replies go only under it.
    allowed: Option<String>,
}

impl ReplyPolicy {
    pub fn new(own_prefix: &str, max_len: usize, allowed: Option<&str>) -> ReplyPolicy {
        ReplyPolicy {
            own: own_prefix.to_owned(),
            max_len,
            allowed: allowed.map(|a| a.trim_end_matches('/').to_owned()),
        }
    }

    /// `Ok` when inferd may publish a reply to `topic`; else why not (`invalid_input`).
    pub fn check(&self, topic: &str) -> Result<(), WireError> {
        let bad = |why: String| {
            Err(WireError::new(
                "invalid_input",
                format!("reply topic {:?}: {why}", shorten(topic)),
            ))
        };
        if let Err(why) = super::topics::encodable(topic) {
            return bad(why.to_string());
        }
        if topic.len() > self.max_len {
            return bad(format!(
                "{} bytes; the limit is {} (mqtt.max_reply_topic)",
                topic.len(),
                self.max_len
            ));
        }
        if topic.starts_with('$') {
            return bad("topics starting with '$' are the broker's".into());
        }
        if under(topic, &self.own) {
            return bad(format!(
                "it is under inferd's own prefix {:?} (requests, status, other nodes)",
                self.own
            ));
        }
        if let Some(allowed) = &self.allowed {
            if !under(topic, allowed) {
                return bad(format!(
                    "replies go only under {allowed:?} (mqtt.reply_prefix)"
                ));
            }
        }
        Ok(())
    }
}

/// `topic` is `prefix` or below it.
fn under(topic: &str, prefix: &str) -> bool {
    topic
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A topic for a log line: the first 64 characters.
fn shorten(topic: &str) -> String {
    match topic.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &topic[..i]),
        None => topic.to_owned(),
    }
}

/// Where a request's answers go.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyTo {
    pub topic: String,
    pub correlation: Option<Bytes>,
    pub qos: QoS,
}

impl ReplyTo {
    pub fn out(&self, payload: Vec<u8>, status: &'static str) -> Out {
        Out {
            topic: self.topic.clone(),
            payload,
            qos: self.qos,
            retain: false,
            correlation: self.correlation.clone(),
            status: Some(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_topics_inferd_must_not_publish_to() {
        let p = ReplyPolicy::new("inferd", 256, None);
        for ok in [
            "my/replies",
            "replies",
            "inferd-clients/x",
            "a/inferd/b",
            "é/ü",
        ] {
            assert!(p.check(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("a/+/b", "wildcard"),
            ("a/#", "wildcard"),
            ("a\u{0}b", "control character"),
            ("a\nb", "control character"),
            ("a\u{85}b", "control character"),
            ("r/\u{ffff}", "noncharacter"),
            ("r/\u{fdd0}", "noncharacter"),
            ("r/\u{10fffe}", "noncharacter"),
            ("$SYS/x", "'$'"),
            ("$share/g/t", "'$'"),
            ("inferd", "own prefix"),
            ("inferd/n1/req/m/embed", "own prefix"),
            ("inferd/n1/status", "own prefix"),
            ("inferd/other-node/cancel", "own prefix"),
            (&"x".repeat(257), "mqtt.max_reply_topic"),
        ] {
            let e = p.check(bad).unwrap_err();
            assert_eq!(e.code, "invalid_input");
            assert!(e.message.contains(why), "{bad:?}: {}", e.message);
        }
        assert!(p.check(&"x".repeat(256)).is_ok());
    }

    #[test]
    fn a_reply_namespace_narrows_them() {
        let p = ReplyPolicy::new("inferd", 256, Some("clients/"));
        assert!(p.check("clients/a/replies").is_ok());
        assert!(p.check("clients").is_ok());
        let e = p.check("clientsx/a").unwrap_err();
        assert!(e.message.contains("mqtt.reply_prefix"), "{}", e.message);
        assert!(p.check("other/a").is_err());
    }

    #[test]
    fn long_topics_are_shortened_in_messages() {
        let p = ReplyPolicy::new("inferd", 10, None);
        let e = p.check(&"é".repeat(100)).unwrap_err();
        assert!(e.message.len() < 200, "{}", e.message);
    }
}
