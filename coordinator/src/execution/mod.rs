//! Executions: the pipeline actor that owns a pipeline's executions and jobs and moves them
//! through its stages, asking each stage actor for the lock decisions.

pub mod actor;
pub mod approval;
pub mod auto_cancel;
mod cancel;
mod flow;
pub mod lanes;
pub mod lost_retry;
pub mod policies;
pub use flow::short;
#[cfg(test)]
mod auto_cancel_props;
pub mod fence;
#[cfg(test)]
mod pipeline_model;
#[cfg(test)]
mod pipeline_props;
pub mod progress;
pub mod retry;
pub mod revision;
#[cfg(test)]
mod revision_props;
mod txn;

pub use actor::{PipelineActor, Shared};
