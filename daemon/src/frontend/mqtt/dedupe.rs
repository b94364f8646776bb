//! Exactly one run per request. A request is known by a digest of itself: its reply topic and
//! correlation data, its `id`, model, op and payload. A second delivery of the same request
//! within the window is not run again; a client that sent it twice is answered twice (a
//! duplicate of a request still running gets its answer when it ends, one of a request already
//! answered gets the same answer again), while a broker's redelivery of the same packet (DUP
//! set) is owed nothing more. A different request that reuses an `id` and reply topic is a
//! different request: it runs.
//!
//! What is kept is bounded. Running requests are bounded by `mqtt.max_in_flight`; answers are
//! kept for `mqtt.dedupe_window_s` and within `mqtt.dedupe_bytes`, oldest first out, and only
//! what a duplicate needs: the final answer (a streamed one with its text in one piece).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::link::Out;

/// A request's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

impl Key {
    /// The digest of everything that makes two deliveries the same request. Each part is
    /// length-prefixed, so no two different requests can run together into one.
    pub fn of(parts: &[&[u8]]) -> Key {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        Key(h.finalize().into())
    }
}

enum State {
    /// Running; this many copies of the answer are owed to duplicates.
    Running { waiting: usize },
    /// Answered at `at`; `bytes` counts against the byte bound.
    Done {
        answer: Arc<[Out]>,
        at: Instant,
        bytes: usize,
    },
}

pub enum Seen {
    /// First time: run it.
    New,
    /// Nothing to do now: it is running (an answer owed to this copy goes out when it ends),
    /// or this is a broker redelivery of a request already answered.
    Skip,
    /// Answered already: send this again.
    Done(Arc<[Out]>),
}

pub struct Dedupe {
    window: Duration,
    max_bytes: usize,
    entries: HashMap<Key, State>,
    /// Answered requests, oldest first, with when they were answered (a key answered again
    /// later is found by that time, and its stale place here is skipped).
    order: VecDeque<(Instant, Key)>,
    bytes: usize,
    running: usize,
}

/// At most this many extra copies of an answer go to duplicates of a running request, so a
/// client repeating one request cannot make inferd publish without end.
const MAX_OWED: usize = 4;

/// What an entry costs beyond its answer: the key, the map slot and the order slot.
const ENTRY_BYTES: usize = 128;

fn size(answer: &[Out]) -> usize {
    ENTRY_BYTES
        + answer
            .iter()
            .map(|o| {
                o.topic.len() + o.payload.len() + o.correlation.as_ref().map_or(0, |c| c.len())
            })
            .sum::<usize>()
}

impl Dedupe {
    pub fn new(window: Duration, max_bytes: usize) -> Self {
        Dedupe {
            window,
            max_bytes,
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            running: 0,
        }
    }

    /// Forgets answers older than the window, and the oldest ones while over the byte bound.
    /// Each turn removes one entry of `order`, so this ends after at most its length.
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.order.front() {
            let stale = now.duration_since(at) >= self.window;
            if !stale && self.bytes <= self.max_bytes {
                break;
            }
            self.order.pop_front();
            if let Some(State::Done {
                at: done, bytes, ..
            }) = self.entries.get(&key)
            {
                if *done == at {
                    self.bytes -= bytes;
                    self.entries.remove(&key);
                }
            }
        }
    }

    /// `redelivery`: the broker's DUP flag; such a copy is owed nothing more.
    pub fn check(&mut self, key: Key, redelivery: bool) -> Seen {
        self.check_at(key, redelivery, Instant::now())
    }

    fn check_at(&mut self, key: Key, redelivery: bool, now: Instant) -> Seen {
        self.expire(now);
        match self.entries.get_mut(&key) {
            None => {
                self.entries.insert(key, State::Running { waiting: 0 });
                self.running += 1;
                Seen::New
            }
            Some(State::Running { waiting }) => {
                if !redelivery {
                    *waiting = (*waiting + 1).min(MAX_OWED);
                }
                Seen::Skip
            }
            Some(State::Done { .. }) if redelivery => Seen::Skip,
            Some(State::Done { answer, .. }) => Seen::Done(answer.clone()),
        }
    }

    /// Requests running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Forgets a request that was let in but will not run (refused after `check`).
    pub fn abandon(&mut self, key: &Key) {
        if let Some(State::Running { .. }) = self.entries.get(key) {
            self.entries.remove(key);
            self.running -= 1;
        }
    }

    /// Records the answer; returns how many duplicates are owed it again.
    pub fn finish(&mut self, key: &Key, answer: Arc<[Out]>) -> usize {
        self.finish_at(key, answer, Instant::now())
    }

    fn finish_at(&mut self, key: &Key, answer: Arc<[Out]>, now: Instant) -> usize {
        let bytes = size(&answer);
        let before = self.entries.insert(
            *key,
            State::Done {
                answer,
                at: now,
                bytes,
            },
        );
        let owed = match before {
            Some(State::Running { waiting }) => {
                self.running -= 1;
                waiting
            }
            Some(State::Done { bytes, .. }) => {
                self.bytes -= bytes;
                0
            }
            None => 0,
        };
        self.bytes += bytes;
        self.order.push_back((now, *key));
        self.expire(now);
        owed
    }

    /// Bytes the kept answers take.
    #[cfg(test)]
    pub fn kept_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(p: &str) -> Arc<[Out]> {
        Arc::from(vec![Out {
            topic: "r".into(),
            payload: p.as_bytes().to_vec(),
            qos: rumqttc::QoS::AtLeastOnce,
            retain: false,
            correlation: None,
            status: Some("ok"),
        }])
    }

    fn key(s: &str) -> Key {
        Key::of(&[b"r", s.as_bytes()])
    }

    #[test]
    fn duplicates_run_once() {
        let mut d = Dedupe::new(Duration::from_secs(60), 1 << 20);
        let k = key("1");
        assert!(matches!(d.check(k, false), Seen::New));
        assert!(matches!(d.check(k, false), Seen::Skip));
        assert_eq!(d.running(), 1);
        assert_eq!(d.finish(&k, out("a")), 1, "one duplicate waits");
        assert_eq!(d.running(), 0);
        match d.check(k, false) {
            Seen::Done(o) => assert_eq!(o[0].payload, b"a"),
            _ => panic!("answered requests are re-sent"),
        }
        assert!(matches!(d.check(key("2"), false), Seen::New));
        assert!(
            matches!(d.check(k, true), Seen::Skip),
            "a broker redelivery is owed nothing more"
        );
        for _ in 0..100 {
            d.check(key("2"), false);
        }
        assert_eq!(
            d.finish(&key("2"), out("b")),
            MAX_OWED,
            "copies owed are bounded"
        );
    }

    #[test]
    fn the_key_is_the_whole_request() {
        let a = Key::of(&[b"reply", b"id", b"m", b"embed", b"{\"x\":1}"]);
        assert_eq!(a, Key::of(&[b"reply", b"id", b"m", b"embed", b"{\"x\":1}"]));
        for other in [
            Key::of(&[b"reply", b"id", b"m", b"embed", b"{\"x\":2}"]),
            Key::of(&[b"other", b"id", b"m", b"embed", b"{\"x\":1}"]),
            Key::of(&[b"reply", b"id", b"m2", b"embed", b"{\"x\":1}"]),
            Key::of(&[b"reply", b"id", b"m", b"classify", b"{\"x\":1}"]),
            // Parts do not run together.
            Key::of(&[b"repl", b"yid", b"m", b"embed", b"{\"x\":1}"]),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn old_answers_are_forgotten_but_running_ones_are_not() {
        let mut d = Dedupe::new(Duration::ZERO, 1 << 20);
        let (a, b) = (key("a"), key("b"));
        d.check(a, false);
        d.finish(&a, out("x"));
        d.check(b, false);
        assert!(matches!(d.check(a, false), Seen::New), "past the window");
        assert!(matches!(d.check(b, false), Seen::Skip), "still running");
    }

    #[test]
    fn answers_are_bounded_by_bytes_oldest_first() {
        let answer = out(&"x".repeat(1000));
        let one = size(&answer);
        let mut d = Dedupe::new(Duration::from_secs(600), one * 3);
        for i in 0..10 {
            let k = key(&i.to_string());
            d.check(k, false);
            d.finish(&k, answer.clone());
            assert!(d.kept_bytes() <= one * 3);
        }
        assert!(
            matches!(d.check(key("9"), false), Seen::Done(_)),
            "newest kept"
        );
        assert!(matches!(d.check(key("0"), false), Seen::New), "oldest gone");
    }

    #[test]
    fn many_running_requests_never_spin() {
        let mut d = Dedupe::new(Duration::ZERO, 0);
        let later = Instant::now() + Duration::from_secs(1);
        for i in 0..10_000 {
            assert!(matches!(
                d.check_at(key(&i.to_string()), false, later),
                Seen::New
            ));
        }
        assert_eq!(d.running(), 10_000);
        d.abandon(&key("0"));
        assert_eq!(d.running(), 9_999);
        let k = key("1");
        assert_eq!(d.finish_at(&k, out("a"), later), 0);
        assert_eq!(d.kept_bytes(), 0, "a zero byte bound keeps nothing");
    }

    #[test]
    fn an_answer_kept_again_is_not_forgotten_early() {
        let mut d = Dedupe::new(Duration::from_secs(10), 1 << 20);
        let t0 = Instant::now();
        let k = key("k");
        d.check_at(k, false, t0);
        d.finish_at(&k, out("a"), t0);
        // Past the window it runs again, and its new answer counts from then.
        let t1 = t0 + Duration::from_secs(11);
        assert!(matches!(d.check_at(k, false, t1), Seen::New));
        d.finish_at(&k, out("b"), t1);
        assert!(matches!(
            d.check_at(k, false, t1 + Duration::from_secs(5)),
            Seen::Done(_)
        ));
    }
}
