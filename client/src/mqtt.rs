//! An MQTT 5 client of inferd: requests with a Response Topic and Correlation Data, streamed
//! generations, cancel, and the daemons' retained status. Errors come back as the same typed
//! `Error` as on D-Bus.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};

use crate::messages::{Cancel, NodeStatus, Reply, Request, StreamMessage, Usage};
use crate::Error;

/// Which daemon answers: one node, or any member of the pool.
#[derive(Debug, Clone)]
pub enum Target {
    Node(String),
    Pool,
}

type Pending = Arc<Mutex<HashMap<Bytes, mpsc::UnboundedSender<Value>>>>;

#[derive(Clone)]
pub struct MqttClient {
    client: AsyncClient,
    prefix: String,
    target: Target,
    replies: String,
    pending: Pending,
    statuses: watch::Receiver<BTreeMap<String, NodeStatus>>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Where a broker is: `mqtt://host[:1883]` or `mqtts://host[:8883]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err("expected mqtt://host[:port] or mqtts://host[:port]".into());
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| "the port is not a number")?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() || host.contains('/') {
            return Err("no host".into());
        }
        Ok(Endpoint {
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            tls,
        })
    }
}

/// Maps an MQTT error reply's code to the typed error.
pub fn error_from_code(code: &str, message: String) -> Error {
    match code {
        "model_not_found" => Error::ModelNotFound(message),
        "model_not_ready" => Error::ModelNotReady(message),
        "invalid_input" | "too_large" => Error::InvalidInput(message),
        "overloaded" => Error::Overloaded(message),
        "access_denied" => Error::AccessDenied(message),
        "timeout" => Error::Timeout(message),
        "shutting_down" => Error::ShuttingDown(message),
        "cancelled" => Error::Cancelled(message),
        _ => Error::Internal(message),
    }
}

impl MqttClient {
    /// Connects to the broker at `url` and subscribes to its own reply topic (under `replies`,
    /// which must be outside `prefix`: inferd never publishes there) and the statuses.
    pub async fn connect(
        url: &str,
        prefix: &str,
        replies: &str,
        target: Target,
    ) -> Result<MqttClient, Error> {
        let e =
            Endpoint::parse(url).map_err(|why| Error::InvalidInput(format!("{url:?}: {why}")))?;
        if e.tls {
            return Err(Error::InvalidInput(format!(
                "{url:?}: this client speaks mqtt:// only (no TLS yet)"
            )));
        }
        let (host, port) = (e.host, e.port);
        let id = format!(
            "inferctl-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut o = MqttOptions::new(&id, host, port);
        o.set_max_packet_size(Some(64 << 20));
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true); // no Nagle delay on small requests
        o.set_network_options(net);
        let (client, mut lp) = AsyncClient::new(o, 64);
        let replies = format!("{}/{id}", replies.trim_end_matches('/'));
        let pending: Pending = Arc::default();
        let (status_tx, statuses) = watch::channel(BTreeMap::new());
        let (ready_tx, ready) = oneshot::channel();
        let (routes, status_prefix) = (pending.clone(), format!("{prefix}/"));
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            loop {
                match lp.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        if let Some(node) = topic
                            .strip_prefix(&status_prefix)
                            .and_then(|t| t.strip_suffix("/status"))
                        {
                            let Ok(status) = serde_json::from_slice::<NodeStatus>(&p.payload)
                            else {
                                continue;
                            };
                            let node = node.to_owned();
                            status_tx.send_modify(|m| {
                                m.insert(node, status);
                            });
                            continue;
                        }
                        let Ok(v) = serde_json::from_slice::<Value>(&p.payload) else {
                            continue;
                        };
                        if let Some(c) = p.properties.and_then(|pr| pr.correlation_data) {
                            if let Some(tx) = routes.lock().expect("not poisoned").get(&c) {
                                let _ = tx.send(v);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        ready
            .await
            .map_err(|_| Error::Internal("the MQTT connection task ended".into()))?
            .map_err(|e| Error::Internal(format!("cannot connect to {url}: {e}")))?;
        let sub = |t: String| {
            let c = client.clone();
            async move { c.subscribe(t, QoS::AtLeastOnce).await }
        };
        sub(replies.clone())
            .await
            .and(sub(format!("{prefix}/+/status")).await)
            .map_err(|e| Error::Internal(format!("cannot subscribe: {e}")))?;
        Ok(MqttClient {
            client,
            prefix: prefix.to_owned(),
            target,
            replies,
            pending,
            statuses,
        })
    }

    fn topic(&self, model: &str, op: &str) -> String {
        match &self.target {
            Target::Node(n) => format!("{}/{n}/req/{model}/{op}", self.prefix),
            Target::Pool => format!("{}/pool/req/{model}/{op}", self.prefix),
        }
    }

    /// Publishes a request; its replies arrive on the returned channel.
    async fn send(
        &self,
        model: &str,
        op: &str,
        input: impl Serialize,
        options: Map<String, Value>,
        stream: bool,
    ) -> Result<(String, mpsc::UnboundedReceiver<Value>), Error> {
        let input = match serde_json::to_value(input) {
            Ok(Value::Object(m)) => m,
            Ok(other) => {
                return Err(Error::InvalidInput(format!(
                    "input {other} is not an object"
                )))
            }
            Err(e) => return Err(Error::InvalidInput(format!("input: {e}"))),
        };
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let correlation = Bytes::from(id.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        self.pending
            .lock()
            .expect("not poisoned")
            .insert(correlation.clone(), tx);
        let body = Request {
            id: id.clone(),
            input,
            options,
            reply_to: None,
            stream,
        };
        let props = PublishProperties {
            response_topic: Some(self.replies.clone()),
            correlation_data: Some(correlation),
            ..Default::default()
        };
        self.client
            .publish_with_properties(
                self.topic(model, op),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&body).map_err(|e| Error::Internal(e.to_string()))?,
                props,
            )
            .await
            .map_err(|e| Error::Internal(format!("cannot publish: {e}")))?;
        Ok((id, rx))
    }

    fn forget(&self, id: &str) {
        self.pending
            .lock()
            .expect("not poisoned")
            .remove(&Bytes::from(id.to_owned()));
    }

    /// One request, one answer: the op's result type (`messages::EmbedResult`, …) and usage.
    pub async fn request<T: DeserializeOwned>(
        &self,
        model: &str,
        op: &str,
        input: impl Serialize,
        options: Map<String, Value>,
    ) -> Result<(T, Option<Usage>), Error> {
        let (id, mut rx) = self.send(model, op, input, options, false).await?;
        let reply = rx.recv().await;
        self.forget(&id);
        let reply = reply.ok_or_else(|| Error::Internal("the connection closed".into()))?;
        parse::<Reply<T>>(reply)?.into_result()
    }

    /// A streamed `generate` or `chat`.
    pub async fn stream(
        &self,
        model: &str,
        op: &str,
        input: impl Serialize,
        options: Map<String, Value>,
    ) -> Result<MqttStream, Error> {
        let (id, rx) = self.send(model, op, input, options, true).await?;
        Ok(MqttStream {
            id,
            rx,
            client: self.clone(),
        })
    }

    /// The retained statuses of the daemons under this prefix, by node, as they arrived within
    /// `wait`.
    pub async fn statuses(&self, wait: Duration) -> BTreeMap<String, NodeStatus> {
        tokio::time::sleep(wait).await;
        self.statuses.borrow().clone()
    }
}

fn parse<T: DeserializeOwned>(v: Value) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| Error::Internal(format!("unexpected reply: {e}")))
}

/// The replies of a streamed generation: `{"seq", "delta", "channel"}` messages, then
/// `{"done": true, "finish_reason", "usage"}` or an error.
pub struct MqttStream {
    pub id: String,
    rx: mpsc::UnboundedReceiver<Value>,
    client: MqttClient,
}

impl MqttStream {
    /// The next message, a `Delta` or the `Done`; an error ends the stream. `None` after the
    /// last.
    pub async fn next(&mut self) -> Option<Result<StreamMessage, Error>> {
        let m = parse::<StreamMessage>(self.rx.recv().await?);
        match &m {
            Ok(StreamMessage::Delta(_)) => {}
            _ => self.client.forget(&self.id),
        }
        Some(match m {
            Ok(StreamMessage::Error(r)) => Err(r
                .into_result()
                .err()
                .unwrap_or_else(|| Error::Internal("a stream reply with no error in it".into()))),
            other => other,
        })
    }

    /// Asks the daemon to stop this generation (a node target only: the pool has no one
    /// cancel topic). The Response Topic names this client as the requester: only it may
    /// cancel its requests.
    pub async fn cancel(&self) -> Result<(), Error> {
        let Target::Node(node) = &self.client.target else {
            return Err(Error::InvalidInput(
                "cancel needs --node, not --pool".into(),
            ));
        };
        let props = PublishProperties {
            response_topic: Some(self.client.replies.clone()),
            ..Default::default()
        };
        self.client
            .client
            .publish_with_properties(
                format!("{}/{node}/cancel", self.client.prefix),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&Cancel {
                    id: self.id.clone(),
                    reply_to: None,
                })
                .map_err(|e| Error::Internal(e.to_string()))?,
                props,
            )
            .await
            .map_err(|e| Error::Internal(format!("cannot publish: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_codes() {
        let e = |url| Endpoint::parse(url).map(|e| (e.host, e.port, e.tls));
        assert_eq!(e("mqtt://b:1884").unwrap(), ("b".into(), 1884, false));
        assert_eq!(
            e("mqtts://10.0.0.2").unwrap(),
            ("10.0.0.2".into(), 8883, true)
        );
        for bad in ["http://b", "mqtt://", "mqtt://h:port"] {
            assert!(e(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            error_from_code("overloaded", "x".into()),
            Error::Overloaded(_)
        ));
        assert!(matches!(
            error_from_code("weird", "x".into()),
            Error::Internal(_)
        ));
    }
}
