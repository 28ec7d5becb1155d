//! Executions: the pipeline actor that owns a pipeline's executions and jobs and moves them
//! through its stages, asking each stage actor for the lock decisions.

pub mod actor;
mod flow;
pub use flow::short;
pub mod progress;
pub mod revision;
mod txn;

pub use actor::{PipelineActor, Shared};
