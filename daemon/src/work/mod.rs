//! The work that flows from frontends to model workers: requests as jobs (`job.rs`), the bounded
//! two-lane queue that carries them (`queue.rs`) and its counters (`stats.rs`). A leaf: the
//! engine (which models exist and how they load), the kinds (what a model does with a session)
//! and the frontends all build on it, and it builds on none of them.

pub mod job;
pub mod priority;
pub mod queue;
pub mod stats;
