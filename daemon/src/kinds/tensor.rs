//! `tensor`: named tensors in, named tensors out, for any ONNX model.
//!
//! Inputs are checked against the model's declaration by the engine before they are queued.
//! When every input and output has a dynamic first dimension, requests are joined along it into
//! one run and the outputs split back by rows.

use ort::session::Session;

use super::Model;
use crate::engine::job::{Job, Reply, Tensors};
use crate::error::{Error, LoadError, Result};
use crate::manifest::ModelSpec;
use crate::tensor::{Spec, Tensor};

pub struct TensorModel {
    name: String,
    session: Session,
    batchable: bool,
}

/// True when every input and output has a dynamic first dimension.
pub fn batchable(inputs: &[Spec], outputs: &[Spec]) -> bool {
    inputs
        .iter()
        .chain(outputs)
        .all(|s| s.shape.first().is_some_and(|&d| d < 0))
}

impl TensorModel {
    pub fn new(
        spec: &ModelSpec,
        session: Session,
        inputs: &[Spec],
        outputs: &[Spec],
    ) -> Result<Self, LoadError> {
        if let Some(s) = inputs.iter().chain(outputs).find(|s| s.dtype.is_none()) {
            return Err(LoadError::Incompatible(format!(
                "{:?} has a type inferd does not support (float32, float16, int64, int32, uint8, bool)",
                s.name
            )));
        }
        Ok(TensorModel {
            name: spec.name.clone(),
            batchable: batchable(inputs, outputs),
            session,
        })
    }

    fn run_one(&mut self, inputs: &Tensors) -> Result<Tensors> {
        let values = inputs
            .iter()
            .map(|(k, t)| Ok((k.as_str(), t.to_ort()?)))
            .collect::<Result<Vec<_>>>()?;
        let outputs = self.session.run(values)?;
        outputs
            .iter()
            .map(|(name, v)| Ok((name.to_owned(), Tensor::from_ort(name, &v)?)))
            .collect()
    }

    /// One run for all jobs; `None` when the outputs cannot be split back by rows.
    fn run_joined(&mut self, jobs: &[(Tensors, Reply<Tensors>)]) -> Result<Option<Vec<Tensors>>> {
        let rows: Vec<i64> = jobs
            .iter()
            .map(|(t, _)| t.values().next().map_or(0, Tensor::rows))
            .collect();
        let total: i64 = rows.iter().sum();
        let joined: Tensors = jobs[0]
            .0
            .keys()
            .map(|k| {
                let parts: Vec<&Tensor> = jobs.iter().map(|(t, _)| &t[k]).collect();
                (k.clone(), Tensor::concat(&parts))
            })
            .collect();
        let out = self.run_one(&joined)?;
        if out
            .values()
            .any(|t| t.rows() != total || t.shape.is_empty())
        {
            return Ok(None);
        }
        let mut per_job: Vec<Tensors> = vec![Tensors::new(); jobs.len()];
        for (name, t) in out {
            for (slot, piece) in per_job.iter_mut().zip(t.split(&rows)) {
                slot.insert(name.clone(), piece);
            }
        }
        Ok(Some(per_job))
    }
}

/// Same input names, dtypes and trailing dimensions: rows can be stacked.
fn stackable(a: &Tensors, b: &Tensors) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ka, ta), (kb, tb))| {
            ka == kb
                && ta.dtype == tb.dtype
                && !ta.shape.is_empty()
                && ta.shape[1..] == tb.shape[1..]
        })
}

impl Model for TensorModel {
    fn compatible(&self, a: &Job, b: &Job) -> bool {
        match (a, b) {
            (Job::Infer { inputs: x, .. }, Job::Infer { inputs: y, .. }) => {
                self.batchable && stackable(x, y)
            }
            _ => false,
        }
    }

    fn run(&mut self, batch: Vec<Job>) {
        let mut jobs = Vec::with_capacity(batch.len());
        for job in batch {
            match job {
                Job::Infer { inputs, reply } => jobs.push((inputs, reply)),
                Job::Embed { reply, .. } => drop(reply.send(Err(Error::InvalidInput(format!(
                    "model {:?} is a tensor model; use Infer",
                    self.name
                ))))),
            }
        }
        if jobs.len() > 1 {
            match self.run_joined(&jobs) {
                Ok(Some(outs)) => {
                    for ((_, reply), out) in jobs.into_iter().zip(outs) {
                        drop(reply.send(Ok(out)));
                    }
                    return;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(model = %self.name, "joined run failed, running singly: {e}")
                }
            }
        }
        for (inputs, reply) in jobs {
            drop(reply.send(self.run_one(&inputs)));
        }
    }
}
