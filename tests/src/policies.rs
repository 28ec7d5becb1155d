//! Helpers for the stage-policy scenarios: a cluster whose coordinator runs on a clock the test
//! moves, transitions, resume and stop through the gRPC API, and finding a stage's lane in a
//! pipeline state.

use std::sync::Arc;

use baton_coordinator::clock::ManualClock;
use baton_proto::v1 as pb;

use crate::TestCluster;

impl TestCluster {
    /// Starts a coordinator on `clock` (settle windows, leases and timestamps follow it) and
    /// `workers` workers. Worker leases are set to a day so that jumps of the clock do not
    /// lose workers.
    pub async fn start_with_clock(workers: usize, clock: Arc<ManualClock>) -> TestCluster {
        Self::start_on(workers, Some(clock)).await
    }

    /// Disables the transition into `stage`.
    pub async fn disable_transition(&self, pipeline: &str, stage: &str, by: &str, reason: &str) {
        self.client()
            .await
            .disable_stage_transition(pb::DisableStageTransitionRequest {
                pipeline: pipeline.into(),
                stage: stage.into(),
                reason: reason.into(),
                by: by.into(),
            })
            .await
            .expect("disable transition");
    }

    /// Enables the transition into `stage`.
    pub async fn enable_transition(&self, pipeline: &str, stage: &str) {
        self.client()
            .await
            .enable_stage_transition(pb::EnableStageTransitionRequest {
                pipeline: pipeline.into(),
                stage: stage.into(),
            })
            .await
            .expect("enable transition");
    }

    /// Resumes a Paused execution; returns it as the coordinator answered.
    pub async fn resume(&self, id: &str) -> Result<pb::PipelineExecution, tonic::Status> {
        self.client()
            .await
            .resume_pipeline_execution(pb::ResumePipelineExecutionRequest {
                execution_id: id.into(),
            })
            .await
            .map(|r| r.into_inner().execution.unwrap_or_default())
    }

    /// Stops an execution with `mode`.
    pub async fn stop(&self, id: &str, mode: pb::StopMode) -> pb::PipelineExecution {
        self.client()
            .await
            .stop_pipeline_execution(pb::StopPipelineExecutionRequest {
                execution_id: id.into(),
                mode: mode as i32,
                reason: String::new(),
            })
            .await
            .expect("stop")
            .into_inner()
            .execution
            .expect("execution")
    }
}

/// The state of `stage` in `lane` ("" for the single lane or a shared stage).
pub fn stage_lane<'a>(state: &'a pb::PipelineState, stage: &str, lane: &str) -> &'a pb::StageState {
    state
        .stages
        .iter()
        .find(|s| s.stage == stage && s.lane == lane)
        .unwrap_or_else(|| panic!("no stage {stage} in lane {lane:?}: {state:#?}"))
}
