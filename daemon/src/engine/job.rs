//! Requests as the engine carries them to a worker, each with the channel its answer goes back on.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use super::queue;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub type Reply<T> = oneshot::Sender<Result<T>>;
pub type Tensors = BTreeMap<String, Tensor>;

#[derive(Debug, Clone)]
pub struct EmbedRequest {
    pub texts: Vec<String>,
    /// When false, a text longer than the model's `max_length` is an error instead of being cut.
    pub truncate: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbedOutput {
    pub vectors: Vec<Vec<f32>>,
    /// Per text: whether it was cut to `max_length`.
    pub truncated: Vec<bool>,
    /// Per text: tokens fed to the model.
    pub tokens: Vec<u32>,
}

pub enum Job {
    Embed {
        req: EmbedRequest,
        reply: Reply<EmbedOutput>,
    },
    Infer {
        inputs: Tensors,
        reply: Reply<Tensors>,
    },
}

impl queue::Job for Job {
    fn is_abandoned(&self) -> bool {
        match self {
            Job::Embed { reply, .. } => reply.is_closed(),
            Job::Infer { reply, .. } => reply.is_closed(),
        }
    }

    fn fail(self, error: Error) {
        // A send error means the caller left; there is nobody to tell.
        match self {
            Job::Embed { reply, .. } => drop(reply.send(Err(error))),
            Job::Infer { reply, .. } => drop(reply.send(Err(error))),
        }
    }

    fn weight(&self) -> usize {
        match self {
            Job::Embed { req, .. } => req.texts.len().max(1),
            Job::Infer { inputs, .. } => inputs
                .values()
                .next()
                .map_or(1, |t| t.rows().max(1) as usize),
        }
    }
}
