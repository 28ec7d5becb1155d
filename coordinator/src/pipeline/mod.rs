//! Pipeline definitions: the validated model, the YAML pipeline file, and the protobuf form.

pub mod condition;
mod diagnostic;
pub mod file;
pub mod limits;
pub mod model;
pub mod proto;
pub mod rules;
pub mod stage_options;

pub use file::{PipelineFileError, parse_pipeline_file};
pub use limits::PipelineLimits;
pub use model::{
    ActionSpec, ApprovalSpec, AutoCancel, CancelSignal, CancelStop, ConcurrencyKey, Condition,
    DEFAULT_APPROVAL_TIMEOUT, DEFAULT_GRACE, DEFAULT_MAX_WAIT_FACTOR, LaneScope, Lanes, Mode,
    PipelineSpec, QueueOrder, RetryPolicy, Settle, StageSpec, WhenBusy,
};
