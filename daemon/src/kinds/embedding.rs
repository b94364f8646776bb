//! `embedding`: texts → tokenizer → model → pooling → optional L2 normalisation.
//!
//! Texts from many requests share one run. Each is padded only to the longest text in the run and
//! masked, so a text's embedding does not depend on what it was batched with.

use ort::session::Session;
use ort::value::Tensor as OrtTensor;
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use super::classify;
use super::Model;
use crate::engine::job::{Classes, EmbedOutput, EmbedRequest, Job, Reply};
use crate::error::{Error, LoadError, Result};
use crate::manifest::{EmbeddingOptions, Kind, ModelSpec, Pooling};

pub struct Embedding {
    name: String,
    session: Session,
    tokenizer: Tokenizer,
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
    pub fn new(spec: &ModelSpec, session: Session) -> Result<Self, LoadError> {
        let path = spec
            .tokenizer_path
            .clone()
            .ok_or_else(|| LoadError::Incompatible("embedding model without a tokenizer".into()))?;
        let tok_err = |message: String| LoadError::Tokenizer {
            path: path.clone(),
            message,
        };
        let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| tok_err(e.to_string()))?;
        let mut opts = spec.manifest.embedding.clone();
        let classifier = spec.manifest.kind == Kind::Classification;
        if classifier {
            // The graph ends in one logit per label: nothing to pool or normalise.
            opts.pooling = Pooling::None;
            opts.normalize = false;
        }
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: opts.max_length,
                ..Default::default()
            }))
            .map_err(|e| tok_err(e.to_string()))?;
        tokenizer.with_padding(None);

        let has = |n: &str| session.inputs().iter().any(|i| i.name() == n);
        for required in ["input_ids", "attention_mask"] {
            if !has(required) {
                return Err(LoadError::Incompatible(format!(
                    "embedding model has no {required:?} input"
                )));
            }
        }
        let output = match &opts.output {
            Some(o) if session.outputs().iter().any(|x| x.name() == o) => o.clone(),
            Some(o) => {
                return Err(LoadError::Incompatible(format!(
                    "embedding.output = {o:?} is not an output of the model"
                )))
            }
            None => session
                .outputs()
                .first()
                .map(|o| o.name().to_owned())
                .ok_or_else(|| LoadError::Incompatible("model has no outputs".into()))?,
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
        Ok(Embedding {
            labels,
            name: spec.name.clone(),
            has_token_types: has("token_type_ids"),
            max_batch: spec.manifest.batching.max_batch,
            session,
            tokenizer,
            opts,
            output,
        })
    }

    fn encode(&self, req: &EmbedRequest) -> Result<Vec<Encoding>> {
        let encs = self
            .tokenizer
            .encode_batch(req.texts.clone(), true)
            .map_err(|e| Error::InvalidInput(format!("cannot tokenize: {e}")))?;
        if !req.truncate {
            if let Some(i) = encs.iter().position(|e| !e.get_overflowing().is_empty()) {
                return Err(Error::InvalidInput(format!(
                    "text {i} is longer than the model's max_length of {} tokens and truncate is false",
                    self.opts.max_length
                )));
            }
        }
        Ok(encs)
    }

    /// Embeds encodings in runs of at most `max_batch`.
    fn embed(&mut self, encs: &[&Encoding]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(encs.len());
        for chunk in encs.chunks(self.max_batch) {
            out.extend(self.run_chunk(chunk)?);
        }
        Ok(out)
    }

    fn run_chunk(&mut self, encs: &[&Encoding]) -> Result<Vec<Vec<f32>>> {
        let n = encs.len();
        let len = encs
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut ids = vec![0i64; n * len];
        let mut mask = vec![0i64; n * len];
        let mut types = vec![0i64; n * len];
        for (row, e) in encs.iter().enumerate() {
            for (t, ((&id, &ty), &m)) in e
                .get_ids()
                .iter()
                .zip(e.get_type_ids())
                .zip(e.get_attention_mask())
                .enumerate()
            {
                ids[row * len + t] = id as i64;
                types[row * len + t] = ty as i64;
                mask[row * len + t] = m as i64;
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

    fn answer(&mut self, jobs: Vec<(EmbedRequest, Responder)>) {
        let mut ready = Vec::new();
        for (req, reply) in jobs {
            match self.encode(&req) {
                Ok(encs) => ready.push((encs, reply)),
                Err(e) => reply.fail(e),
            }
        }
        let all: Vec<&Encoding> = ready.iter().flat_map(|(e, _)| e.iter()).collect();
        match self.embed(&all) {
            Ok(vectors) => {
                let mut vectors = vectors.into_iter();
                for (encs, reply) in ready {
                    let out = EmbedOutput {
                        vectors: vectors.by_ref().take(encs.len()).collect(),
                        truncated: encs
                            .iter()
                            .map(|e| !e.get_overflowing().is_empty())
                            .collect(),
                        tokens: encs.iter().map(|e| e.get_ids().len() as u32).collect(),
                    };
                    reply.answer(out, &self.labels);
                }
            }
            Err(e) => {
                tracing::error!(model = %self.name, "embedding run failed: {e}");
                for (_, reply) in ready {
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

    fn run(&mut self, batch: Vec<Job>) {
        let mut jobs = Vec::with_capacity(batch.len());
        for job in batch {
            match job {
                Job::Embed { req, reply } if self.labels.is_empty() => {
                    jobs.push((req, Responder::Embed(reply)))
                }
                Job::Classify { req, top_k, reply } if !self.labels.is_empty() => {
                    jobs.push((req, Responder::Classify { top_k, reply }))
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
                    crate::engine::queue::Job::fail(other, Error::InvalidInput(msg))
                }
            }
        }
        self.answer(jobs);
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
