//! Takes each delivered message: `intake.rs` decides, this runs what it lets in on its own task
//! (so the next message is taken at once) and publishes the answers. An answer the broker would
//! refuse is never sent: a final answer too large becomes a `too_large` error answer, and a
//! stream whose piece is too large ends with one.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures_util::FutureExt;
use tokio::sync::mpsc::UnboundedReceiver;

use super::intake::{Decision, Intake, Run};
use super::link::{Client, Message, Out, PublishError};
use super::ops::{self, Call};
use super::routes::Router;
use super::topics::Op;
use super::wire::{self, WireError};
use crate::engine::Engine;
use crate::work::job::{Channel, Event, FinishReason, Priority, Ticket, Transport, Usage};

pub struct Handler {
    engine: Engine,
    client: Client,
    intake: Mutex<Intake>,
    router: Arc<Router>,
}

/// A stream's text gathered by channel, for the answer a duplicate gets.
#[derive(Default)]
struct Gathered {
    reasoning: String,
    content: String,
    tool_calls: Vec<String>,
}

impl Handler {
    pub fn new(engine: Engine, client: Client, intake: Intake, router: Arc<Router>) -> Self {
        Handler {
            engine,
            client,
            intake: Mutex::new(intake),
            router,
        }
    }

    fn intake(&self) -> MutexGuard<'_, Intake> {
        self.intake.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn handle(self: &Arc<Self>, m: Message) {
        let decision = self.intake().take(&m, Instant::now());
        match decision {
            Decision::NotOurs if self.router.dispatch(&m) => {}
            Decision::NotOurs => {
                tracing::debug!(topic = %m.topic, "ignored a message on an unknown topic")
            }
            Decision::Nothing => {}
            // Best effort: refusals never wait for room, so a flood of them cannot pile up.
            Decision::Reject(out) => {
                if let Err(e) = self.client.try_publish(out) {
                    tracing::warn!("cannot send an MQTT error answer: {e}");
                }
            }
            // Best effort too: a client repeating an answered request must not pile up tasks
            // that each hold a copy of the answer.
            Decision::Replay(outs) => {
                for o in outs.iter() {
                    if let Err(e) = self.client.try_publish(o.clone()) {
                        tracing::debug!("a repeated answer was not sent: {e}");
                    }
                }
            }
            Decision::Run(run) => {
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    // A panic must still end the request, or its in-flight place and cancel
                    // entry would stay taken for good.
                    let ran = AssertUnwindSafe(this.run(&run)).catch_unwind().await;
                    let answer: Arc<[Out]> = match ran {
                        Ok(outs) => outs.into(),
                        Err(_) => {
                            tracing::error!(request_id = %run.req.id, "an MQTT request panicked");
                            let e = WireError::new("internal", "the request failed inside inferd");
                            let out = error_answer(&run, &e);
                            this.publish(out.clone()).await;
                            Arc::from(vec![out])
                        }
                    };
                    let owed = this.intake().finish(&run, answer.clone());
                    for _ in 0..owed {
                        this.publish_all(&answer).await;
                    }
                });
            }
        }
    }

    /// Runs one request and publishes its answer; returns what a duplicate is sent.
    async fn run(&self, run: &Run) -> Vec<Out> {
        let req = &run.req;
        let call = Call {
            engine: &self.engine,
            model: &run.model,
            input: &req.input,
            options: &req.options,
            deadline: run.deadline,
            // MQTT is the IoT transport: background unless the request claims (and is granted)
            // otherwise.
            ticket: Ticket::new(req.id.clone(), Transport::Mqtt, Priority::Background)
                // MQTT does not say who published; the reply topic is who hears the answer.
                .with_caller(format!("reply:{}", run.reply.topic)),
        };
        // The last message to send, and what a duplicate gets if it is sent as it is.
        let answer = if req.stream && matches!(run.op, Op::Generate | Op::Chat) {
            match call
                .start_generation(run.op, true, run.cancel.clone())
                .await
            {
                Ok(rx) => self.stream(run, rx).await,
                Err(e) => Err(e),
            }
        } else {
            call.run(run.op, run.cancel.clone())
                .await
                .map(|(result, usage)| {
                    let out = run.reply.out(wire::ok(&req.id, result, usage), "ok");
                    (out.clone(), vec![out])
                })
        };
        let (last, replay) = answer.unwrap_or_else(|e| {
            tracing::info!(request_id = %req.id, model = %run.model, code = e.code, "request failed: {}", e.message);
            let out = error_answer(run, &e);
            (out.clone(), vec![out])
        });
        match self.send_final(run, last).await {
            None => replay,
            Some(instead) => vec![instead],
        }
    }

    /// Publishes each piece as it comes (`seq` 0, 1, …); returns the final `done`, unsent, and
    /// what a duplicate gets: the text in one piece per channel and its own `done`.
    async fn stream(
        &self,
        run: &Run,
        mut rx: UnboundedReceiver<Event>,
    ) -> Result<(Out, Vec<Out>), WireError> {
        let id = &run.req.id;
        let mut seq = 0u64;
        let mut text = Gathered::default();
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Delta { text: t, channel } => {
                    let out = run.reply.out(wire::delta(id, seq, &t, channel), "ok");
                    seq += 1;
                    match channel {
                        Channel::Reasoning => text.reasoning.push_str(&t),
                        Channel::Content => text.content.push_str(&t),
                        Channel::ToolCall => text.tool_calls.push(t),
                    }
                    match self.client.publish(out).await {
                        Ok(()) => {}
                        Err(PublishError::TooLarge { size, max }) => {
                            run.cancel.cancel();
                            return Err(too_large(size, max));
                        }
                        Err(e) => {
                            tracing::warn!(request_id = %id, "cannot queue an MQTT reply: {e}")
                        }
                    }
                }
                Event::Finished { reason, usage } => {
                    let done = run.reply.out(wire::done(id, seq, reason, &usage), "ok");
                    let mut again = replay(run, &text, reason, &usage);
                    // The text in one piece may not fit where each delta did.
                    if let Some(Err(PublishError::TooLarge { size, max })) = again
                        .iter()
                        .map(|o| self.client.fits(o))
                        .find(Result::is_err)
                    {
                        again = vec![error_answer(run, &too_large(size, max))];
                    }
                    return Ok((done, again));
                }
                Event::Failed(e) => return Err(e.into()),
            }
        }
        Err(ops::ended())
    }

    /// Publishes a request's last message. One too large for the broker is replaced by a
    /// `too_large` error answer, which is returned.
    async fn send_final(&self, run: &Run, out: Out) -> Option<Out> {
        match self.client.publish(out).await {
            Ok(()) => None,
            Err(PublishError::TooLarge { size, max }) => {
                let e = too_large(size, max);
                tracing::warn!(request_id = %run.req.id, "answer not sent: {}", e.message);
                let small = error_answer(run, &e);
                self.publish(small.clone()).await;
                Some(small)
            }
            Err(e) => {
                tracing::warn!(request_id = %run.req.id, "cannot queue an MQTT reply: {e}");
                None
            }
        }
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
}

fn error_answer(run: &Run, e: &WireError) -> Out {
    run.reply.out(wire::failed(Some(&run.req.id), e), e.code)
}

fn too_large(size: usize, max: usize) -> WireError {
    WireError::new(
        "too_large",
        format!("the answer is {size} bytes, over the broker's maximum packet size of {max}"),
    )
}

/// A finished stream as a duplicate receives it: reasoning and content each in one piece,
/// each tool call in its own, then `done`, numbered from 0 like any stream.
fn replay(run: &Run, text: &Gathered, reason: FinishReason, usage: &Usage) -> Vec<Out> {
    let id = &run.req.id;
    let pieces = [
        (Channel::Reasoning, &text.reasoning),
        (Channel::Content, &text.content),
    ]
    .into_iter()
    .chain(text.tool_calls.iter().map(|c| (Channel::ToolCall, c)));
    let mut outs: Vec<Out> = pieces
        .filter(|(_, t)| !t.is_empty())
        .enumerate()
        .map(|(seq, (channel, t))| run.reply.out(wire::delta(id, seq as u64, t, channel), "ok"))
        .collect();
    let seq = outs.len() as u64;
    outs.push(run.reply.out(wire::done(id, seq, reason, usage), "ok"));
    outs
}
