//! Small serde views of the API's messages, for `--output json`.
//!
//! prost types do not derive `Serialize`, and their enums are bare integers; these views spell
//! statuses as DESIGN.md does and turn unset timestamps (0) into `null`.

use baton_proto::v1 as pb;
use serde::Serialize;

use crate::output::{
    execution_mode, execution_status, job_status, opt_ms, stage_status, worker_state,
};

/// The source revision an execution is pinned to.
#[derive(Debug, Serialize, PartialEq)]
pub struct RevisionView {
    /// Branch name.
    pub branch: String,
    /// Full commit id.
    pub commit: String,
    /// Commit message.
    pub message: String,
    /// What started it ("cli", "webhook", ...).
    pub trigger: String,
}

impl From<Option<&pb::SourceRevision>> for RevisionView {
    fn from(rev: Option<&pb::SourceRevision>) -> Self {
        let rev = rev.cloned().unwrap_or_default();
        Self {
            branch: rev.branch,
            commit: rev.commit,
            message: rev.message,
            trigger: rev.trigger,
        }
    }
}

/// One execution with its stages and jobs.
#[derive(Debug, Serialize)]
pub struct ExecutionView {
    /// Execution id.
    pub execution_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Pipeline version the execution is pinned to.
    pub pipeline_version: u64,
    /// Per-pipeline sequence number.
    pub number: u64,
    /// Execution status ("InProgress", "Superseded", ...).
    pub status: &'static str,
    /// Why it ended as it did.
    pub status_reason: String,
    /// The source revision.
    pub revision: RevisionView,
    /// Unix ms.
    pub created_at_ms: Option<i64>,
    /// Unix ms.
    pub updated_at_ms: Option<i64>,
    /// Stages in pipeline order.
    pub stages: Vec<StageExecutionView>,
}

/// One stage of an execution.
#[derive(Debug, Serialize)]
pub struct StageExecutionView {
    /// Stage name.
    pub stage: String,
    /// Stage status ("Pending", "Waiting", ...).
    pub status: &'static str,
    /// Unix ms.
    pub started_at_ms: Option<i64>,
    /// Unix ms.
    pub finished_at_ms: Option<i64>,
    /// Fence token held while inside; `null` if it never entered.
    pub fence_token: Option<u64>,
    /// Jobs (one per attempt of each run action).
    pub jobs: Vec<JobView>,
}

/// One job attempt.
#[derive(Debug, Serialize)]
pub struct JobView {
    /// Job id (for `baton logs`).
    pub job_id: String,
    /// Action name.
    pub action: String,
    /// Attempt number.
    pub attempt: u32,
    /// Job status ("Queued", "Running", ...).
    pub status: &'static str,
    /// Worker name, `null` while queued.
    pub worker: Option<String>,
    /// Exit code of the last step that ran.
    pub exit_code: i32,
    /// Unix ms.
    pub started_at_ms: Option<i64>,
    /// Unix ms.
    pub finished_at_ms: Option<i64>,
    /// Steps that finished.
    pub steps_done: u32,
    /// Steps in total.
    pub step_count: u32,
    /// Extra words from the coordinator or worker.
    pub message: String,
}

impl From<&pb::PipelineExecution> for ExecutionView {
    fn from(e: &pb::PipelineExecution) -> Self {
        Self {
            execution_id: e.execution_id.clone(),
            pipeline: e.pipeline.clone(),
            pipeline_version: e.pipeline_version,
            number: e.number,
            status: execution_status(e.status),
            status_reason: e.status_reason.clone(),
            revision: e.revision.as_ref().into(),
            created_at_ms: opt_ms(e.created_at_ms),
            updated_at_ms: opt_ms(e.updated_at_ms),
            stages: e.stages.iter().map(StageExecutionView::from).collect(),
        }
    }
}

impl From<&pb::StageExecution> for StageExecutionView {
    fn from(s: &pb::StageExecution) -> Self {
        Self {
            stage: s.stage.clone(),
            status: stage_status(s.status),
            started_at_ms: opt_ms(s.started_at_ms),
            finished_at_ms: opt_ms(s.finished_at_ms),
            fence_token: (s.fence_token > 0).then_some(s.fence_token),
            jobs: s.jobs.iter().map(JobView::from).collect(),
        }
    }
}

impl From<&pb::Job> for JobView {
    fn from(j: &pb::Job) -> Self {
        Self {
            job_id: j.job_id.clone(),
            action: j.action.clone(),
            attempt: j.attempt,
            status: job_status(j.status),
            worker: (!j.worker.is_empty()).then(|| j.worker.clone()),
            exit_code: j.exit_code,
            started_at_ms: opt_ms(j.started_at_ms),
            finished_at_ms: opt_ms(j.finished_at_ms),
            steps_done: j.steps_done,
            step_count: j.step_count,
            message: j.message.clone(),
        }
    }
}

/// A pipeline's stage state (`baton state`).
#[derive(Debug, Serialize)]
pub struct StateView {
    /// Pipeline name.
    pub pipeline: String,
    /// Pipeline version.
    pub version: u64,
    /// One entry per stage and lane.
    pub stages: Vec<StageStateView>,
}

/// One stage (and lane) of a pipeline's state.
#[derive(Debug, Serialize)]
pub struct StageStateView {
    /// Stage name.
    pub stage: String,
    /// Lane ("" = the pipeline's only lane).
    pub lane: String,
    /// "Superseded", "Queued" or "Parallel".
    pub mode: &'static str,
    /// Who holds the lock.
    pub lock: Option<HolderView>,
    /// Who waits, first to enter first.
    pub waiting: Vec<WaiterView>,
    /// Latest fence token issued.
    pub fence_token: u64,
    /// How the last execution to leave fared.
    pub last_outcome: Option<OutcomeView>,
}

/// The execution holding a stage lock.
#[derive(Debug, Serialize)]
pub struct HolderView {
    /// Execution id.
    pub execution_id: String,
    /// Per-pipeline number.
    pub number: u64,
    /// Its revision.
    pub revision: RevisionView,
    /// Unix ms when it entered.
    pub since_ms: Option<i64>,
    /// Its fence token.
    pub fence_token: u64,
    /// Its execution status.
    pub status: &'static str,
}

/// An execution waiting in front of a stage.
#[derive(Debug, Serialize)]
pub struct WaiterView {
    /// Execution id.
    pub execution_id: String,
    /// Per-pipeline number.
    pub number: u64,
    /// Its revision.
    pub revision: RevisionView,
    /// Unix ms when it started waiting.
    pub since_ms: Option<i64>,
    /// Why it waits.
    pub reason: String,
}

/// How the last execution to leave a stage fared.
#[derive(Debug, Serialize)]
pub struct OutcomeView {
    /// Execution id.
    pub execution_id: String,
    /// Per-pipeline number.
    pub number: u64,
    /// Stage status it left with.
    pub status: &'static str,
    /// Unix ms.
    pub finished_at_ms: Option<i64>,
}

impl From<&pb::PipelineState> for StateView {
    fn from(s: &pb::PipelineState) -> Self {
        Self {
            pipeline: s.pipeline.clone(),
            version: s.version,
            stages: s.stages.iter().map(StageStateView::from).collect(),
        }
    }
}

impl From<&pb::StageState> for StageStateView {
    fn from(s: &pb::StageState) -> Self {
        Self {
            stage: s.stage.clone(),
            lane: s.lane.clone(),
            mode: execution_mode(s.mode),
            lock: s.lock.as_ref().map(|h| HolderView {
                execution_id: h.execution_id.clone(),
                number: h.number,
                revision: h.revision.as_ref().into(),
                since_ms: opt_ms(h.since_ms),
                fence_token: h.fence_token,
                status: execution_status(h.status),
            }),
            waiting: s
                .waiting
                .iter()
                .map(|w| WaiterView {
                    execution_id: w.execution_id.clone(),
                    number: w.number,
                    revision: w.revision.as_ref().into(),
                    since_ms: opt_ms(w.since_ms),
                    reason: w.reason.clone(),
                })
                .collect(),
            fence_token: s.fence_token,
            last_outcome: s.last_outcome.as_ref().map(|o| OutcomeView {
                execution_id: o.execution_id.clone(),
                number: o.number,
                status: stage_status(o.status),
                finished_at_ms: opt_ms(o.finished_at_ms),
            }),
        }
    }
}

/// A worker, as `ListWorkers` reports it.
#[derive(Debug, Serialize)]
pub struct WorkerView {
    /// Worker name.
    pub name: String,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Job slots.
    pub slots: u32,
    /// Job ids it runs now.
    pub running_jobs: Vec<String>,
    /// "Connected", "Draining", "Disconnected" or "Lost".
    pub state: &'static str,
    /// Unix ms.
    pub last_seen_ms: Option<i64>,
}

impl From<&pb::WorkerInfo> for WorkerView {
    fn from(w: &pb::WorkerInfo) -> Self {
        Self {
            name: w.name.clone(),
            labels: w
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            slots: w.slots,
            running_jobs: w.running_jobs.clone(),
            state: worker_state(w.state),
            last_seen_ms: opt_ms(w.last_seen_ms),
        }
    }
}

/// A pipeline as `pipeline list` / `pipeline apply` report it.
#[derive(Debug, Serialize)]
pub struct PipelineSummaryView {
    /// Pipeline name.
    pub name: String,
    /// Stored version.
    pub version: u64,
    /// Number of stages.
    pub stage_count: u32,
    /// Unix ms.
    pub updated_at_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::v1::{ExecutionStatus, JobStatus, StageStatus};

    #[test]
    fn execution_json_spells_statuses_and_nulls_unset_times() {
        let exec = pb::PipelineExecution {
            execution_id: "e-2".into(),
            pipeline: "web-app".into(),
            pipeline_version: 1,
            number: 2,
            revision: Some(pb::SourceRevision {
                branch: "main".into(),
                commit: "c0ffee2".into(),
                message: "demo push 2".into(),
                trigger: "cli".into(),
                ..Default::default()
            }),
            status: ExecutionStatus::Superseded as i32,
            status_reason: "superseded by #3".into(),
            created_at_ms: 1_000,
            updated_at_ms: 2_000,
            stages: vec![
                pb::StageExecution {
                    stage: "build".into(),
                    status: StageStatus::Succeeded as i32,
                    started_at_ms: 1_000,
                    finished_at_ms: 2_200,
                    fence_token: 2,
                    jobs: vec![pb::Job {
                        job_id: "j-1".into(),
                        action: "compile".into(),
                        attempt: 1,
                        status: JobStatus::Succeeded as i32,
                        worker: "local-1".into(),
                        exit_code: 0,
                        started_at_ms: 1_010,
                        finished_at_ms: 2_190,
                        steps_done: 1,
                        step_count: 1,
                        message: String::new(),
                    }],
                },
                pb::StageExecution {
                    stage: "test".into(),
                    status: StageStatus::Superseded as i32,
                    ..Default::default()
                },
            ],
        };
        let json = serde_json::to_value(ExecutionView::from(&exec)).ok();
        let expected = serde_json::json!({
            "execution_id": "e-2",
            "pipeline": "web-app",
            "pipeline_version": 1,
            "number": 2,
            "status": "Superseded",
            "status_reason": "superseded by #3",
            "revision": {"branch": "main", "commit": "c0ffee2", "message": "demo push 2", "trigger": "cli"},
            "created_at_ms": 1000,
            "updated_at_ms": 2000,
            "stages": [
                {
                    "stage": "build", "status": "Succeeded", "started_at_ms": 1000,
                    "finished_at_ms": 2200, "fence_token": 2,
                    "jobs": [{
                        "job_id": "j-1", "action": "compile", "attempt": 1, "status": "Succeeded",
                        "worker": "local-1", "exit_code": 0, "started_at_ms": 1010,
                        "finished_at_ms": 2190, "steps_done": 1, "step_count": 1, "message": ""
                    }]
                },
                {
                    "stage": "test", "status": "Superseded", "started_at_ms": null,
                    "finished_at_ms": null, "fence_token": null, "jobs": []
                }
            ]
        });
        assert_eq!(json, Some(expected));
    }
}
