//! Routes: IoT message handling with no client code. Each `[[mqtt.route]]` subscribes to a
//! topic filter, runs a model on every message and publishes the result. A route has its own
//! bounded queue and runs one message at a time, as background work that never crowds out
//! requests; a message that fails (or finds the queue full) goes to
//! `{prefix}/{node}/route-errors` with its topic and the reason, and the route goes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rumqttc::QoS;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::link::{Client, Message, Out, PublishError};
use super::ops::Call;
use super::topics::Op;
use super::wire::WireError;
use crate::config::mqtt::RouteConfig;
use crate::engine::Engine;
use crate::work::job::{Priority, Ticket, Transport};

/// The `+` levels of `topic` matched by `filter`, or `None` if it does not match.
pub fn matches(filter: &str, topic: &str) -> Option<Vec<String>> {
    let mut captures = Vec::new();
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        match (f, levels.next()) {
            ("#", _) => return Some(captures),
            ("+", Some(l)) => captures.push(l.to_owned()),
            (f, Some(l)) if f == l => {}
            _ => return None,
        }
    }
    levels.next().is_none().then_some(captures)
}

/// `to` with `{1}`, `{2}`, … replaced by the captured levels.
pub fn render(to: &str, captures: &[String]) -> String {
    captures
        .iter()
        .enumerate()
        .fold(to.to_owned(), |t, (i, c)| {
            t.replace(&format!("{{{}}}", i + 1), c)
        })
}

struct Route {
    cfg: RouteConfig,
    op: Op,
    tx: mpsc::Sender<(Message, Vec<String>)>,
}

pub struct Router {
    routes: Vec<Route>,
    client: Client,
    errors_topic: String,
}

impl Router {
    pub fn start(
        cfgs: &[RouteConfig],
        engine: &Engine,
        client: &Client,
        errors_topic: String,
    ) -> Arc<Router> {
        let routes = cfgs
            .iter()
            .map(|cfg| {
                let op = super::topics::Op::parse(&cfg.op).expect("validated");
                let (tx, rx) = mpsc::channel(cfg.queue.max(1));
                let worker = Worker {
                    cfg: cfg.clone(),
                    op,
                    engine: engine.clone(),
                    client: client.clone(),
                    errors_topic: errors_topic.clone(),
                };
                tokio::spawn(worker.run(rx));
                Route {
                    cfg: cfg.clone(),
                    op,
                    tx,
                }
            })
            .collect();
        Arc::new(Router {
            routes,
            client: client.clone(),
            errors_topic,
        })
    }

    /// Hands the message to every route whose filter matches; false if none does.
    pub fn dispatch(&self, m: &Message) -> bool {
        let mut matched = false;
        for r in &self.routes {
            let Some(captures) = matches(&r.cfg.from, &m.topic) else {
                continue;
            };
            matched = true;
            if r.tx.try_send((m.clone(), captures)).is_err() {
                let e = WireError::new(
                    "overloaded",
                    format!("route queue of {} is full; message dropped", r.cfg.queue),
                );
                let out = route_error(&self.errors_topic, &r.cfg, r.op, &m.topic, &e);
                // Best effort: a flood must not pile up waiting publishes.
                if let Err(e) = self.client.try_publish(out) {
                    tracing::warn!("cannot send a route error: {e}");
                }
            }
        }
        matched
    }
}

fn route_error(errors_topic: &str, cfg: &RouteConfig, op: Op, topic: &str, e: &WireError) -> Out {
    tracing::warn!(route = %cfg.from, topic, op = ?op, code = e.code, "route failed: {}", e.message);
    Out {
        topic: errors_topic.to_owned(),
        payload: json!({"route": cfg.from, "topic": topic, "model": cfg.model,
                        "error": {"code": e.code, "message": e.message}})
        .to_string()
        .into_bytes(),
        qos: QoS::AtLeastOnce,
        retain: false,
        correlation: None,
        status: Some(e.code),
    }
}

/// Numbers route messages (their request ids) across all routes.
static ROUTE_MESSAGES: AtomicU64 = AtomicU64::new(0);

struct Worker {
    cfg: RouteConfig,
    op: Op,
    engine: Engine,
    client: Client,
    errors_topic: String,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<(Message, Vec<String>)>) {
        while let Some((m, captures)) = rx.recv().await {
            let out = match self.handle(&m).await {
                Ok(result) => Out {
                    topic: render(&self.cfg.to, &captures),
                    payload: json!({"topic": m.topic, "model": self.cfg.model, "result": result})
                        .to_string()
                        .into_bytes(),
                    qos: m.qos,
                    retain: false,
                    correlation: None,
                    status: Some("ok"),
                },
                Err(e) => route_error(&self.errors_topic, &self.cfg, self.op, &m.topic, &e),
            };
            match self.client.publish(out).await {
                Ok(()) => {}
                Err(PublishError::TooLarge { size, max }) => {
                    let e = WireError::new(
                        "too_large",
                        format!("the result is {size} bytes, over the broker's maximum packet size of {max}"),
                    );
                    let out = route_error(&self.errors_topic, &self.cfg, self.op, &m.topic, &e);
                    if let Err(e) = self.client.publish(out).await {
                        tracing::warn!("cannot queue a route error: {e}");
                    }
                }
                Err(e) => tracing::warn!("cannot queue a route result: {e}"),
            }
        }
    }

    async fn handle(&self, m: &Message) -> Result<Value, WireError> {
        let input = self.input(&m.payload)?;
        let call = Call {
            engine: &self.engine,
            model: &self.cfg.model,
            input: &input,
            options: &self.cfg.options,
            deadline: None,
            ticket: Ticket::new(
                format!("route-{}", ROUTE_MESSAGES.fetch_add(1, Ordering::Relaxed)),
                Transport::Mqtt,
                Priority::Background,
            )
            .with_caller(format!("route:{}", self.cfg.from)),
        };
        let (result, _) = call.run(self.op, CancellationToken::new()).await?;
        Ok(result)
    }

    /// The request `input` a message stands for.
    fn input(&self, payload: &[u8]) -> Result<Map<String, Value>, WireError> {
        let invalid = |m: String| WireError::new("invalid_input", m);
        if self.op == Op::Infer {
            let values: Vec<Value> = match serde_json::from_slice::<Value>(payload) {
                Ok(Value::Array(a)) => a,
                _ if payload.len().is_multiple_of(4) => payload
                    .chunks_exact(4)
                    .map(|b| json!(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                    .collect(),
                _ => {
                    return Err(invalid(
                        "the payload is neither a JSON number array nor little-endian f32".into(),
                    ))
                }
            };
            let name = self.cfg.input_name.clone().unwrap_or_default();
            let tensor = json!({"dtype": "float32", "shape": self.cfg.shape, "data": values});
            return Ok(Map::from_iter([(
                "inputs".to_owned(),
                json!({ name: tensor }),
            )]));
        }
        let text = std::str::from_utf8(payload)
            .map_err(|_| invalid("the payload is not UTF-8 text".into()))?;
        let text = match &self.cfg.input_field {
            None => text.to_owned(),
            Some(field) => serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v[field.as_str()].as_str().map(str::to_owned))
                .ok_or_else(|| {
                    invalid(format!(
                        "the payload is not JSON with a string field {field:?}"
                    ))
                })?,
        };
        Ok(match self.op {
            Op::Generate => Map::from_iter([("prompt".to_owned(), json!(text))]),
            Op::Chat => Map::from_iter([(
                "messages".to_owned(),
                json!([{"role": "user", "content": text}]),
            )]),
            _ => Map::from_iter([("texts".to_owned(), json!([text]))]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_capture_and_render() {
        let c = matches("sensors/+/text", "sensors/kitchen/text").unwrap();
        assert_eq!(render("sensors/{1}/intent", &c), "sensors/kitchen/intent");
        assert_eq!(matches("a/+/+", "a/b/c").unwrap(), ["b", "c"]);
        assert!(matches("a/#", "a/b/c").is_some());
        assert!(matches("sensors/+/text", "sensors/kitchen/text/x").is_none());
        assert!(matches("sensors/+/text", "sensors/kitchen").is_none());
        assert!(matches("a/b", "a/c").is_none());
    }
}
