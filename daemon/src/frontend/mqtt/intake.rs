//! Decides what to do with each delivered message, before any work: size, parse, where the
//! answers go and whether inferd may publish there, the op, the priority claimed, duplicates,
//! and how many requests are in flight. It runs no model and publishes nothing itself (the
//! handler does both), so the fuzz target drives it with a fake link.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::QoS;
use tokio_util::sync::CancellationToken;

use super::dedupe::{Dedupe, Key, Seen};
use super::grants::Grants;
use super::link::{Message, Out};
use super::reply::{ReplyPolicy, ReplyTo};
use super::topics::{Op, Target, Topics};
use super::wire::{self, WireError};
use crate::config::mqtt::MqttConfig;

/// A request that passed every check: run it.
pub struct Run {
    pub key: Key,
    /// Who may cancel it: its reply topic and id.
    pub requester: Key,
    pub model: String,
    pub op: Op,
    pub req: wire::Request,
    pub reply: ReplyTo,
    /// Its MQTT 5 message expiry, as a deadline.
    pub deadline: Option<Instant>,
    pub cancel: CancellationToken,
}

pub enum Decision {
    /// Not on a request or cancel topic (a route may want it).
    NotOurs,
    /// Nothing to publish: logged only (an unusable reply address), a duplicate of a running
    /// request, a broker redelivery, or a cancel.
    Nothing,
    /// Refused: publish this error answer, best effort.
    Reject(Out),
    /// Answered before: publish these again.
    Replay(Arc<[Out]>),
    Run(Box<Run>),
}

pub struct Intake {
    topics: Topics,
    policy: ReplyPolicy,
    grants: Grants,
    max_payload: usize,
    max_in_flight: usize,
    dedupe: Dedupe,
    /// Running requests by requester, for `{prefix}/{node}/cancel`.
    running: HashMap<Key, Vec<(Key, CancellationToken)>>,
}

impl Intake {
    pub fn new(cfg: &MqttConfig, topics: Topics) -> Intake {
        Intake {
            policy: ReplyPolicy::new(
                &topics.prefix,
                cfg.max_reply_topic,
                cfg.reply_prefix.as_deref(),
            ),
            grants: Grants::new(&cfg.grant),
            max_payload: cfg.max_payload,
            max_in_flight: cfg.max_in_flight,
            dedupe: Dedupe::new(Duration::from_secs(cfg.dedupe_window_s), cfg.dedupe_bytes),
            running: HashMap::new(),
            topics,
        }
    }

    pub fn take(&mut self, m: &Message, now: Instant) -> Decision {
        match self.topics.parse(&m.topic) {
            None => Decision::NotOurs,
            Some(Target::Cancel) => {
                self.cancel(m);
                Decision::Nothing
            }
            Some(Target::Request { model, op, op_name }) => {
                self.request(m, model, op, &op_name, now)
            }
        }
    }

    /// The requester of a reply topic and id: whose request a cancel may stop.
    fn requester(topic: &str, id: &str) -> Key {
        Key::of(&[topic.as_bytes(), id.as_bytes()])
    }

    /// A cancel is `{"id"}` from the requester: its reply topic is the MQTT 5 Response Topic or
    /// `reply_to`, the same as on the request. Only that requester's request stops.
    fn cancel(&mut self, m: &Message) {
        // A cancel is read like a request, so ids and reply_to mean the same in both.
        let (id, reply_to) = match wire::parse(&m.payload) {
            Ok(r) => (Some(r.id), r.reply_to),
            Err(r) => (r.id, r.reply_to),
        };
        let reply = m.response_topic.clone().or(reply_to);
        let (Some(id), Some(reply)) = (id, reply) else {
            tracing::warn!(topic = %m.topic, "a cancel needs {{\"id\": \"...\"}} and the request's reply topic (\"reply_to\" or the MQTT 5 Response Topic)");
            return;
        };
        match self.running.get(&Self::requester(&reply, &id)) {
            Some(runs) => runs.iter().for_each(|(_, token)| token.cancel()),
            None => {
                tracing::debug!(request_id = %id, "cancel for a request of this requester that is not running")
            }
        }
    }

    fn request(
        &mut self,
        m: &Message,
        model: String,
        op: Option<Op>,
        op_name: &str,
        now: Instant,
    ) -> Decision {
        let v5_reply = m.response_topic.clone().map(|topic| ReplyTo {
            topic,
            correlation: m.correlation.clone(),
            qos: m.qos,
        });
        if m.payload.len() > self.max_payload {
            let e = WireError::new(
                "too_large",
                format!(
                    "the payload is {} bytes; the limit is {} (mqtt.max_payload)",
                    m.payload.len(),
                    self.max_payload
                ),
            );
            return self.reject(&m.topic, v5_reply, None, e);
        }
        let req = match wire::parse(&m.payload) {
            Ok(r) => r,
            Err(rej) => {
                let reply = v5_reply.or_else(|| {
                    rej.reply_to.map(|topic| ReplyTo {
                        topic,
                        correlation: None,
                        qos: m.qos,
                    })
                });
                return self.reject(&m.topic, reply, rej.id, rej.error);
            }
        };
        let reply = v5_reply.or_else(|| {
            req.reply_to.clone().map(|topic| ReplyTo {
                topic,
                correlation: None,
                qos: m.qos,
            })
        });
        let Some(reply) = reply else {
            let e = WireError::new(
                "invalid_input",
                "the request has no reply address: set the MQTT 5 Response Topic or \"reply_to\"",
            );
            return self.reject(&m.topic, None, Some(req.id), e);
        };
        if let Err(e) = self.policy.check(&reply.topic) {
            tracing::warn!(topic = %m.topic, request_id = %req.id, code = e.code, "rejected an MQTT request, unanswered: {}", e.message);
            return Decision::Nothing;
        }
        let Some(op) = op else {
            let e = WireError::new(
                "invalid_input",
                format!(
                    "unknown op {op_name:?}; expected embed, infer, classify, generate or chat"
                ),
            );
            return self.reject(&m.topic, Some(reply), Some(req.id), e);
        };
        if let Err(e) = self.grants.check(&m.topic, &req.options) {
            return self.reject(&m.topic, Some(reply), Some(req.id), e);
        }
        let key = Key::of(&[
            reply.topic.as_bytes(),
            reply.correlation.as_deref().unwrap_or_default(),
            req.id.as_bytes(),
            model.as_bytes(),
            op_name.as_bytes(),
            &m.payload,
        ]);
        match self.dedupe.check(key, m.dup) {
            Seen::New => {}
            Seen::Skip => {
                tracing::debug!(request_id = %req.id, dup = m.dup, "second delivery of a request; it runs once");
                return Decision::Nothing;
            }
            Seen::Done(outs) => {
                tracing::debug!(request_id = %req.id, "redelivery of an answered request; answering again");
                return Decision::Replay(outs);
            }
        }
        if self.dedupe.running() > self.max_in_flight {
            self.dedupe.abandon(&key);
            let e = WireError::new(
                "overloaded",
                format!(
                    "{} MQTT requests are in flight (mqtt.max_in_flight); retry later",
                    self.max_in_flight
                ),
            );
            return self.reject(&m.topic, Some(reply), Some(req.id), e);
        }
        let requester = Self::requester(&reply.topic, &req.id);
        let cancel = CancellationToken::new();
        self.running
            .entry(requester)
            .or_default()
            .push((key, cancel.clone()));
        Decision::Run(Box::new(Run {
            key,
            requester,
            model,
            op,
            reply,
            // A v5 message expiry is the request's deadline (the broker forwards the time left).
            deadline: m.expiry.map(|e| now + e),
            cancel,
            req,
        }))
    }

    /// Records a run's answer; returns how many duplicates are owed it again.
    pub fn finish(&mut self, run: &Run, answer: Arc<[Out]>) -> usize {
        if let Some(runs) = self.running.get_mut(&run.requester) {
            runs.retain(|(k, _)| *k != run.key);
            if runs.is_empty() {
                self.running.remove(&run.requester);
            }
        }
        self.dedupe.finish(&run.key, answer)
    }

    /// Requests running now.
    pub fn in_flight(&self) -> usize {
        self.dedupe.running()
    }

    /// A refusal: to the reply address when inferd may publish there, to the node's error topic
    /// when the request has none, and only to the log when its address is unusable.
    fn reject(
        &self,
        topic: &str,
        reply: Option<ReplyTo>,
        id: Option<String>,
        e: WireError,
    ) -> Decision {
        tracing::warn!(topic, request_id = ?id, code = e.code, "rejected an MQTT request: {}", e.message);
        let out = match reply {
            Some(r) => match self.policy.check(&r.topic) {
                Ok(()) => r.out(wire::failed(id.as_deref(), &e), e.code),
                Err(bad) => {
                    tracing::warn!(topic, request_id = ?id, "not answered: {}", bad.message);
                    return Decision::Nothing;
                }
            },
            None => Out {
                topic: self.topics.error(),
                payload: wire::failed_on(id.as_deref(), topic, &e),
                qos: QoS::AtLeastOnce,
                retain: false,
                correlation: None,
                status: Some(e.code),
            },
        };
        Decision::Reject(out)
    }
}
