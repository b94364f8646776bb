//! Takes each delivered message: checks its size, parses it, finds where its answers go,
//! drops QoS 1 redeliveries, and runs it on its own task so the next message is taken at once.
//! Every rejection gets a typed error reply when a reply address exists, and a log line; none
//! stops the listener.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::QoS;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::dedupe::{Dedupe, Key, Seen};
use super::link::{Client, Message, Out};
use super::ops::{self, Call};
use super::routes::Router;
use super::topics::{Op, Target, Topics};
use super::wire::{self, WireError};
use crate::engine::job::{Event, Priority, Ticket, Transport};
use crate::engine::Engine;
use tokio::sync::mpsc::UnboundedReceiver;

/// How long an answered request's id is remembered for redeliveries.
const DEDUPE_WINDOW: Duration = Duration::from_secs(600);
const DEDUPE_ENTRIES: usize = 10_000;

/// Where a request's answers go.
#[derive(Clone)]
struct ReplyTo {
    topic: String,
    correlation: Option<Bytes>,
    qos: QoS,
}

impl ReplyTo {
    fn out(&self, payload: Vec<u8>, status: &'static str) -> Out {
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

pub struct Handler {
    pub engine: Engine,
    pub client: Client,
    pub topics: Topics,
    pub max_payload: usize,
    router: Arc<Router>,
    dedupe: Mutex<Dedupe>,
    /// Running requests by id, for `{prefix}/{node}/cancel`.
    running: Mutex<HashMap<String, CancellationToken>>,
}

impl Handler {
    pub fn new(
        engine: Engine,
        client: Client,
        topics: Topics,
        max_payload: usize,
        router: Arc<Router>,
    ) -> Self {
        Handler {
            engine,
            client,
            topics,
            max_payload,
            router,
            dedupe: Mutex::new(Dedupe::new(DEDUPE_WINDOW, DEDUPE_ENTRIES)),
            running: Mutex::new(HashMap::new()),
        }
    }

    pub fn handle(self: &Arc<Self>, m: Message) {
        match self.topics.parse(&m.topic) {
            None if self.router.dispatch(&m) => {}
            None => tracing::debug!(topic = %m.topic, "ignored a message on an unknown topic"),
            Some(Target::Cancel) => self.cancel(&m),
            Some(Target::Request { model, op, op_name }) => self.request(m, model, op, op_name),
        }
    }

    fn cancel(&self, m: &Message) {
        let id = serde_json::from_slice::<Value>(&m.payload)
            .ok()
            .and_then(|v| match &v["id"] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        let Some(id) = id else {
            tracing::warn!(topic = %m.topic, "a cancel needs a JSON payload {{\"id\": \"...\"}}");
            return;
        };
        match self.running.lock().expect("not poisoned").get(&id) {
            Some(token) => token.cancel(),
            None => tracing::debug!(request_id = %id, "cancel for a request that is not running"),
        }
    }

    fn request(self: &Arc<Self>, m: Message, model: String, op: Option<Op>, op_name: String) {
        let received = Instant::now();
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
        let Some(op) = op else {
            let e = WireError::new(
                "invalid_input",
                format!(
                    "unknown op {op_name:?}; expected embed, infer, classify, generate or chat"
                ),
            );
            return self.reject(&m.topic, Some(reply), Some(req.id), e);
        };
        let key: Key = (reply.topic.clone(), req.id.clone());
        let seen = self
            .dedupe
            .lock()
            .expect("not poisoned")
            .check(key.clone(), m.dup);
        match seen {
            Seen::New => {}
            Seen::Skip => {
                tracing::debug!(request_id = %req.id, dup = m.dup, "second delivery of a request; it runs once");
                return;
            }
            Seen::Done(outs) => {
                tracing::debug!(request_id = %req.id, "redelivery of an answered request; answering again");
                let this = Arc::clone(self);
                tokio::spawn(async move { this.publish_all(&outs).await });
                return;
            }
        }
        // A v5 message expiry is the request's deadline (the broker forwards the time left).
        let deadline = m.expiry.map(|e| received + e);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let outs = this.run(op, &model, req, &reply, deadline).await;
            let owed = this
                .dedupe
                .lock()
                .expect("not poisoned")
                .finish(&key, outs.clone());
            for _ in 0..owed {
                this.publish_all(&outs).await;
            }
        });
    }

    /// Runs one request and publishes its answer; returns what was published.
    async fn run(
        &self,
        op: Op,
        model: &str,
        req: wire::Request,
        reply: &ReplyTo,
        deadline: Option<Instant>,
    ) -> Vec<Out> {
        let cancel = CancellationToken::new();
        self.running
            .lock()
            .expect("not poisoned")
            .insert(req.id.clone(), cancel.clone());
        let call = Call {
            engine: &self.engine,
            model,
            input: &req.input,
            options: &req.options,
            deadline,
            // MQTT is the IoT transport: background unless the request says otherwise.
            ticket: Ticket::new(req.id.clone(), Transport::Mqtt, Priority::Background),
        };
        let mut outs = Vec::new();
        let last = if req.stream && matches!(op, Op::Generate | Op::Chat) {
            match call.start_generation(op, cancel).await {
                Ok(rx) => self.stream(&req.id, reply, rx, &mut outs).await,
                Err(e) => Err(e),
            }
        } else {
            call.run(op, cancel)
                .await
                .map(|(result, usage)| reply.out(wire::ok(&req.id, result, usage), "ok"))
        };
        self.running.lock().expect("not poisoned").remove(&req.id);
        let last = last.unwrap_or_else(|e| {
            tracing::info!(request_id = %req.id, model, code = e.code, "request failed: {}", e.message);
            reply.out(wire::failed(Some(&req.id), &e), e.code)
        });
        self.publish(last.clone()).await;
        outs.push(last);
        outs
    }

    /// Publishes each delta as it comes (`seq` 0, 1, …); returns the final `done` message.
    async fn stream(
        &self,
        id: &str,
        reply: &ReplyTo,
        mut rx: UnboundedReceiver<Event>,
        outs: &mut Vec<Out>,
    ) -> Result<Out, WireError> {
        let mut seq = 0u64;
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Delta { text, channel } => {
                    let out = reply.out(wire::delta(id, seq, &text, channel), "ok");
                    seq += 1;
                    self.publish(out.clone()).await;
                    outs.push(out);
                }
                Event::Finished { reason, usage } => {
                    return Ok(reply.out(wire::done(id, seq, reason, &usage), "ok"))
                }
                Event::Failed(e) => return Err(e.into()),
            }
        }
        Err(ops::ended())
    }

    async fn publish(&self, out: Out) {
        if let Err(e) = self.client.publish(out).await {
            tracing::warn!("cannot queue an MQTT reply: {e}");
        }
    }

    async fn publish_all(&self, outs: &[Out]) {
        for o in outs {
            self.publish(o.clone()).await;
        }
    }

    /// Answers a request that could not be taken; with no reply address, on the error topic.
    fn reject(
        self: &Arc<Self>,
        topic: &str,
        reply: Option<ReplyTo>,
        id: Option<String>,
        e: WireError,
    ) {
        tracing::warn!(topic, request_id = ?id, code = e.code, "rejected an MQTT request: {}", e.message);
        let out = match reply {
            Some(r) => r.out(wire::failed(id.as_deref(), &e), e.code),
            None => Out {
                topic: self.topics.error(),
                payload: wire::failed_on(id.as_deref(), topic, &e),
                qos: QoS::AtLeastOnce,
                retain: false,
                correlation: None,
                status: Some(e.code),
            },
        };
        let this = Arc::clone(self);
        tokio::spawn(async move { this.publish(out).await });
    }
}
