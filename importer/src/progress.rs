//! How far an import is, for a caller to show: `inferctl import` draws a bar per stage on a
//! terminal and writes a line per finished stage otherwise.

/// `done` of `total` units of `stage` (tensors while converting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step<'s> {
    pub stage: &'s str,
    pub done: usize,
    pub total: usize,
}

impl<'s> Step<'s> {
    pub fn of(stage: &'s str, done: usize, total: usize) -> Self {
        Step { stage, done, total }
    }
}

/// What an import tells its caller as it goes.
pub type Report<'r> = &'r mut dyn FnMut(Step<'_>);
