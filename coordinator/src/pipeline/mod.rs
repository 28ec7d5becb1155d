//! Pipeline definitions: the validated model, the YAML pipeline file, and the protobuf form.

mod diagnostic;
pub mod file;
pub mod limits;
pub mod model;
pub mod proto;
pub mod rules;

pub use file::{PipelineFileError, parse_pipeline_file};
pub use limits::PipelineLimits;
pub use model::{ActionSpec, DEFAULT_GRACE, Mode, PipelineSpec, StageSpec};
