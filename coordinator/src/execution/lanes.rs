//! Lanes: independent copies of a pipeline's stage locks. With `lanes: branch` each branch has
//! its own locks (and fence counters), except stages marked `lane: shared`, which keep one
//! lock across branches. A pipeline without lanes has the one lane `""`.

use crate::pipeline::{LaneScope, Lanes, PipelineSpec};
use crate::store::key2;

/// A stage of one lane: `(stage, lane)`.
pub type LaneKey = (String, String);

/// The lane in which an execution on `branch` meets `stage` of `spec`.
pub fn lane_of(spec: &PipelineSpec, stage: &str, branch: &str) -> String {
    let shared = spec
        .stages
        .iter()
        .find(|s| s.name == stage)
        .is_none_or(|s| s.lane == LaneScope::Shared);
    match spec.lanes {
        Lanes::Branch if !shared => branch.to_string(),
        _ => String::new(),
    }
}

/// The store key of a stage's lock in one lane: `pipeline \0 stage` for the default lane (as
/// before lanes existed), `pipeline \0 stage \0 lane` otherwise.
pub fn stage_key(pipeline: &str, stage: &str, lane: &str) -> Vec<u8> {
    if lane.is_empty() {
        key2(pipeline, stage)
    } else {
        key2(pipeline, &format!("{stage}\0{lane}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::parse_pipeline_file;

    #[test]
    fn branch_lanes_split_every_stage_but_shared_ones() {
        let text = "name: pr\nlanes: branch\nstages:\n  - name: test\n    actions:\n      - name: t\n        run: [make]\n  - name: dev\n    lane: shared\n    actions:\n      - name: d\n        run: [make]\n";
        let spec = parse_pipeline_file("p.yaml", text).expect("valid");
        assert_eq!(lane_of(&spec, "test", "feature-a"), "feature-a");
        assert_eq!(lane_of(&spec, "dev", "feature-a"), "");
        assert_ne!(stage_key("pr", "test", "a"), stage_key("pr", "test", ""));
    }
}
