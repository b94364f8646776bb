//! `tensor`: named tensors in, named tensors out, for any ONNX model.
//!
//! Inputs are checked against the model's declaration by the engine before they are queued.
//! When every input and output has a dynamic first dimension, requests are joined along it into
//! one run and the outputs split back by rows.

use ort::session::Session;

use super::Model;
use crate::error::{Error, LoadError, Result};
use crate::manifest::ModelSpec;
use crate::tensor::{Spec, Tensor};
use crate::work::job::{Job, Reply, Tensors};
use crate::work::queue::Queue;

pub struct TensorModel {
    name: String,
    session: Session,
    batchable: bool,
    /// `execution.max_run_ms`: how long one run may take before the worker counts as wedged.
    max_run: std::time::Duration,
}

/// True when every input and output has the same named symbolic first dimension: only then do
/// rows of different requests stay independent when stacked.
pub fn batchable(inputs: &[Spec], outputs: &[Spec]) -> bool {
    let dim0 = |s: &Spec| {
        (s.shape.first() == Some(&-1))
            .then(|| s.symbols.first().filter(|n| !n.is_empty()).cloned())
            .flatten()
    };
    let mut all = inputs.iter().chain(outputs).map(dim0);
    match all.next() {
        Some(Some(first)) => all.all(|d| d.as_deref() == Some(first.as_str())),
        _ => false,
    }
}

impl TensorModel {
    pub fn new(
        spec: &ModelSpec,
        session: Session,
        inputs: &[Spec],
        outputs: &[Spec],
    ) -> Result<Self, LoadError> {
        if let Some(s) = inputs.iter().chain(outputs).find(|s| s.dtype.is_none()) {
            return Err(LoadError::Graph(format!(
                "{:?} has a type inferd does not support (float32, float16, int64, int32, uint8, bool)",
                s.name
            )));
        }
        Ok(TensorModel {
            name: spec.name.clone(),
            batchable: batchable(inputs, outputs),
            max_run: std::time::Duration::from_millis(spec.manifest.execution.max_run_ms),
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
        let rows: Vec<i64> = jobs.iter().map(|(t, _)| rows(t).unwrap_or(0)).collect();
        let Some(total) = rows.iter().try_fold(0i64, |acc, &r| acc.checked_add(r)) else {
            return Ok(None);
        };
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

/// Rows of a request: the first dimension shared by all its inputs, if they share one.
fn rows(t: &Tensors) -> Option<i64> {
    let mut dims = t.values().map(|x| x.shape.first().copied());
    let first = dims.next()??;
    dims.all(|d| d == Some(first)).then_some(first)
}

/// Same input names, dtypes and trailing dimensions, one row count each: rows can be stacked.
fn stackable(a: &Tensors, b: &Tensors) -> bool {
    rows(a).is_some()
        && rows(b).is_some()
        && a.len() == b.len()
        && a.iter().zip(b).all(|((ka, ta), (kb, tb))| {
            ka == kb && ta.dtype == tb.dtype && ta.shape[1..] == tb.shape[1..]
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

    fn run(&mut self, batch: Vec<Job>, queue: &Queue<Job>) {
        let mut jobs = Vec::with_capacity(batch.len());
        for job in batch {
            match job {
                Job::Infer { inputs, reply } => jobs.push((inputs, reply)),
                other => crate::work::queue::Queued::fail(
                    other,
                    Error::InvalidInput(format!(
                        "model {:?} is a tensor model; use Infer",
                        self.name
                    )),
                ),
            }
        }
        // One run cannot be split: while it lasts (up to `max_run`), it answers the watchdog's
        // probe itself; a run longer than that counts as wedged and stops the pings.
        let _run = queue.running(self.max_run);
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
            queue.heartbeat();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferd_client::DType;

    fn spec(dims: &[i64], syms: &[&str]) -> Spec {
        Spec {
            name: "t".into(),
            dtype: Some(DType::Float32),
            shape: dims.to_vec(),
            symbols: syms.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn only_a_shared_named_first_dimension_batches() {
        let n = spec(&[-1, 3], &["N", ""]);
        assert!(batchable(
            std::slice::from_ref(&n),
            std::slice::from_ref(&n)
        ));
        // q[N, d] and k[M, d] -> scores[N, M]: rows of different callers would mix.
        let m = spec(&[-1, 3], &["M", ""]);
        let scores = spec(&[-1, -1], &["N", "M"]);
        assert!(!batchable(&[n.clone(), m], &[scores]));
        assert!(!batchable(
            &[spec(&[1, 3], &["", ""])],
            std::slice::from_ref(&n)
        ));
        assert!(!batchable(&[spec(&[-1, 3], &["", ""])], &[n]));
    }

    #[test]
    fn requests_whose_inputs_disagree_on_rows_do_not_stack() {
        let t = |shape: Vec<i64>| Tensor {
            dtype: DType::Uint8,
            data: vec![0; shape.iter().product::<i64>() as usize],
            shape,
        };
        let a: Tensors = [
            ("x".to_owned(), t(vec![2, 3])),
            ("y".to_owned(), t(vec![2])),
        ]
        .into();
        let b: Tensors = [
            ("x".to_owned(), t(vec![1, 3])),
            ("y".to_owned(), t(vec![1])),
        ]
        .into();
        let bad: Tensors = [
            ("x".to_owned(), t(vec![1, 3])),
            ("y".to_owned(), t(vec![4])),
        ]
        .into();
        assert!(stackable(&a, &b));
        assert!(!stackable(&a, &bad));
        assert_eq!(rows(&bad), None);
    }
}
