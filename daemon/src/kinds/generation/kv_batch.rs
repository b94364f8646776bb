//! The shared KV cache of continuous batching: one `[rows, kv_heads, len, head_dim]` tensor per
//! cache input, each row a sequence. A decode step runs every row at once, so the weights are
//! read once per step rather than once per sequence; its `present` output is the next step's
//! cache, uncopied.
//!
//! Where a row's positions sit depends on the graph (`Align`). Graphs that take `position_ids`
//! (the optimum layout) get rows right-aligned behind left padding that the attention mask
//! hides. GroupQueryAttention (the onnxruntime-genai builder's layout) takes no positions: it
//! counts each row's length from its attention mask (`seqlens_k`), reads that row's cache from
//! position 0 and writes its new token after it, so its rows are left-aligned with padding on
//! the right, as onnxruntime-genai batches them.
//!
//! The cache is copied only when the set of rows changes: a sequence joins after running its
//! prompt alone, or leaves when it is over (and the padding no row needs is trimmed); and when a
//! lone row's step checked a draft and some of it was not taken (`rollback`).
//!
//! With a share buffer (GroupQueryAttention graphs whose config asks for one), each row has room
//! for every position it may reach, and the graph writes the new token's keys and values into
//! it in place: the cache is bound as both the step's past input and its present output, so a
//! step copies no cache at all (`forward::run`).

use ort::session::Session;
use ort::value::DynValue;

pub use super::cache::Align;
use super::cache::{self, Pick};
use super::forward::{self, Output, Step};
use super::prefix::slice_positions;
use super::CacheLayout;
use crate::error::Result;

#[derive(Default)]
pub struct KvBatch {
    align: Align,
    past: Vec<DynValue>,
    /// Positions per row, padding included.
    len: usize,
    /// Real (unpadded) positions of each row.
    valid: Vec<usize>,
    /// Share buffer: the positions each row may reach (its prompt and its `max_tokens`).
    need: Vec<usize>,
}

impl KvBatch {
    pub fn new(align: Align) -> KvBatch {
        KvBatch {
            align,
            ..Default::default()
        }
    }

    pub fn rows(&self) -> usize {
        self.valid.len()
    }

    /// Positions each row's cache holds: what is in use, or with a share buffer, room for all
    /// any row may reach.
    fn room(&self, l: &CacheLayout, len: usize, need: &[usize]) -> usize {
        if l.shared {
            need.iter().copied().max().unwrap_or(0).max(len)
        } else {
            len
        }
    }

    /// Adds a row from a sequence's own `[1, h, len, d]` cache (`len` positions in use; with a
    /// share buffer, room for `need`).
    pub fn join(
        &mut self,
        l: &CacheLayout,
        past: Vec<DynValue>,
        len: usize,
        need: usize,
    ) -> Result<()> {
        let mut picks: Vec<Pick> = self
            .valid
            .iter()
            .enumerate()
            .map(|(r, &v)| (0, r, v))
            .collect();
        picks.push((1, 0, len));
        let new_len = self.len.max(len);
        let mut needs = self.need.clone();
        needs.push(need);
        let room = self.room(l, new_len, &needs);
        // A first row's own cache is the batch's: its room is the row's `need` already.
        self.past = if self.valid.is_empty() {
            past
        } else {
            let old = std::mem::take(&mut self.past);
            old.iter()
                .zip(&past)
                .map(|(o, p)| cache::gather(l, self.align, &[o, p], &picks, room))
                .collect::<Result<_>>()?
        };
        self.len = new_len;
        self.valid.push(len);
        self.need = needs;
        Ok(())
    }

    /// Keeps the rows marked true, in order, and trims padding (and room) no row needs any more.
    pub fn retain(&mut self, l: &CacheLayout, keep: &[bool]) -> Result<()> {
        let picks: Vec<Pick> = self
            .valid
            .iter()
            .enumerate()
            .filter(|(r, _)| keep[*r])
            .map(|(r, &v)| (0, r, v))
            .collect();
        if picks.len() == self.valid.len() {
            return Ok(());
        }
        let new_len = picks.iter().map(|p| p.2).max().unwrap_or(0);
        let needs: Vec<usize> = picks.iter().map(|p| self.need[p.1]).collect();
        let room = self.room(l, new_len, &needs);
        let old = std::mem::take(&mut self.past);
        self.valid = picks.iter().map(|p| p.2).collect();
        self.need = needs;
        self.len = new_len;
        if !picks.is_empty() {
            self.past = old
                .iter()
                .map(|o| cache::gather(l, self.align, &[o], &picks, room))
                .collect::<Result<_>>()?;
        }
        Ok(())
    }

    /// Drops every row (after a failed step, whose cache was consumed).
    pub fn clear(&mut self) {
        *self = KvBatch::new(self.align);
    }

    /// One decode step: row r feeds `ids[r·len..(r+1)·len]`, from position `valid[r]` of its
    /// sequence (`len` is 1, or with a draft to check, the next input and the draft), and gets
    /// the logits of each position fed.
    pub fn step(
        &mut self,
        session: &mut Session,
        l: &CacheLayout,
        ids: Vec<i64>,
        len: usize,
    ) -> Result<Output> {
        let total = self.len + len;
        let mut mask = Vec::with_capacity(self.rows() * total);
        for &v in &self.valid {
            let (pad, real) = (total - v - len, v + len);
            match self.align {
                Align::Right => {
                    mask.extend(std::iter::repeat_n(0i64, pad));
                    mask.extend(std::iter::repeat_n(1i64, real));
                }
                Align::Left => {
                    mask.extend(std::iter::repeat_n(1i64, real));
                    mask.extend(std::iter::repeat_n(0i64, pad));
                }
            }
        }
        let step = Step {
            rows: self.rows(),
            len,
            positions: self
                .valid
                .iter()
                .flat_map(|&v| v as i64..(v + len) as i64)
                .collect(),
            ids,
            mask,
            keep: len,
        };
        match forward::run(session, l, step, &mut self.past) {
            Ok(out) => {
                self.len += len;
                self.valid.iter_mut().for_each(|v| *v += len);
                Ok(out)
            }
            Err(e) => {
                self.clear();
                Err(e)
            }
        }
    }

    /// Forgets the last `n` positions of the only row: drafted tokens its sequence did not take
    /// (`speculate.rs`). A share buffer keeps them, unread, until the next step writes over
    /// them; a cache the graph returned is cut to the positions kept.
    pub fn rollback(&mut self, l: &CacheLayout, n: usize) -> Result<()> {
        debug_assert!(self.rows() == 1 && self.valid[0] == self.len);
        if n == 0 {
            return Ok(());
        }
        self.len -= n;
        self.valid[0] = self.len;
        if !l.shared {
            let len = self.len;
            let cut = self.past.iter().map(|v| slice_positions(l, v, len));
            match cut.collect::<Result<_>>() {
                Ok(past) => self.past = past,
                Err(e) => {
                    self.clear();
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
