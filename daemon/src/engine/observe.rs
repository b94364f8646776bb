//! Each request's outcome, recorded once: the metrics, the model's `last_error`, and a log
//! line with the request id. A request whose future is dropped (its caller left) counts as
//! `abandoned`.

use super::Engine;
use crate::error::{Error, Result};
use crate::work::job::Ticket;

pub(super) struct Observed<'a> {
    engine: &'a Engine,
    model: &'a str,
    op: &'static str,
    ticket: &'a Ticket,
    done: bool,
}

impl Engine {
    pub(super) fn observe<'a>(
        &'a self,
        model: &'a str,
        op: &'static str,
        ticket: &'a Ticket,
    ) -> Observed<'a> {
        Observed {
            engine: self,
            model,
            op,
            ticket,
            done: false,
        }
    }
}

impl Observed<'_> {
    pub fn finish<T>(mut self, r: Result<T>) -> Result<T> {
        let outcome = match &r {
            Ok(_) => "ok",
            Err(e) => self.failed(e),
        };
        self.record(outcome);
        r
    }

    /// For a generation: a failure before it is queued is its outcome; once queued, its
    /// `Events` record how it ends.
    pub fn until_queued<T>(mut self, r: Result<T>) -> Result<T> {
        match &r {
            Ok(_) => self.done = true,
            Err(e) => {
                let outcome = self.failed(e);
                self.record(outcome);
            }
        }
        r
    }

    fn failed(&self, e: &Error) -> &'static str {
        let (model, id, op) = (self.model, &self.ticket.id, self.op);
        if matches!(e, Error::Internal(_)) {
            tracing::warn!(model, request_id = %id, op, "request failed: {e}");
        } else {
            tracing::debug!(model, request_id = %id, op, "request failed: {e}");
        }
        if let Some(slot) = self.engine.slots().get(model) {
            slot.stats.failed(id, e);
        }
        e.kind()
    }

    fn record(&mut self, outcome: &'static str) {
        self.done = true;
        // Names that are not models would make one series per typo (or per attacker).
        let known = self.engine.slots().contains_key(self.model);
        crate::metrics::get().request(crate::metrics::RequestLabels {
            model: if known { self.model } else { "unknown" }.to_owned(),
            op: self.op,
            transport: self.ticket.transport.as_str(),
            outcome,
        });
    }
}

impl Drop for Observed<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.record("abandoned");
        }
    }
}
