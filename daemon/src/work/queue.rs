//! The bounded queue between frontends and a model's worker thread.
//!
//! Admission never waits: a full queue fails the request with `Overloaded` at once. The worker
//! forms batches from the front, skipping requests whose caller has gone and failing those past
//! their deadline, so neither costs a model run.
//!
//! Two lanes, one per priority, each bounded by the capacity, so a flood of background work never
//! shuts out interactive requests. Interactive jobs are taken first; while both lanes wait,
//! background earns `share` of a take per interactive take and is served when it has earned a
//! whole one, so with any share above 0 it never starves.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use super::priority::Priority;
pub use super::stats::Stats;
use crate::error::Error;

/// A unit of work a queue can carry.
pub trait Queued: Send {
    /// True when nobody waits for the answer any more.
    fn is_abandoned(&self) -> bool;
    /// Answers the job with an error.
    fn fail(self, error: Error);
    /// How much of a batch this job fills (texts, rows).
    fn weight(&self) -> usize {
        1
    }
}

struct Entry<J> {
    job: J,
    enqueued: Instant,
    deadline: Option<Instant>,
}

struct State<J> {
    /// Indexed by `Priority as usize`: interactive, background.
    lanes: [VecDeque<Entry<J>>; 2],
    /// Takes background has earned while interactive went first.
    credit: f64,
    closed: bool,
    /// The health probe waiting for the worker, and when it was issued.
    probe: Option<Instant>,
    /// The worker is inside one run that cannot be split, allowed to last until then: the
    /// probe counts as answered meanwhile.
    running_until: Option<Instant>,
}

pub struct Queue<J> {
    model: String,
    capacity: usize,
    /// The least share of takes background gets while interactive work waits.
    share: f64,
    state: Mutex<State<J>>,
    ready: Condvar,
    /// Shared with the model's slot so counts survive a reload.
    pub stats: Arc<Stats>,
}

/// A run in progress (see `Queue::running`).
pub struct Running<'a, J: Queued>(&'a Queue<J>);

impl<J: Queued> Drop for Running<'_, J> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.running_until = None;
        st.probe = None;
    }
}

/// How a worker wants its batches cut.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_batch: usize,
    pub max_wait: Duration,
}

impl<J: Queued> Queue<J> {
    pub fn new(model: &str, capacity: usize, share: f64, stats: Arc<Stats>) -> Self {
        Queue {
            model: model.to_owned(),
            capacity,
            share: share.clamp(0.0, 1.0),
            state: Mutex::new(State {
                lanes: Default::default(),
                credit: 0.0,
                closed: false,
                probe: None,
                running_until: None,
            }),
            ready: Condvar::new(),
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Overloaded` when a job of `priority` would be refused now: checked before a request is
    /// tokenized, so a full queue costs a flood nothing. `push` checks again.
    pub fn admits(&self, priority: Priority) -> Result<(), Error> {
        let lane = priority as usize;
        let mut st = self.lock();
        if st.lanes[lane].len() >= self.capacity {
            self.prune(&mut st, Instant::now());
        }
        if st.lanes[lane].len() < self.capacity {
            return Ok(());
        }
        drop(st);
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        Err(self.overloaded())
    }

    fn overloaded(&self) -> Error {
        Error::Overloaded {
            model: self.model.clone(),
            capacity: self.capacity,
        }
    }

    /// Enqueues or refuses at once. The job is handed back with the error so it can be answered.
    pub fn push(
        &self,
        job: J,
        priority: Priority,
        deadline: Option<Instant>,
    ) -> Result<(), (J, Error)> {
        let lane = priority as usize;
        let mut st = self.lock();
        if st.closed {
            return Err((job, Error::ShuttingDown));
        }
        if st.lanes[lane].len() >= self.capacity {
            // Callers that left or timed out must not keep live ones out.
            self.prune(&mut st, Instant::now());
        }
        if st.lanes[lane].len() >= self.capacity {
            drop(st);
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err((job, self.overloaded()));
        }
        st.lanes[lane].push_back(Entry {
            job,
            enqueued: Instant::now(),
            deadline,
        });
        drop(st);
        self.ready.notify_one();
        Ok(())
    }

    /// The watchdog's health probe: the worker answers it whenever it comes back to the queue
    /// (between batches, between decode steps, or at once when idle). Returns how long the
    /// previous probe has gone unanswered, or `None` if it was answered and a new one is out.
    pub fn probe(&self) -> Option<Duration> {
        let mut st = self.lock();
        let now = Instant::now();
        if st.running_until.is_some_and(|until| now < until) {
            st.probe = None;
        }
        if let Some(issued) = st.probe {
            return Some(issued.elapsed());
        }
        st.probe = Some(Instant::now());
        drop(st);
        self.ready.notify_all();
        None
    }

    /// Answers the health probe; workers that do not take from the queue on every step (a
    /// generation worker with every slot full) call this once per step, and long work between
    /// its pieces.
    pub fn heartbeat(&self) {
        self.lock().probe = None;
    }

    /// Marks the start of one run that cannot be split into pieces: for up to `grace` the
    /// probe counts as answered; past it the worker counts as wedged. Ends when the returned
    /// guard drops.
    pub fn running(&self, grace: Duration) -> Running<'_, J> {
        let mut st = self.lock();
        st.running_until = Some(Instant::now() + grace);
        st.probe = None;
        Running(self)
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Requests waiting now.
    pub fn depth(&self) -> usize {
        let st = self.lock();
        st.lanes[0].len() + st.lanes[1].len()
    }

    /// Live requests of one priority waiting now (those whose caller left or whose deadline
    /// passed are dropped first, so they never make a worker pause anything).
    pub fn waiting(&self, priority: Priority) -> usize {
        let mut st = self.lock();
        self.prune(&mut st, Instant::now());
        st.lanes[priority as usize].len()
    }

    /// Stops admission; queued jobs are still handed out until none are left.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Fails expired entries and drops abandoned ones anywhere in the queue.
    fn prune(&self, st: &mut State<J>, now: Instant) {
        for lane in &mut st.lanes {
            self.prune_lane(lane, now);
        }
    }

    fn prune_lane(&self, lane: &mut VecDeque<Entry<J>>, now: Instant) {
        let mut kept = VecDeque::with_capacity(lane.len());
        for e in lane.drain(..) {
            // Deadline first: a caller that gave up at its deadline counts as a timeout.
            if e.deadline.is_some_and(|d| d <= now) {
                self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                e.job.fail(Error::Timeout {
                    model: self.model.clone(),
                    waited_ms: now.duration_since(e.enqueued).as_millis(),
                });
            } else if e.job.is_abandoned() {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            } else {
                kept.push_back(e);
            }
        }
        *lane = kept;
    }

    /// The lane the next take comes from: interactive first, background when it is alone or
    /// has earned its share.
    fn pick(&self, st: &mut State<J>) -> Option<usize> {
        match (st.lanes[0].is_empty(), st.lanes[1].is_empty()) {
            (true, true) => None,
            (false, true) => Some(0),
            (true, false) => {
                st.credit = 0.0;
                Some(1)
            }
            // The epsilon: ten shares of 0.1 add up to 0.999….
            (false, false) if st.credit >= 1.0 - 1e-9 => {
                st.credit = (st.credit - 1.0).max(0.0);
                Some(1)
            }
            (false, false) => {
                st.credit += self.share;
                Some(0)
            }
        }
    }

    fn pop(&self, st: &mut State<J>) -> Option<J> {
        let lane = self.pick(st)?;
        st.lanes[lane].pop_front().map(|e| e.job)
    }

    /// Takes up to `max` live jobs without waiting; for workers that keep running jobs between
    /// calls (generation admits new sequences between decode steps).
    pub fn try_take(&self, max: usize) -> Vec<J> {
        let mut st = self.lock();
        st.probe = None;
        self.prune(&mut st, Instant::now());
        (0..max).map_while(|_| self.pop(&mut st)).collect()
    }

    /// Like `try_take`, from one lane only.
    pub fn try_take_lane(&self, priority: Priority, max: usize) -> Vec<J> {
        let mut st = self.lock();
        st.probe = None;
        self.prune(&mut st, Instant::now());
        let lane = &mut st.lanes[priority as usize];
        let n = max.min(lane.len());
        lane.drain(..n).map(|e| e.job).collect()
    }

    /// Blocks until at least one live job exists, then gathers compatible jobs up to the batch
    /// size (interactive ones first), waiting at most `max_wait` for more. `None` once closed
    /// and drained.
    pub fn next_batch(
        &self,
        policy: BatchPolicy,
        compatible: impl Fn(&J, &J) -> bool,
    ) -> Option<Vec<J>> {
        let mut st = self.lock();
        let first = loop {
            st.probe = None;
            self.prune(&mut st, Instant::now());
            if let Some(first) = self.pop(&mut st) {
                break first;
            }
            if st.closed {
                return None;
            }
            st = self.ready.wait(st).unwrap_or_else(|p| p.into_inner());
        };
        let mut weight = first.weight();
        let mut batch = vec![first];
        let until = Instant::now() + policy.max_wait;
        loop {
            for lane in 0..2 {
                let mut i = 0;
                while i < st.lanes[lane].len() && weight < policy.max_batch {
                    let e = &st.lanes[lane][i];
                    if compatible(&batch[0], &e.job) && weight + e.job.weight() <= policy.max_batch
                    {
                        weight += e.job.weight();
                        batch.extend(st.lanes[lane].remove(i).map(|e| e.job));
                    } else {
                        i += 1;
                    }
                }
            }
            let now = Instant::now();
            if weight >= policy.max_batch || now >= until || st.closed {
                break;
            }
            st = self
                .ready
                .wait_timeout(st, until - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            self.prune(&mut st, Instant::now());
        }
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;
    const I: Priority = Priority::Interactive;
    const B: Priority = Priority::Background;

    /// A fake job: the model is not needed to test admission and batching.
    #[derive(Debug)]
    struct Fake {
        id: u32,
        group: u32,
        reply: oneshot::Sender<Result<u32, Error>>,
    }

    impl Queued for Fake {
        fn is_abandoned(&self) -> bool {
            self.reply.is_closed()
        }
        fn fail(self, error: Error) {
            let _ = self.reply.send(Err(error));
        }
    }

    fn job(id: u32, group: u32) -> (Fake, oneshot::Receiver<Result<u32, Error>>) {
        let (tx, rx) = oneshot::channel();
        (
            Fake {
                id,
                group,
                reply: tx,
            },
            rx,
        )
    }

    const NOW: BatchPolicy = BatchPolicy {
        max_batch: 4,
        max_wait: Duration::ZERO,
    };

    #[test]
    fn an_idle_worker_answers_probes_and_a_busy_one_does_not() {
        let q = Arc::new(Queue::<Fake>::new("m", 8, 0.0, Default::default()));
        let q2 = q.clone();
        let worker = std::thread::spawn(move || q2.next_batch(NOW, |_, _| true).map(|b| b.len()));
        assert_eq!(q.probe(), None, "the first probe is issued");
        let deadline = Instant::now() + Duration::from_secs(5);
        // The idle worker wakes for the probe and answers it.
        while q.probe().is_some() {
            assert!(Instant::now() < deadline, "the idle worker never answered");
            std::thread::sleep(Duration::from_millis(5));
        }
        let (a, _ra) = job(1, 0);
        q.push(a, I, None).unwrap();
        assert_eq!(worker.join().unwrap(), Some(1));
        // Nobody takes from the queue now: the probe stays unanswered and ages.
        let _ = q.probe();
        std::thread::sleep(Duration::from_millis(20));
        assert!(q
            .probe()
            .is_some_and(|age| age >= Duration::from_millis(20)));
        q.heartbeat();
        assert_eq!(q.probe(), None);
    }

    #[test]
    fn a_long_run_answers_probes_until_its_grace_ends() {
        let q = Queue::<Fake>::new("m", 8, 0.0, Default::default());
        let run = q.running(Duration::from_millis(50));
        let _ = q.probe();
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(
            q.probe(),
            None,
            "within its grace the run counts as an answer"
        );
        std::thread::sleep(Duration::from_millis(60));
        let _ = q.probe();
        std::thread::sleep(Duration::from_millis(5));
        assert!(q.probe().is_some(), "past its grace the worker is wedged");
        drop(run);
        assert_eq!(q.probe(), None, "the run's end answers");
    }

    #[test]
    fn full_queue_refuses_at_once() {
        let q = Queue::new("m", 1, 0.0, Default::default());
        let (a, _ra) = job(1, 0);
        let (b, _rb) = job(2, 0);
        assert!(q.push(a, I, None).is_ok());
        let (_, e) = q.push(b, I, None).unwrap_err();
        assert!(matches!(e, Error::Overloaded { capacity: 1, .. }));
        assert_eq!(q.stats.rejected.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn abandoned_jobs_are_skipped() {
        let q = Queue::new("m", 8, 0.0, Default::default());
        let (a, ra) = job(1, 0);
        let (b, _rb) = job(2, 0);
        q.push(a, I, None).unwrap();
        q.push(b, I, None).unwrap();
        drop(ra);
        let batch = q.next_batch(NOW, |_, _| true).unwrap();
        assert_eq!(batch.iter().map(|j| j.id).collect::<Vec<_>>(), [2]);
        assert_eq!(q.stats.skipped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn expired_jobs_fail_with_timeout() {
        let q = Queue::new("m", 8, 0.0, Default::default());
        let (a, mut ra) = job(1, 0);
        let (b, _rb) = job(2, 0);
        q.push(a, I, Some(Instant::now())).unwrap();
        q.push(b, I, None).unwrap();
        let batch = q.next_batch(NOW, |_, _| true).unwrap();
        assert_eq!(batch.len(), 1);
        assert!(matches!(ra.try_recv().unwrap(), Err(Error::Timeout { .. })));
    }

    #[test]
    fn batches_take_only_compatible_jobs_in_order() {
        let q = Queue::new("m", 8, 0.0, Default::default());
        let mut rxs = Vec::new();
        for (id, group) in [(1, 0), (2, 1), (3, 0), (4, 0), (5, 0), (6, 0)] {
            let (j, rx) = job(id, group);
            q.push(j, I, None).unwrap();
            rxs.push(rx);
        }
        let same = |a: &Fake, b: &Fake| a.group == b.group;
        let ids = |b: Vec<Fake>| b.iter().map(|j| j.id).collect::<Vec<_>>();
        assert_eq!(ids(q.next_batch(NOW, same).unwrap()), [1, 3, 4, 5]);
        assert_eq!(ids(q.next_batch(NOW, same).unwrap()), [2]);
        assert_eq!(ids(q.next_batch(NOW, same).unwrap()), [6]);
    }

    #[test]
    fn waits_for_a_batch_to_fill_then_drains_after_close() {
        let q = Arc::new(Queue::new("m", 8, 0.0, Default::default()));
        let (a, _ra) = job(1, 0);
        q.push(a, I, None).unwrap();
        let q2 = q.clone();
        let pusher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let (b, rb) = job(2, 0);
            q2.push(b, I, None).unwrap();
            rb
        });
        let policy = BatchPolicy {
            max_batch: 2,
            max_wait: Duration::from_secs(5),
        };
        let batch = q.next_batch(policy, |_, _| true).unwrap();
        assert_eq!(batch.len(), 2);
        let _rb = pusher.join().unwrap();
        let (c, _rc) = job(3, 0);
        q.push(c, I, None).unwrap();
        q.close();
        let (d, _rd) = job(4, 0);
        assert!(matches!(q.push(d, I, None), Err((_, Error::ShuttingDown))));
        assert_eq!(q.next_batch(policy, |_, _| true).unwrap().len(), 1);
        assert!(q.next_batch(policy, |_, _| true).is_none());
    }

    /// Queues a job for each id in `ids`; their answers' receivers, which must stay alive.
    fn fill(
        q: &Queue<Fake>,
        ids: std::ops::Range<u32>,
        lane: Priority,
    ) -> Vec<oneshot::Receiver<Result<u32, Error>>> {
        ids.map(|id| {
            let (j, rx) = job(id, 0);
            q.push(j, lane, None).unwrap();
            rx
        })
        .collect()
    }

    #[test]
    fn interactive_goes_first_and_background_gets_its_share() {
        let q = Queue::new("m", 64, 0.25, Default::default());
        let _waiting = [fill(&q, 0..8, B), fill(&q, 100..112, I)];
        let order: Vec<u32> = q.try_take(20).into_iter().map(|j| j.id).collect();
        // One background take per four interactive ones while both wait, then the rest.
        assert_eq!(
            order,
            [100, 101, 102, 103, 0, 104, 105, 106, 107, 1, 108, 109, 110, 111, 2, 3, 4, 5, 6, 7]
        );
    }

    #[test]
    fn a_background_flood_does_not_shut_out_interactive() {
        let q = Queue::new("m", 2, 0.1, Default::default());
        let _waiting = fill(&q, 0..2, B);
        let (j, _r) = job(9, 0);
        assert!(matches!(
            q.push(j, B, None),
            Err((_, Error::Overloaded { .. }))
        ));
        let (j, _r) = job(10, 0);
        assert!(q.push(j, I, None).is_ok(), "each lane has its own capacity");
        assert_eq!((q.waiting(I), q.waiting(B), q.depth()), (1, 2, 3));
        let batch = q.next_batch(NOW, |_, _| true).unwrap();
        assert_eq!(batch.iter().map(|j| j.id).collect::<Vec<_>>(), [10, 0, 1]);
    }

    #[test]
    fn with_no_share_background_waits_for_interactive() {
        let q = Queue::new("m", 8, 0.0, Default::default());
        let (b, _rb) = job(1, 0);
        let (i, _ri) = job(2, 0);
        q.push(b, B, None).unwrap();
        q.push(i, I, None).unwrap();
        assert_eq!(q.try_take_lane(B, 4).len(), 1);
        assert_eq!(q.try_take(4).iter().map(|j| j.id).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn a_share_of_a_tenth_is_one_take_in_eleven() {
        let q = Queue::new("m", 64, 0.1, Default::default());
        let _waiting = [fill(&q, 0..2, B), fill(&q, 100..130, I)];
        let order: Vec<u32> = q.try_take(32).into_iter().map(|j| j.id).collect();
        let first_background = order.iter().position(|&id| id < 100).unwrap();
        assert_eq!(first_background, 10, "{order:?}");
        assert_eq!(order[21], 1, "{order:?}");
    }
}
