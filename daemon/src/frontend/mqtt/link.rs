//! The broker connection, on MQTT 5 or 3.1.1. One task owns the rumqttc event loop and only
//! polls it: messages go to the dispatcher through a channel, and replies are published through
//! the client's bounded request channel, so inference never runs on the event loop.
//!
//! A broker that is down or goes away is retried with exponential backoff and jitter (rumqttc
//! alone would spin at full CPU); subscriptions are restored when the broker kept no session,
//! and the pool's always (a kept session may have left it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{LastWill as LastWill5, PublishProperties};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::{v5, QoS};
use tokio::sync::{mpsc, watch};

pub use super::event_loop::Message;
use super::event_loop::{EventLoop, Happening};
use super::resend::Resend;
use crate::config::mqtt::MqttConfig;

/// A message to publish.
#[derive(Debug, Clone)]
pub struct Out {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
    pub correlation: Option<Bytes>,
    /// MQTT 5 user property `status` (`ok` or an error code).
    pub status: Option<&'static str>,
}

/// The protocol's largest packet: a 4-byte remaining length of 268,435,455 and its header.
pub const PROTOCOL_MAX_PACKET: usize = 268_435_455 + 5;

/// Why a message was not handed to the event loop. None of these reaches the broker, so none
/// can cost the session: a publish the broker would refuse is never stored for resend.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("topic {topic:?} cannot be published to: {why}")]
    Topic {
        topic: String,
        #[source]
        why: super::topics::TopicError,
    },
    #[error("the message is {size} bytes, over the broker's maximum packet size of {max}")]
    TooLarge { size: usize, max: usize },
    /// rumqttc's only error here: its event loop is gone (the request carries no more).
    #[error("the MQTT link is closed")]
    Closed,
}

impl Out {
    /// A retained QoS 1 message: the status, availability and discovery configs.
    pub fn retained(topic: &str, payload: Vec<u8>) -> Out {
        Out {
            topic: topic.to_owned(),
            payload,
            qos: QoS::AtLeastOnce,
            retain: true,
            correlation: None,
            status: None,
        }
    }
}

/// Publishes through rumqttc after checking what the broker would refuse.
#[derive(Clone)]
pub struct Client {
    inner: Inner,
    /// The largest packet the broker takes: its CONNACK Maximum Packet Size on MQTT 5, else
    /// the protocol's.
    broker_max: Arc<AtomicUsize>,
}

#[derive(Clone)]
enum Inner {
    V5(v5::AsyncClient),
    V3(rumqttc::AsyncClient),
}

fn qos5(q: QoS) -> QoS5 {
    match q {
        QoS::AtMostOnce => QoS5::AtMostOnce,
        QoS::AtLeastOnce => QoS5::AtLeastOnce,
        QoS::ExactlyOnce => QoS5::ExactlyOnce,
    }
}

/// A message as rumqttc will encode it, with its size on the wire.
pub enum Encoded {
    /// The topic as a string, for the client call, and the packet.
    V5(String, v5::mqttbytes::v5::Publish),
    V3(rumqttc::Publish),
}

impl Encoded {
    /// The packet for `o`: `Err` when its topic cannot be encoded or it is larger than `max`.
    pub fn new(o: Out, v5: bool, max: usize) -> Result<Encoded, PublishError> {
        if let Err(why) = super::topics::encodable(&o.topic) {
            return Err(PublishError::Topic {
                topic: o.topic,
                why,
            });
        }
        // Packet ids are assigned later; one takes 2 bytes at QoS 1 and 2.
        let pkid = u16::from(o.qos != QoS::AtMostOnce);
        let e = if v5 {
            let props = PublishProperties {
                correlation_data: o.correlation,
                content_type: Some("application/json".into()),
                user_properties: o
                    .status
                    .map(|s| vec![("status".to_owned(), s.to_owned())])
                    .unwrap_or_default(),
                ..Default::default()
            };
            let mut p = v5::mqttbytes::v5::Publish::new(
                o.topic.clone(),
                qos5(o.qos),
                o.payload,
                Some(props),
            );
            p.retain = o.retain;
            p.pkid = pkid;
            Encoded::V5(o.topic, p)
        } else {
            Encoded::V3(rumqttc::Publish {
                dup: false,
                qos: o.qos,
                retain: o.retain,
                topic: o.topic,
                pkid,
                payload: o.payload.into(),
            })
        };
        let size = e.size();
        if size > max {
            return Err(PublishError::TooLarge { size, max });
        }
        Ok(e)
    }

    pub fn size(&self) -> usize {
        match self {
            Encoded::V5(_, p) => p.size(),
            Encoded::V3(p) => p.size(),
        }
    }
}

impl Client {
    fn encode(&self, o: Out) -> Result<Encoded, PublishError> {
        let max = self.broker_max.load(Ordering::Relaxed);
        Encoded::new(o, matches!(self.inner, Inner::V5(_)), max)
    }

    /// Whether `o` would be taken: the same checks as `publish`, without sending.
    pub fn fits(&self, o: &Out) -> Result<(), PublishError> {
        self.encode(o.clone()).map(drop)
    }

    /// Queues a publish; waits only while the bounded request channel is full.
    pub async fn publish(&self, o: Out) -> Result<(), PublishError> {
        match (&self.inner, self.encode(o)?) {
            (Inner::V5(c), Encoded::V5(topic, p)) => c
                .publish_with_properties(
                    topic,
                    p.qos,
                    p.retain,
                    p.payload,
                    p.properties.unwrap_or_default(),
                )
                .await
                .map_err(|_| PublishError::Closed),
            (Inner::V3(c), Encoded::V3(p)) => c
                .publish(p.topic, p.qos, p.retain, p.payload)
                .await
                .map_err(|_| PublishError::Closed),
            _ => unreachable!("encoded for this client's protocol"),
        }
    }

    /// Queues a publish unless the request channel is full (then it is dropped): for
    /// best-effort messages such as rejections, which must never pile up.
    pub fn try_publish(&self, o: Out) -> Result<(), PublishError> {
        match (&self.inner, self.encode(o)?) {
            (Inner::V5(c), Encoded::V5(topic, p)) => c
                .try_publish_with_properties(
                    topic,
                    p.qos,
                    p.retain,
                    p.payload,
                    p.properties.unwrap_or_default(),
                )
                .map_err(|_| PublishError::Closed),
            (Inner::V3(c), Encoded::V3(p)) => c
                .try_publish(p.topic, p.qos, p.retain, p.payload)
                .map_err(|_| PublishError::Closed),
            _ => unreachable!("encoded for this client's protocol"),
        }
    }

    pub async fn unsubscribe(&self, filter: &str) {
        let r = match &self.inner {
            Inner::V5(c) => c.unsubscribe(filter).await.is_ok(),
            Inner::V3(c) => c.unsubscribe(filter).await.is_ok(),
        };
        if !r {
            tracing::debug!(filter, "cannot unsubscribe: {}", PublishError::Closed);
        }
    }

    pub async fn disconnect(&self) {
        // Err only when the link is already closed, which is what was asked for.
        let _ = match &self.inner {
            Inner::V5(c) => c.disconnect().await.is_ok(),
            Inner::V3(c) => c.disconnect().await.is_ok(),
        };
    }
}

/// What the link needs to connect.
pub struct Connect {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub keep_alive: Duration,
    pub credentials: Option<(String, String)>,
    /// Retained Last Will: (topic, payload).
    pub will: (String, Vec<u8>),
    pub subscriptions: Vec<String>,
    pub max_payload: usize,
    /// `mqtt.max_packet`: the broker's limit when it does not announce one.
    pub max_packet: Option<usize>,
    /// `mqtts://`: TLS with these CA certificates and, optionally, a client certificate.
    pub tls: Option<rumqttc::TlsConfiguration>,
}

/// Small request/reply messages must not wait for Nagle's algorithm and delayed ACKs (about
/// 40 ms each way).
fn nodelay() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

/// Requests published while the broker is away wait here (then `publish` waits).
const REQUEST_CAPACITY: usize = 1024;

/// The largest request packet inferd takes on MQTT 5, announced to the broker (which must not
/// send anything larger): headroom over `max_payload` for the topic and properties, so a
/// request a little too large still arrives and is answered `too_large`. MQTT 3.1.1 cannot
/// announce a limit, and a packet over rumqttc's would break the connection (and be
/// redelivered on every reconnect), so there inferd reads any packet the protocol allows.
pub fn max_request_packet(max_payload: usize) -> usize {
    max_payload
        .saturating_mul(2)
        .saturating_add(64 * 1024)
        .min(PROTOCOL_MAX_PACKET)
}

pub fn client(cfg: &MqttConfig, c: &Connect) -> (Client, impl FnOnce() -> Link) {
    let configured = c.max_packet.unwrap_or(PROTOCOL_MAX_PACKET);
    let broker_max = Arc::new(AtomicUsize::new(configured));
    let (inner, lp) = if cfg.protocol == 3 {
        let mut o = rumqttc::MqttOptions::new(&c.client_id, &c.host, c.port);
        o.set_keep_alive(c.keep_alive)
            .set_clean_session(false)
            .set_max_packet_size(PROTOCOL_MAX_PACKET, PROTOCOL_MAX_PACKET)
            .set_request_channel_capacity(REQUEST_CAPACITY)
            .set_last_will(rumqttc::LastWill::new(
                &c.will.0,
                c.will.1.clone(),
                QoS::AtLeastOnce,
                true,
            ));
        if let Some((u, p)) = &c.credentials {
            o.set_credentials(u, p);
        }
        if let Some(tls) = &c.tls {
            o.set_transport(rumqttc::Transport::tls_with_config(tls.clone()));
        }
        let (client, mut lp) = rumqttc::AsyncClient::new(o, REQUEST_CAPACITY);
        lp.network_options.set_tcp_nodelay(true);
        (
            Inner::V3(client),
            EventLoop::V3(Box::new(lp), Resend::default()),
        )
    } else {
        let mut o = v5::MqttOptions::new(&c.client_id, &c.host, c.port);
        o.set_keep_alive(c.keep_alive)
            .set_clean_start(false)
            .set_session_expiry_interval(Some(3600))
            .set_max_packet_size(Some(max_request_packet(c.max_payload) as u32))
            .set_request_channel_capacity(REQUEST_CAPACITY)
            .set_last_will(LastWill5::new(
                &c.will.0,
                c.will.1.clone(),
                QoS5::AtLeastOnce,
                true,
                None,
            ));
        if let Some((u, p)) = &c.credentials {
            o.set_credentials(u, p);
        }
        if let Some(tls) = &c.tls {
            o.set_transport(rumqttc::Transport::tls_with_config(tls.clone()));
        }
        o.set_network_options(nodelay());
        let (client, lp) = v5::AsyncClient::new(o, REQUEST_CAPACITY);
        (
            Inner::V5(client),
            EventLoop::V5(Box::new(lp), Resend::default()),
        )
    };
    let client = Client { inner, broker_max };
    let subs = c.subscriptions.clone();
    let handle = client.clone();
    (client, move || Link {
        lp,
        client: handle,
        subscriptions: subs,
        configured,
    })
}

/// What the link tells the rest of the frontend, as counters that change.
pub struct Events {
    pub connected: watch::Sender<u64>,
    /// Whether the broker connection is up now (for the service status).
    pub online: watch::Sender<bool>,
    pub unsubscribed: watch::Sender<u64>,
}

pub struct Link {
    lp: EventLoop,
    client: Client,
    subscriptions: Vec<String>,
    /// `mqtt.max_packet`, or the protocol's maximum.
    configured: usize,
}

/// Exponential backoff with jitter: 0.5 s doubling to 30 s, each wait ±25 %.
pub fn backoff(failures: u32) -> Duration {
    let base = 500u64.saturating_mul(1 << failures.min(6)).min(30_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = (nanos % 500) as f64 / 1000.0 - 0.25; // -0.25 .. +0.25
    Duration::from_millis((base as f64 * (1.0 + jitter)) as u64)
}

impl Link {
    /// Polls until `stop`; delivers messages to `tx`, and counts (re)connections (so the
    /// status can be republished) and acknowledged unsubscriptions in `events`.
    pub async fn run(
        mut self,
        tx: mpsc::Sender<Message>,
        events: Events,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut failures = 0u32;
        loop {
            let h = tokio::select! {
                h = self.lp.next() => h,
                _ = stop.changed() => return,
            };
            match h {
                Happening::Connected {
                    session_present,
                    max_packet,
                } => {
                    tracing::info!(session_present, max_packet, "connected to the MQTT broker");
                    failures = 0;
                    // The broker's own word, when it gives one, and never more than configured.
                    let max =
                        max_packet.map_or(self.configured, |m| (m as usize).min(self.configured));
                    self.client.broker_max.store(max, Ordering::Relaxed);
                    let dropped = self.lp.drop_oversized(max);
                    let waiting = self.lp.waiting();
                    if waiting > 0 {
                        tracing::debug!(waiting, "messages from before the failure go out first");
                    }
                    if dropped > 0 {
                        tracing::error!(
                            dropped,
                            max,
                            "dropped unacknowledged messages larger than the broker now takes"
                        );
                    }
                    // A kept session has every subscription but, maybe, the pool's: the daemon
                    // that last used it left the pool at its shutdown (SIGTERM). Renewing only
                    // that one replays no retained message (shared subscriptions get none).
                    let renew: Vec<String> = if session_present {
                        let pool = self
                            .subscriptions
                            .iter()
                            .filter(|f| f.starts_with("$share/"));
                        pool.cloned().collect()
                    } else {
                        self.subscriptions.clone()
                    };
                    self.lp.subscribe_first(&renew);
                    events.connected.send_modify(|n| *n += 1);
                    events.online.send_replace(true);
                    crate::metrics::get().mqtt_connected(true);
                }
                Happening::Message(m) => {
                    if tx.send(m).await.is_err() {
                        return;
                    }
                }
                Happening::Failed(e) => {
                    events.online.send_replace(false);
                    crate::metrics::get().mqtt_connected(false);
                    let wait = backoff(failures);
                    if failures == 0 {
                        tracing::warn!("MQTT broker connection failed: {e}; retrying in {wait:?}");
                    } else {
                        tracing::debug!("MQTT broker still unreachable: {e}; retrying in {wait:?}");
                    }
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                }
                Happening::Unsubscribed => events.unsubscribed.send_modify(|n| *n += 1),
                Happening::Disconnected => return,
                Happening::Other => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        let ms = |n| backoff(n).as_millis() as u64;
        assert!((375..=625).contains(&ms(0)));
        assert!((750..=1250).contains(&ms(1)));
        assert!((22_500..=37_500).contains(&ms(20)));
    }
}
