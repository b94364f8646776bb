//! `embedding`: tokens (from `texts.rs`, before the queue) → model → pooling → optional L2
//! normalisation.
//!
//! Texts from many requests share one run. Each is padded only to the longest text in the run and
//! masked, so a text's embedding does not depend on what it was batched with. Runs take at most
//! `max_batch` texts, and the worker answers the watchdog's probe between them, so a large
//! request never looks like a wedged worker.

use ort::session::Session;
use ort::value::Tensor as OrtTensor;

use super::classify;
use super::texts::TextEncoder;
use super::Model;
use crate::error::{Error, LoadError, Result};
use crate::manifest::{EmbeddingOptions, Kind, ModelSpec, Pooling};
use crate::work::job::{Classes, EmbedOutput, Job, Reply, TextTokens};
use crate::work::queue::Queue;

pub struct Embedding {
    name: String,
    session: Session,
    opts: EmbeddingOptions,
    max_batch: usize,
    output: String,
    has_token_types: bool,
    /// For `classification`: one name per output logit.
    labels: Vec<String>,
}

/// Where a batch member's answer goes.
enum Responder {
    Embed(Reply<EmbedOutput>),
    Classify { top_k: usize, reply: Reply<Classes> },
}

impl Responder {
    fn fail(self, e: Error) {
        match self {
            Responder::Embed(r) => drop(r.send(Err(e))),
            Responder::Classify { reply, .. } => drop(reply.send(Err(e))),
        }
    }

    fn answer(self, out: EmbedOutput, labels: &[String]) {
        match self {
            Responder::Embed(r) => drop(r.send(Ok(out))),
            Responder::Classify { top_k, reply } => {
                let classes = out
                    .vectors
                    .iter()
                    .map(|v| classify::top_classes(v, labels, top_k))
                    .collect();
                drop(reply.send(Ok(classes)));
            }
        }
    }
}

impl Embedding {
    /// The worker's model, and the encoder the engine tokenizes texts with.
    pub fn new(spec: &ModelSpec, session: Session) -> Result<(Self, TextEncoder), LoadError> {
        let path = spec
            .tokenizer_path
            .clone()
            .ok_or_else(|| LoadError::Graph("embedding model without a tokenizer".into()))?;
        let mut opts = spec.manifest.embedding.clone();
        let classifier = spec.manifest.kind == Kind::Classification;
        if classifier {
            // The graph ends in one logit per label: nothing to pool or normalise.
            opts.pooling = Pooling::None;
            opts.normalize = false;
        }
        let encoder = TextEncoder::new(&path, opts.max_length)?;
        let has = |n: &str| session.inputs().iter().any(|i| i.name() == n);
        for required in ["input_ids", "attention_mask"] {
            if !has(required) {
                return Err(LoadError::Graph(format!(
                    "embedding model has no {required:?} input"
                )));
            }
        }
        let output = match &opts.output {
            Some(o) if session.outputs().iter().any(|x| x.name() == o) => o.clone(),
            Some(o) => {
                return Err(LoadError::Graph(format!(
                    "embedding.output = {o:?} is not an output of the model"
                )))
            }
            None => session
                .outputs()
                .first()
                .map(|o| o.name().to_owned())
                .ok_or_else(|| LoadError::Graph("model has no outputs".into()))?,
        };
        let labels = if classifier {
            let width = session
                .outputs()
                .iter()
                .find(|o| o.name() == output)
                .and_then(|o| match o.dtype() {
                    ort::value::ValueType::Tensor { shape, .. } => shape.last().copied(),
                    _ => None,
                })
                .filter(|&w| w > 0)
                .map(|w| w as usize);
            classify::labels(&spec.dir, &spec.manifest.classification.labels, width)?
        } else {
            Vec::new()
        };
        let model = Embedding {
            labels,
            name: spec.name.clone(),
            has_token_types: has("token_type_ids"),
            max_batch: spec.manifest.batching.max_batch,
            session,
            opts,
            output,
        };
        Ok((model, encoder))
    }

    /// Embeds texts in runs of at most `max_batch`, answering the watchdog's probe between
    /// runs.
    fn embed(&mut self, texts: &[&TextTokens], queue: &Queue<Job>) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.max_batch) {
            out.extend(self.run_chunk(chunk)?);
            queue.heartbeat();
        }
        Ok(out)
    }

    fn run_chunk(&mut self, texts: &[&TextTokens]) -> Result<Vec<Vec<f32>>> {
        let n = texts.len();
        let len = texts.iter().map(|e| e.ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0i64; n * len];
        let mut mask = vec![0i64; n * len];
        let mut types = vec![0i64; n * len];
        for (row, e) in texts.iter().enumerate() {
            for (t, (&id, &ty)) in e.ids.iter().zip(&e.type_ids).enumerate() {
                ids[row * len + t] = id as i64;
                types[row * len + t] = ty as i64;
                mask[row * len + t] = 1;
            }
        }
        let shape = vec![n as i64, len as i64];
        let mut inputs = vec![
            (
                "input_ids",
                OrtTensor::from_array((shape.clone(), ids))?.into_dyn(),
            ),
            (
                "attention_mask",
                OrtTensor::from_array((shape.clone(), mask.clone()))?.into_dyn(),
            ),
        ];
        if self.has_token_types {
            inputs.push((
                "token_type_ids",
                OrtTensor::from_array((shape, types))?.into_dyn(),
            ));
        }
        let outputs = self.session.run(inputs)?;
        let (oshape, data) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| Error::Internal(format!("output {:?}: {e}", self.output)))?;
        pool(self.opts.pooling, oshape, data, &mask, n, len).map(|mut vs| {
            if self.opts.normalize {
                vs.iter_mut().for_each(|v| l2_normalize(v));
            }
            vs
        })
    }

    fn answer(&mut self, jobs: Vec<(Vec<TextTokens>, Responder)>, queue: &Queue<Job>) {
        let all: Vec<&TextTokens> = jobs.iter().flat_map(|(t, _)| t.iter()).collect();
        match self.embed(&all, queue) {
            Ok(vectors) => {
                let mut vectors = vectors.into_iter();
                for (texts, reply) in jobs {
                    let out = EmbedOutput {
                        vectors: vectors.by_ref().take(texts.len()).collect(),
                        truncated: texts.iter().map(|t| t.truncated).collect(),
                        tokens: texts.iter().map(|t| t.ids.len() as u32).collect(),
                    };
                    reply.answer(out, &self.labels);
                }
            }
            Err(e) => {
                tracing::error!(model = %self.name, "embedding run failed: {e}");
                for (_, reply) in jobs {
                    reply.fail(e.clone());
                }
            }
        }
    }
}

/// Pools `[n, len, dim]` hidden states (or passes `[n, dim]` through) into one vector per row.
fn pool(
    pooling: Pooling,
    shape: &[i64],
    data: &[f32],
    mask: &[i64],
    n: usize,
    len: usize,
) -> Result<Vec<Vec<f32>>> {
    let bad = || {
        Error::Internal(format!(
            "unexpected embedding output shape {shape:?} for pooling {pooling:?}"
        ))
    };
    match (pooling, shape) {
        (Pooling::None, [rows, dim]) if *rows as usize == n => {
            Ok(data.chunks(*dim as usize).map(<[f32]>::to_vec).collect())
        }
        (Pooling::Mean | Pooling::Cls, [rows, l, dim])
            if *rows as usize == n && *l as usize == len =>
        {
            let dim = *dim as usize;
            Ok((0..n)
                .map(|r| {
                    let hidden = &data[r * len * dim..(r + 1) * len * dim];
                    if pooling == Pooling::Cls {
                        return hidden[..dim].to_vec();
                    }
                    let mut acc = vec![0f32; dim];
                    let mut count = 0f32;
                    for t in 0..len {
                        if mask[r * len + t] != 0 {
                            count += 1.0;
                            acc.iter_mut()
                                .zip(&hidden[t * dim..(t + 1) * dim])
                                .for_each(|(a, h)| *a += h);
                        }
                    }
                    acc.iter_mut().for_each(|a| *a /= count.max(1.0));
                    acc
                })
                .collect())
        }
        _ => Err(bad()),
    }
}

fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

impl Model for Embedding {
    fn compatible(&self, _: &Job, _: &Job) -> bool {
        true
    }

    fn run(&mut self, batch: Vec<Job>, queue: &Queue<Job>) {
        let mut jobs = Vec::with_capacity(batch.len());
        for job in batch {
            match job {
                Job::Embed { texts, reply } if self.labels.is_empty() => {
                    jobs.push((texts, Responder::Embed(reply)))
                }
                Job::Classify {
                    texts,
                    top_k,
                    reply,
                } if !self.labels.is_empty() => {
                    jobs.push((texts, Responder::Classify { top_k, reply }))
                }
                other => {
                    let method = if self.labels.is_empty() {
                        "Embed"
                    } else {
                        "Classify"
                    };
                    let msg = format!(
                        "model {:?} does not serve this request; use {method}",
                        self.name
                    );
                    crate::work::queue::Queued::fail(other, Error::InvalidInput(msg))
                }
            }
        }
        self.answer(jobs, queue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pooling_ignores_padding() {
        // Two rows, len 3, dim 2; row 1 has one padded position holding garbage.
        let data = [1., 2., 3., 4., 0., 0., 5., 6., 7., 8., 99., 99.];
        let mask = [1, 1, 0, 1, 1, 0];
        let v = pool(Pooling::Mean, &[2, 3, 2], &data, &mask, 2, 3).unwrap();
        assert_eq!(v, vec![vec![2., 3.], vec![6., 7.]]);
        let c = pool(Pooling::Cls, &[2, 3, 2], &data, &mask, 2, 3).unwrap();
        assert_eq!(c, vec![vec![1., 2.], vec![5., 6.]]);
        assert!(pool(Pooling::None, &[2, 3, 2], &data, &mask, 2, 3).is_err());
    }

    #[test]
    fn normalizes_to_unit_length() {
        let mut v = vec![3., 4.];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0., 0.];
        l2_normalize(&mut z);
        assert_eq!(z, vec![0., 0.]);
    }
}
