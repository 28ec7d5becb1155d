//! A stage: its lock, who waits in front of it, and its fence counter.
//!
//! [`rules`] decides (pure functions over plain data); [`actor`] owns one stage's state and
//! answers the pipeline actor's questions with those decisions.

pub mod actor;
pub mod reentry;
pub mod rules;
