//! Exactly one run per request: a second delivery of a request (the same reply address and `id`
//! within the window) is not run again. A client that sent it twice is answered twice: a
//! duplicate of a request still running gets its answer when it ends, one already answered gets
//! the same answer again. A broker's redelivery of the same packet (DUP set, after a lost
//! acknowledgement) is the same request once more, and its answer is already on the way.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::link::Out;

pub type Key = (String, String);

enum State {
    /// Running; these extra copies of the answer are owed to duplicates.
    Running {
        waiting: usize,
    },
    Done(Vec<Out>),
}

pub enum Seen {
    /// First time: run it.
    New,
    /// Nothing to do now: it is running (an answer owed to this copy goes out when it ends),
    /// or this is a broker redelivery of a request already answered.
    Skip,
    /// Answered already: send these again.
    Done(Vec<Out>),
}

pub struct Dedupe {
    window: Duration,
    max_entries: usize,
    entries: HashMap<Key, State>,
    order: VecDeque<(Instant, Key)>,
}

impl Dedupe {
    pub fn new(window: Duration, max_entries: usize) -> Self {
        Dedupe {
            window,
            max_entries,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < self.window && self.order.len() <= self.max_entries {
                break;
            }
            let (_, key) = self.order.pop_front().expect("checked");
            // A request still running is never forgotten, or its duplicate would run again.
            if matches!(self.entries.get(&key), Some(State::Running { .. })) {
                self.order.push_back((now, key));
                if self.order.len() <= self.max_entries {
                    break;
                }
            } else {
                self.entries.remove(&key);
            }
        }
    }

    /// `redelivery`: the broker's DUP flag; such a copy is owed nothing more.
    pub fn check(&mut self, key: Key, redelivery: bool) -> Seen {
        let now = Instant::now();
        self.expire(now);
        match self.entries.get_mut(&key) {
            None => {
                self.entries
                    .insert(key.clone(), State::Running { waiting: 0 });
                self.order.push_back((now, key));
                Seen::New
            }
            Some(State::Running { waiting }) => {
                if !redelivery {
                    *waiting += 1;
                }
                Seen::Skip
            }
            Some(State::Done(_)) if redelivery => Seen::Skip,
            Some(State::Done(outs)) => Seen::Done(outs.clone()),
        }
    }

    /// Records the answer; returns how many duplicates are owed it again.
    pub fn finish(&mut self, key: &Key, answer: Vec<Out>) -> usize {
        match self.entries.insert(key.clone(), State::Done(answer)) {
            Some(State::Running { waiting }) => waiting,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(p: &str) -> Out {
        Out {
            topic: "r".into(),
            payload: p.as_bytes().to_vec(),
            qos: rumqttc::QoS::AtLeastOnce,
            retain: false,
            correlation: None,
            status: Some("ok"),
        }
    }

    #[test]
    fn duplicates_run_once() {
        let mut d = Dedupe::new(Duration::from_secs(60), 100);
        let k = ("r".to_owned(), "1".to_owned());
        assert!(matches!(d.check(k.clone(), false), Seen::New));
        assert!(matches!(d.check(k.clone(), false), Seen::Skip));
        assert_eq!(d.finish(&k, vec![out("a")]), 1, "one duplicate waits");
        match d.check(k.clone(), false) {
            Seen::Done(o) => assert_eq!(o[0].payload, b"a"),
            _ => panic!("answered requests are re-sent"),
        }
        assert!(matches!(
            d.check(("r".into(), "2".into()), false),
            Seen::New
        ));
        assert!(
            matches!(d.check(k, true), Seen::Skip),
            "a broker redelivery is owed nothing more"
        );
    }

    #[test]
    fn old_answers_are_forgotten_but_running_ones_are_not() {
        let mut d = Dedupe::new(Duration::ZERO, 100);
        let (a, b) = (
            ("r".to_owned(), "a".to_owned()),
            ("r".to_owned(), "b".to_owned()),
        );
        d.check(a.clone(), false);
        d.finish(&a, vec![out("x")]);
        d.check(b.clone(), false);
        assert!(matches!(d.check(a, false), Seen::New), "past the window");
        assert!(matches!(d.check(b, false), Seen::Skip), "still running");
    }
}
