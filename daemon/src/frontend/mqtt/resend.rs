//! What was not yet acknowledged when the broker connection failed goes out again, every
//! message of it, in order.
//!
//! rumqttc 0.25 keeps such messages in its event loop's `pending` list and sends that list
//! first after a reconnect, but without its flow control. The messages it had sent keep their
//! packet ids, at most one window of them, and are safe. A message still in the request
//! channel when the connection failed is drained into `pending` too, and gets its packet id
//! only when sent: when that id is still in flight, rumqttc parks the message as its one
//! "collision", and the next such message overwrites it. The overwritten message is lost
//! without a word, and an answer lost that way is a request never answered. A parked message
//! is also forgotten when the broker kept no session (bytebeamio/rumqtt#1056), and so are the
//! messages that were in flight then.
//!
//! So after each failure only the resends stay in `pending`; the rest waits here and goes
//! back into `pending` one message at a time, once connected, each only when `pending` is
//! empty, the broker's window has room and nothing is parked: the flow control rumqttc applies
//! to its request channel, and the parking spot is never overwritten. `pending` goes before
//! the request channel, so nothing newer overtakes what waits here. (The resends themselves
//! go in packet-id order, which is rumqttc's.)

use std::collections::VecDeque;

/// A request in rumqttc's `pending` list, on either protocol version.
pub trait Pending: Clone + PartialEq {
    /// A message already sent on the failed connection: it holds its packet id, and the
    /// broker expects it again on a resumed session.
    fn is_resend(&self) -> bool;
    /// The same message as a new one (no packet id), for a broker that kept no session;
    /// `None` for what means nothing outside that session (a QoS 2 release).
    fn as_new(&self) -> Option<Self>;
}

/// Messages waiting to go back into rumqttc's `pending` list.
pub struct Resend<R> {
    waiting: VecDeque<R>,
    /// Copies of the resends, for a broker that comes back without the session.
    resends: Vec<R>,
    /// The message last put into `pending` from `waiting`, which may not have been sent.
    fed: Option<R>,
    /// Connected, with the broker's window of unacknowledged messages (its Receive Maximum,
    /// or the client's own limit): nothing is fed while disconnected or past it.
    window: Option<u16>,
}

impl<R: Pending> Default for Resend<R> {
    fn default() -> Self {
        Resend {
            waiting: VecDeque::new(),
            resends: Vec::new(),
            fed: None,
            window: None,
        }
    }
}

impl<R: Pending> Resend<R> {
    /// After a failure: keeps the resends in `pending`, and takes the rest, with the parked
    /// message (it never went out), to send one at a time.
    pub fn failed(&mut self, pending: &mut VecDeque<R>, parked: Option<R>) {
        self.window = None;
        // rumqttc appends to `pending`, so a message fed from here and not yet sent is first.
        let fed = self.fed.take().is_some_and(|f| pending.front() == Some(&f));
        let mut before = Vec::new();
        let mut after = Vec::new();
        let mut resends = VecDeque::new();
        for (i, r) in pending.drain(..).enumerate() {
            if r.is_resend() {
                resends.push_back(r);
            } else if i == 0 && fed {
                before.push(r);
            } else {
                after.push(r);
            }
        }
        // The parked message was sent before anything still in the channel.
        let parked = parked.and_then(|p| if p.is_resend() { p.as_new() } else { Some(p) });
        for r in before.into_iter().rev().chain(parked) {
            self.waiting.push_front(r);
        }
        self.waiting.extend(after);
        self.resends = resends.iter().filter_map(Pending::as_new).collect();
        *pending = resends;
    }

    /// After a reconnect with this window: a broker without the session expects none of the
    /// resends, which rumqttc then dropped, so they go again as new messages, first.
    pub fn connected(&mut self, session_present: bool, window: u16) {
        self.window = Some(window.max(1));
        let resends = std::mem::take(&mut self.resends);
        if !session_present {
            for r in resends.into_iter().rev() {
                self.waiting.push_front(r);
            }
        }
    }

    /// Puts the next waiting message into `pending` when that is safe: connected, `pending`
    /// empty, nothing parked and fewer than the window unacknowledged (`inflight`).
    pub fn feed(&mut self, pending: &mut VecDeque<R>, parked: bool, inflight: u16) {
        let room = self.window.is_some_and(|w| inflight < w);
        if !pending.is_empty() || parked || !room {
            return;
        }
        self.fed = self.waiting.pop_front();
        pending.extend(self.fed.clone());
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Drops waiting messages `keep` refuses (a broker that now takes smaller packets); returns
    /// how many.
    pub fn retain(&mut self, keep: impl Fn(&R) -> bool) -> usize {
        let before = self.waiting.len();
        self.waiting.retain(|r| keep(r));
        before - self.waiting.len()
    }
}

/// The two protocol versions' requests differ only in type.
macro_rules! pending {
    ($request:ty) => {
        impl Pending for $request {
            fn is_resend(&self) -> bool {
                match self {
                    Self::Publish(p) => p.pkid != 0,
                    Self::PubRel(_) => true,
                    _ => false,
                }
            }

            fn as_new(&self) -> Option<Self> {
                match self {
                    Self::Publish(p) => {
                        let mut p = p.clone();
                        p.pkid = 0;
                        p.dup = false;
                        Some(Self::Publish(p))
                    }
                    Self::PubRel(_) => None,
                    r => Some(r.clone()),
                }
            }
        }
    };
}

pending!(rumqttc::v5::Request);
pending!(rumqttc::Request);

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{PubRel, Publish};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::Request;

    fn publish(name: &str, pkid: u16) -> Request {
        let mut p = Publish::new(name, QoS::AtLeastOnce, name.to_owned(), None);
        p.pkid = pkid;
        Request::Publish(p)
    }

    fn names(rs: impl IntoIterator<Item = Request>) -> Vec<String> {
        rs.into_iter()
            .map(|r| match r {
                Request::Publish(p) => {
                    format!("{}:{}", String::from_utf8_lossy(&p.topic), p.pkid)
                }
                Request::PubRel(r) => format!("rel:{}", r.pkid),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Feeds until nothing waits, sending (emptying `pending`) after each message.
    fn drain(r: &mut Resend<Request>, pending: &mut VecDeque<Request>) -> Vec<String> {
        let mut out = names(pending.drain(..));
        loop {
            r.feed(pending, false, 0);
            if pending.is_empty() {
                return out;
            }
            out.extend(names(pending.drain(..)));
        }
    }

    #[test]
    fn only_resends_stay_and_the_rest_goes_one_at_a_time_in_order() {
        let mut r = Resend::default();
        let mut pending: VecDeque<_> = [publish("a", 3), publish("b", 4), publish("c", 0)]
            .into_iter()
            .chain([Request::PubRel(PubRel::new(5, None)), publish("d", 0)])
            .collect();
        r.failed(&mut pending, None);
        assert_eq!(names(pending.clone()), ["a:3", "b:4", "rel:5"]);
        assert_eq!(r.len(), 2);
        pending.clear();
        // Nothing goes while disconnected.
        r.feed(&mut pending, false, 0);
        assert!(pending.is_empty());
        r.connected(true, 20);
        // Nor while a message is parked, or the broker's window is full.
        r.feed(&mut pending, true, 0);
        assert!(pending.is_empty());
        r.feed(&mut pending, false, 20);
        assert!(pending.is_empty());
        r.feed(&mut pending, false, 19);
        assert_eq!(names(pending.clone()), ["c:0"]);
        r.feed(&mut pending, false, 0);
        assert_eq!(pending.len(), 1, "one at a time");
        pending.clear();
        r.feed(&mut pending, false, 0);
        assert_eq!(names(pending.clone()), ["d:0"]);
    }

    #[test]
    fn the_parked_message_goes_before_what_the_channel_held() {
        let mut r = Resend::default();
        let mut pending: VecDeque<_> = [publish("a", 1), publish("c", 0)].into();
        r.failed(&mut pending, Some(publish("b", 1)));
        r.connected(true, 20);
        assert_eq!(drain(&mut r, &mut pending), ["a:1", "b:0", "c:0"]);
    }

    #[test]
    fn a_fed_message_not_yet_sent_keeps_its_place_at_a_second_failure() {
        let mut r = Resend::default();
        let mut pending: VecDeque<_> = [publish("a", 0), publish("b", 0)].into();
        r.failed(&mut pending, None);
        r.connected(true, 20);
        r.feed(&mut pending, false, 0);
        assert_eq!(names(pending.clone()), ["a:0"]);
        // rumqttc appends what was in flight and in the channel behind it.
        pending.extend([publish("x", 2), publish("c", 0)]);
        r.failed(&mut pending, None);
        r.connected(true, 20);
        assert_eq!(drain(&mut r, &mut pending), ["x:2", "a:0", "b:0", "c:0"]);
    }

    #[test]
    fn a_broker_without_the_session_gets_the_resends_again_as_new_messages() {
        let mut r = Resend::default();
        let mut pending: VecDeque<_> = [publish("a", 7), publish("b", 0)].into();
        pending.push_back(Request::PubRel(PubRel::new(8, None)));
        r.failed(&mut pending, None);
        // Connection attempts that fail feed nothing rumqttc could drop at the next CONNACK.
        r.feed(&mut pending, false, 0);
        r.failed(&mut pending, None);
        // rumqttc drops `pending` when the session is gone.
        pending.clear();
        r.connected(false, 20);
        assert_eq!(drain(&mut r, &mut pending), ["a:0", "b:0"]);
    }

    #[test]
    fn a_resumed_session_gets_each_resend_once() {
        let mut r = Resend::default();
        let mut pending: VecDeque<_> = [publish("a", 7), publish("b", 0)].into();
        r.failed(&mut pending, None);
        r.connected(true, 20);
        assert_eq!(drain(&mut r, &mut pending), ["a:7", "b:0"]);
    }
}
