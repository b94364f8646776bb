//! The request path: from a frontend's call to a job on the model's queue, and its answer
//! back. The request is checked against `[limits]` first; a parked model is loaded again
//! (`ready`); texts and prompts are tokenized on a blocking thread (`prepare`), never on the
//! worker; every outcome is recorded once (`observe.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inferd_client::ModelState;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::slot::Serving;
use super::Engine;
use crate::error::{Error, Result};
use crate::kinds::Prepare;
use crate::manifest::Kind;
use crate::work::job::{
    Classes, EmbedOutput, EmbedRequest, Event, Events, GenerateRequest, Generation, Job,
    PromptTokens, Tensors, TextTokens, Ticket,
};
use crate::work::queue;

impl Engine {
    /// The serving version of a ready model of the given kind.
    fn admit(&self, model: &str, kind: Kind) -> Result<Arc<Serving>> {
        if self.inner.stopping.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        let slots = self.slots();
        let slot = slots
            .get(model)
            .ok_or_else(|| Error::ModelNotFound(model.to_owned()))?;
        let serving = slot.serving(model)?;
        slot.stats.touch();
        let declared = serving.spec.manifest.kind;
        if declared != kind {
            let method = match declared {
                Kind::Embedding => "Embed",
                Kind::Tensor => "Infer",
                Kind::TextGeneration => "a generation method",
                Kind::Classification => "Classify",
            };
            return Err(Error::InvalidInput(format!(
                "model {model:?} is a {} model; use {method}",
                declared.as_str()
            )));
        }
        Ok(serving.clone())
    }

    /// Like `admit`, but a model unloaded to save memory is loaded again first, and the
    /// request waits for it.
    async fn ready(&self, model: &str, kind: Kind) -> Result<Arc<Serving>> {
        let mut changes = self.subscribe();
        let mut woke = false;
        loop {
            let state = {
                let slots = self.slots();
                match slots.get(model) {
                    Some(slot) if slot.parked() => Some(slot.state()),
                    _ => None,
                }
            };
            match state {
                None | Some(ModelState::Ready) => return self.admit(model, kind),
                Some(ModelState::Loading) => {
                    if let Err(broadcast::error::RecvError::Closed) = changes.recv().await {
                        return Err(Error::ShuttingDown);
                    }
                }
                // Its reload failed (the memory budget still does not fit it): say why.
                Some(_) if woke => return self.admit(model, kind),
                Some(_) => match self.wake(model)? {
                    None => woke = true,
                    Some(wait) => tokio::time::sleep(wait).await,
                },
            }
        }
    }

    /// Queues a job on `serving`, with the earlier of the caller's and the model's deadline. A
    /// queue closed by a reload or unload racing this call is retried once on what serves now.
    fn submit(
        &self,
        model: &str,
        serving: Arc<Serving>,
        ticket: &Ticket,
        job: Job,
    ) -> Result<Option<Instant>> {
        let timeout = ticket.timeout;
        let priority = ticket.priority;
        let default = serving
            .spec
            .manifest
            .batching
            .timeout_ms
            .map(Duration::from_millis);
        let deadline = match (timeout, default) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|t| Instant::now() + t);
        match serving.queue.push(job, priority, deadline) {
            Ok(()) => Ok(deadline),
            Err((job, Error::ShuttingDown)) if !self.inner.stopping.load(Ordering::Acquire) => {
                let pushed = match self.admit(model, serving.spec.manifest.kind) {
                    Ok(now) => now.queue.push(job, priority, deadline),
                    Err(e) => Err((job, e)),
                };
                pushed.map_err(|(job, e)| {
                    queue::Queued::fail(job, e.clone());
                    e
                })?;
                Ok(deadline)
            }
            Err((job, e)) => {
                // Answered here so a generation's outcome is recorded like any other.
                queue::Queued::fail(job, e.clone());
                Err(e)
            }
        }
    }

    pub async fn embed(&self, model: &str, req: EmbedRequest, t: &Ticket) -> Result<EmbedOutput> {
        let observed = self.observe(model, "embed", t);
        let work = async {
            self.limits().texts(&req.texts)?;
            let (serving, t) = self.ready_within(model, Kind::Embedding, t).await?;
            let (texts, t) = self.prepare_texts(model, &serving, req, t).await?;
            let (reply, rx) = oneshot::channel();
            let deadline = self.submit(model, serving, &t, Job::Embed { texts, reply })?;
            answer(model, rx, deadline).await
        };
        observed.finish(work.await)
    }

    pub async fn classify(
        &self,
        model: &str,
        req: EmbedRequest,
        top_k: usize,
        t: &Ticket,
    ) -> Result<Classes> {
        let observed = self.observe(model, "classify", t);
        let work = async {
            self.limits().texts(&req.texts)?;
            let (serving, t) = self.ready_within(model, Kind::Classification, t).await?;
            let (texts, t) = self.prepare_texts(model, &serving, req, t).await?;
            let (reply, rx) = oneshot::channel();
            let job = Job::Classify {
                texts,
                top_k,
                reply,
            };
            let deadline = self.submit(model, serving, &t, job)?;
            answer(model, rx, deadline).await
        };
        observed.finish(work.await)
    }

    pub async fn infer(&self, model: &str, inputs: Tensors, t: &Ticket) -> Result<Tensors> {
        let observed = self.observe(model, "infer", t);
        let work = async {
            self.limits().tensors(&inputs)?;
            let (serving, t) = self.ready_within(model, Kind::Tensor, t).await?;
            serving.check_inputs(&inputs)?;
            let (reply, rx) = oneshot::channel();
            let deadline = self.submit(model, serving, &t, Job::Infer { inputs, reply })?;
            answer(model, rx, deadline).await
        };
        observed.finish(work.await)
    }

    /// Queues a generation; its deltas and its end arrive on the returned channel. `cancel`
    /// ends it with finish reason `cancelled` within one decode step. The ticket's timeout
    /// bounds the whole generation, queueing included.
    pub async fn generate(
        &self,
        model: &str,
        req: GenerateRequest,
        t: &Ticket,
        cancel: CancellationToken,
    ) -> Result<mpsc::UnboundedReceiver<Event>> {
        let deadline = t.timeout.map(|d| Instant::now() + d);
        // Until the job is queued; from then on its `Events` record how it ends.
        let observed = self.observe(model, "generate", t);
        let ready = async {
            self.limits().generation(&req)?;
            let (serving, t) = self.ready_within(model, Kind::TextGeneration, t).await?;
            let (prompt, t) = self.prepare_prompt(model, &serving, &req, t).await?;
            Ok((serving, t, prompt))
        };
        let (serving, t, prompt) = observed.until_queued(ready.await)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let job = Job::Generate {
            req: Box::new(Generation {
                prompt,
                options: req.options,
                deadline,
                priority: t.priority,
                caller: t.caller.clone(),
                stream: req.stream,
            }),
            events: Events::new(tx, model, &t),
            cancel,
        };
        // A refused job's `Events` records the outcome as it is answered.
        self.submit(model, serving, &t, job)?;
        Ok(rx)
    }

    async fn prepare_texts(
        &self,
        model: &str,
        serving: &Serving,
        req: EmbedRequest,
        t: Ticket,
    ) -> Result<(Vec<TextTokens>, Ticket)> {
        let Prepare::Texts(encoder) = &serving.info.prepare else {
            return Err(Error::Internal("this model takes no texts".into()));
        };
        serving.queue.admits(t.priority)?;
        let encoder = encoder.clone();
        self.off_worker(model, t, move || encoder.encode(&req))
            .await
    }

    async fn prepare_prompt(
        &self,
        model: &str,
        serving: &Serving,
        req: &GenerateRequest,
        t: Ticket,
    ) -> Result<(PromptTokens, Ticket)> {
        let Prepare::Prompt(encoder) = &serving.info.prepare else {
            return Err(Error::Internal("this model takes no prompt".into()));
        };
        serving.queue.admits(t.priority)?;
        let (encoder, req) = (encoder.clone(), req.clone());
        self.off_worker(model, t, move || encoder.prepare(&req))
            .await
    }

    /// Runs `work` (tokenizing) on a blocking thread, at most one per CPU at a time, within
    /// the ticket's timeout; returns its result and the ticket with the time left. The turn is
    /// held until the work ends, even when the caller stops waiting for it (a timeout, a caller
    /// that left), so abandoned requests cannot pile up tokenizing threads.
    async fn off_worker<T: Send + 'static>(
        &self,
        model: &str,
        mut t: Ticket,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<(T, Ticket)> {
        let started = Instant::now();
        let turns = self.inner.tokenizing.clone();
        let run = async move {
            let turn = turns
                .acquire_owned()
                .await
                .map_err(|_| Error::ShuttingDown)?;
            tokio::task::spawn_blocking(move || {
                let out = work();
                drop(turn);
                out
            })
            .await
            .map_err(|_| Error::Internal("tokenizing panicked".into()))?
        };
        let out = match t.timeout {
            None => run.await?,
            Some(limit) => {
                tokio::time::timeout(limit, run)
                    .await
                    .map_err(|_| Error::Timeout {
                        model: model.to_owned(),
                        waited_ms: limit.as_millis(),
                    })??
            }
        };
        t.timeout = t.timeout.map(|l| l.saturating_sub(started.elapsed()));
        Ok((out, t))
    }

    /// `ready`, within the ticket's timeout; returns the ticket with the time left.
    async fn ready_within(
        &self,
        model: &str,
        kind: Kind,
        t: &Ticket,
    ) -> Result<(Arc<Serving>, Ticket)> {
        let Some(limit) = t.timeout else {
            return Ok((self.ready(model, kind).await?, t.clone()));
        };
        let started = Instant::now();
        let serving = tokio::time::timeout(limit, self.ready(model, kind))
            .await
            .map_err(|_| Error::Timeout {
                model: model.to_owned(),
                waited_ms: limit.as_millis(),
            })??;
        let mut left = t.clone();
        left.timeout = Some(limit.saturating_sub(started.elapsed()));
        Ok((serving, left))
    }
}

/// Waits for the worker's answer, but not past the deadline: a job still queued then is
/// abandoned (the worker skips it), and one already running has its result dropped.
async fn answer<T>(
    model: &str,
    rx: oneshot::Receiver<Result<T>>,
    deadline: Option<Instant>,
) -> Result<T> {
    let started = Instant::now();
    let worker_gone = || {
        Err(Error::Internal(
            "the model's worker stopped without answering".into(),
        ))
    };
    match deadline {
        None => rx.await.unwrap_or_else(|_| worker_gone()),
        Some(d) => match tokio::time::timeout_at(d.into(), rx).await {
            Ok(r) => r.unwrap_or_else(|_| worker_gone()),
            Err(_) => Err(Error::Timeout {
                model: model.to_owned(),
                waited_ms: started.elapsed().as_millis(),
            }),
        },
    }
}
