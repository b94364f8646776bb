//! rumqttc's event loop on either protocol version, read as what happened to the link, with
//! what must go out again after a failure kept beside it (`resend.rs`).

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::{v5, QoS};

use super::resend::Resend;

/// A message the broker delivered, the same on both protocol versions.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    /// A redelivery of a packet the broker sent before (its DUP flag).
    pub dup: bool,
    /// MQTT 5: where the reply goes, and what to copy back.
    pub response_topic: Option<String>,
    pub correlation: Option<Bytes>,
    /// MQTT 5 Message Expiry Interval, as the broker forwarded it (time left).
    pub expiry: Option<Duration>,
}

fn qos3(q: QoS5) -> QoS {
    match q {
        QoS5::AtMostOnce => QoS::AtMostOnce,
        QoS5::AtLeastOnce => QoS::AtLeastOnce,
        QoS5::ExactlyOnce => QoS::ExactlyOnce,
    }
}

/// rumqttc's event loop, with what must go out again after a failure (see `resend`).
pub(super) enum EventLoop {
    V5(Box<v5::EventLoop>, Resend<v5::Request>),
    V3(Box<rumqttc::EventLoop>, Resend<rumqttc::Request>),
}

pub(super) enum Happening {
    Connected {
        session_present: bool,
        /// The broker's Maximum Packet Size (MQTT 5 CONNACK), if it announced one.
        max_packet: Option<u32>,
    },
    Message(Message),
    Failed(String),
    Unsubscribed,
    /// Our own DISCONNECT went out: a clean goodbye, the link's work is done.
    Disconnected,
    Other,
}

impl EventLoop {
    pub(super) async fn next(&mut self) -> Happening {
        use rumqttc::v5::mqttbytes::v5::Packet as P5;
        use rumqttc::Packet as P3;
        match self {
            EventLoop::V5(l, r) => r.feed(
                &mut l.pending,
                l.state.collision.is_some(),
                l.state.inflight(),
            ),
            EventLoop::V3(l, r) => r.feed(
                &mut l.pending,
                l.state.collision.is_some(),
                l.state.inflight(),
            ),
        }
        match self {
            EventLoop::V5(l, resend) => match l.poll().await {
                Ok(v5::Event::Incoming(P5::ConnAck(a))) => {
                    // rumqttc's own window: the broker's Receive Maximum under the client's limit.
                    let broker = a.properties.as_ref().and_then(|p| p.receive_max);
                    let own = l.options.get_outgoing_inflight_upper_limit();
                    let window = broker.unwrap_or(u16::MAX).min(own.unwrap_or(u16::MAX));
                    resend.connected(a.session_present, window);
                    Happening::Connected {
                        session_present: a.session_present,
                        max_packet: a.properties.and_then(|p| p.max_packet_size),
                    }
                }
                Ok(v5::Event::Incoming(P5::Publish(p))) => {
                    let props = p.properties.unwrap_or_default();
                    Happening::Message(Message {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload,
                        qos: qos3(p.qos),
                        dup: p.dup,
                        response_topic: props.response_topic,
                        correlation: props.correlation_data,
                        expiry: props
                            .message_expiry_interval
                            .map(|s| Duration::from_secs(s.into())),
                    })
                }
                Ok(v5::Event::Incoming(P5::UnsubAck(_))) => Happening::Unsubscribed,
                Ok(v5::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => Happening::Disconnected,
                Ok(_) => Happening::Other,
                Err(e) => {
                    let parked = l.state.collision.take().map(v5::Request::Publish);
                    resend.failed(&mut l.pending, parked);
                    Happening::Failed(e.to_string())
                }
            },
            EventLoop::V3(l, resend) => match l.poll().await {
                Ok(rumqttc::Event::Incoming(P3::ConnAck(a))) => {
                    resend.connected(a.session_present, l.mqtt_options.inflight());
                    Happening::Connected {
                        session_present: a.session_present,
                        max_packet: None,
                    }
                }
                Ok(rumqttc::Event::Incoming(P3::Publish(p))) => Happening::Message(Message {
                    topic: p.topic,
                    payload: p.payload,
                    qos: p.qos,
                    dup: p.dup,
                    response_topic: None,
                    correlation: None,
                    expiry: None,
                }),
                Ok(rumqttc::Event::Incoming(P3::UnsubAck(_))) => Happening::Unsubscribed,
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                    Happening::Disconnected
                }
                Ok(_) => Happening::Other,
                Err(e) => {
                    let parked = l.state.collision.take().map(rumqttc::Request::Publish);
                    resend.failed(&mut l.pending, parked);
                    Happening::Failed(e.to_string())
                }
            },
        }
    }

    /// Subscriptions the broker does not have (all, when it kept no session) go before
    /// anything that waits (which `pending` holds back). QoS 2 as the maximum: each request arrives at the
    /// QoS it was sent with, and its replies go out at that QoS (exactly once for QoS 2).
    pub(super) fn subscribe_first(&mut self, filters: &[String]) {
        match self {
            EventLoop::V5(l, _) => {
                for f in filters.iter().rev() {
                    let mut filter = v5::mqttbytes::v5::Filter::new(f.as_str(), QoS5::ExactlyOnce);
                    // A subscription renewed on a kept session gets no retained copies again.
                    filter.retain_forward_rule =
                        v5::mqttbytes::v5::RetainForwardRule::OnNewSubscribe;
                    let s = v5::mqttbytes::v5::Subscribe::new(filter, None);
                    l.pending.push_front(v5::Request::Subscribe(s));
                }
            }
            EventLoop::V3(l, _) => {
                for f in filters.iter().rev() {
                    let s = rumqttc::Subscribe::new(f.as_str(), QoS::ExactlyOnce);
                    l.pending.push_front(rumqttc::Request::Subscribe(s));
                }
            }
        }
    }

    /// Messages from before the last failure still waiting to go out.
    pub(super) fn waiting(&self) -> usize {
        match self {
            EventLoop::V5(_, resend) => resend.len(),
            EventLoop::V3(_, resend) => resend.len(),
        }
    }

    /// Drops publishes left from the last connection that the broker now announces it will
    /// not take (a broker restarted with a lower limit): resent, each would cut the
    /// connection again, forever. Returns how many were dropped.
    pub(super) fn drop_oversized(&mut self, max: usize) -> usize {
        fn keep<R>(
            pending: &mut std::collections::VecDeque<R>,
            fits: impl Fn(&R) -> bool,
        ) -> usize {
            let before = pending.len();
            pending.retain(fits);
            before - pending.len()
        }
        match self {
            EventLoop::V5(l, resend) => {
                let fits = |r: &v5::Request| match r {
                    v5::Request::Publish(p) => p.size() <= max,
                    _ => true,
                };
                keep(&mut l.pending, fits) + resend.retain(fits)
            }
            EventLoop::V3(l, resend) => {
                let fits = |r: &rumqttc::Request| match r {
                    rumqttc::Request::Publish(p) => p.size() <= max,
                    _ => true,
                };
                keep(&mut l.pending, fits) + resend.retain(fits)
            }
        }
    }
}
