//! The MQTT handler path without a broker or models, for the `mqtt_handler` fuzz target:
//! messages go through the intake (size, parse, reply address and its policy, priority grants,
//! duplicates, requests in flight), what it runs gets a made-up answer, and every message inferd
//! would publish goes through the encoder against a small broker limit, as a fake link.
//! Each property a hostile client must not break is an assertion.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::QoS;

use super::intake::{Decision, Intake, Run};
use super::link::{Encoded, Message, Out, PublishError};
use super::reply::ReplyPolicy;
use super::topics::Topics;
use super::wire;
use crate::config::mqtt::MqttConfig;

/// The fake broker's Maximum Packet Size: small, so too-large answers happen.
const BROKER_MAX: usize = 4096;
const MAX_IN_FLIGHT: usize = 4;

fn config() -> MqttConfig {
    let mut cfg: MqttConfig = toml::from_str(
        "url = \"mqtt://fuzz\"\nnode = \"n1\"\nmax_payload = 2048\nmax_reply_topic = 64\n\
         [[grant]]\ntopics = \"inferd/n1/req/chat/+\"\npriorities = [\"interactive\"]\n",
    )
    .expect("fuzz config");
    cfg.max_in_flight = MAX_IN_FLIGHT;
    cfg.dedupe_bytes = 8192;
    cfg
}

/// Reads `[len][bytes]` pieces off the front of the input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }

    fn piece(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.byte()?).min(self.0.len());
        let (p, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(p)
    }
}

/// A topic chosen by the input: one of inferd's, or the input's own bytes.
fn topic(selector: u8, raw: &[u8]) -> String {
    let own = String::from_utf8_lossy(raw);
    match selector % 6 {
        0 => format!("inferd/n1/req/{own}/embed"),
        1 => "inferd/n1/req/m/generate".into(),
        2 => "inferd/n1/req/chat/chat".into(),
        3 => "inferd/n1/cancel".into(),
        4 => "inferd/pool/req/m/classify".into(),
        _ => own.into_owned(),
    }
}

/// Whatever inferd would publish must be a reply to an allowed topic or its own error topic,
/// and must encode within the broker's limit or be refused before it is sent.
fn publish(policy: &ReplyPolicy, error_topic: &str, out: Out, sent: &mut usize) {
    assert!(
        out.topic == error_topic || policy.check(&out.topic).is_ok(),
        "published to a topic the policy refuses: {:?}",
        out.topic
    );
    match Encoded::new(out, true, BROKER_MAX) {
        Ok(e) => {
            assert!(e.size() <= BROKER_MAX);
            *sent += 1;
        }
        Err(PublishError::TooLarge { .. }) => {}
        Err(e) => panic!("an answer that cannot be encoded got this far: {e}"),
    }
}

/// Runs the input through the handler path; panics when a property breaks.
pub fn handler_path(data: &[u8]) {
    let cfg = config();
    let topics = Topics {
        prefix: cfg.prefix.clone(),
        node: cfg.node_name(),
    };
    let policy = ReplyPolicy::new(&topics.prefix, cfg.max_reply_topic, None);
    let error_topic = topics.error();
    let mut intake = Intake::new(&cfg, topics);
    let mut running: Vec<Box<Run>> = Vec::new();
    let mut sent = 0usize;
    let now = Instant::now();
    let mut r = Reader(data);
    while let Some(flags) = r.byte() {
        let (Some(t), Some(rt), Some(corr), Some(payload)) =
            (r.piece(), r.piece(), r.piece(), r.piece())
        else {
            break;
        };
        let m = Message {
            topic: topic(flags, t),
            payload: Bytes::copy_from_slice(payload),
            qos: if flags & 0x80 != 0 {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            },
            dup: flags & 0x40 != 0,
            response_topic: (flags & 0x20 != 0).then(|| String::from_utf8_lossy(rt).into_owned()),
            correlation: (flags & 0x10 != 0).then(|| Bytes::copy_from_slice(corr)),
            expiry: (flags & 0x08 != 0).then(|| Duration::from_secs(u64::from(flags & 7))),
        };
        match intake.take(&m, now) {
            Decision::NotOurs | Decision::Nothing => {}
            Decision::Reject(out) => publish(&policy, &error_topic, out, &mut sent),
            Decision::Replay(outs) => outs
                .iter()
                .for_each(|o| publish(&policy, &error_topic, o.clone(), &mut sent)),
            Decision::Run(run) => {
                assert!(
                    policy.check(&run.reply.topic).is_ok(),
                    "runs only answerable requests"
                );
                running.push(run);
            }
        }
        assert!(
            intake.in_flight() <= MAX_IN_FLIGHT,
            "in flight past mqtt.max_in_flight"
        );
        assert_eq!(intake.in_flight(), running.len());
        // Some runs end now, with an answer whose size the input picks.
        if flags & 0x04 != 0 {
            if let Some(run) = running.pop() {
                let text = "x".repeat(usize::from(flags) * 24);
                let out = run.reply.out(
                    wire::ok(&run.req.id, serde_json::json!({ "text": text }), None),
                    "ok",
                );
                let answer: Arc<[Out]> = Arc::from(vec![out]);
                let owed = intake.finish(&run, answer.clone());
                for _ in 0..=owed {
                    answer
                        .iter()
                        .for_each(|o| publish(&policy, &error_topic, o.clone(), &mut sent));
                }
            }
        }
    }
    std::hint::black_box(sent);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One message in the target's input format.
    fn msg(flags: u8, topic: &str, reply: &str, payload: &str) -> Vec<u8> {
        let mut v = vec![flags];
        for p in [topic.as_bytes(), reply.as_bytes(), b"c", payload.as_bytes()] {
            v.push(p.len() as u8);
            v.extend_from_slice(p);
        }
        v
    }

    #[test]
    fn the_fuzz_path_runs_and_answers() {
        let mut input = Vec::new();
        // Requests with good and hostile reply topics, duplicates, and more than may run.
        for (i, reply) in ["ok/r", "inferd/n1/status", "$SYS/x", "a/+", "ok/r"]
            .iter()
            .enumerate()
        {
            let p = format!("{{\"id\":\"{i}\",\"input\":{{\"texts\":[\"x\"]}}}}");
            input.extend(msg(0xA0, "m", reply, &p));
        }
        input.extend(msg(0x24 | 0x80, "m", "ok/r", "{\"id\":\"9\"}"));
        handler_path(&input);
    }
}
