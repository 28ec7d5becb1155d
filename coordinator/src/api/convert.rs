//! Records and views to their `baton.v1` protobuf form.

use baton_proto::v1 as pb;

use crate::events::{Change, Event};
use crate::execution::actor::StateView;
use crate::execution::short;
use crate::pipeline::Mode;
use crate::stage::rules::LeaveReason;
use crate::store::records::{
    ExecutionRecord, ExecutionStatus, JobRecord, JobStatus, Revision, StageStatus,
};

/// Mode to protobuf.
pub fn mode(m: Mode) -> pb::ExecutionMode {
    match m {
        Mode::Superseded => pb::ExecutionMode::Superseded,
        Mode::Queued => pb::ExecutionMode::Queued,
        Mode::Parallel => pb::ExecutionMode::Parallel,
    }
}

/// Execution status to protobuf.
pub fn execution_status(s: ExecutionStatus) -> pb::ExecutionStatus {
    use ExecutionStatus::*;
    match s {
        InProgress => pb::ExecutionStatus::InProgress,
        Stopping => pb::ExecutionStatus::Stopping,
        Stopped => pb::ExecutionStatus::Stopped,
        Succeeded => pb::ExecutionStatus::Succeeded,
        Failed => pb::ExecutionStatus::Failed,
        Superseded => pb::ExecutionStatus::Superseded,
        Cancelled => pb::ExecutionStatus::Cancelled,
        Paused => pb::ExecutionStatus::Paused,
    }
}

/// Stage status to protobuf.
pub fn stage_status(s: StageStatus) -> pb::StageStatus {
    use StageStatus::*;
    match s {
        Pending => pb::StageStatus::Pending,
        Waiting => pb::StageStatus::Waiting,
        InProgress => pb::StageStatus::InProgress,
        Succeeded => pb::StageStatus::Succeeded,
        Failed => pb::StageStatus::Failed,
        Stopping => pb::StageStatus::Stopping,
        Stopped => pb::StageStatus::Stopped,
        Superseded => pb::StageStatus::Superseded,
        Cancelled => pb::StageStatus::Cancelled,
    }
}

/// Job status to protobuf.
pub fn job_status(s: JobStatus) -> pb::JobStatus {
    use JobStatus::*;
    match s {
        Queued => pb::JobStatus::Queued,
        Running => pb::JobStatus::Running,
        Succeeded => pb::JobStatus::Succeeded,
        Failed => pb::JobStatus::Failed,
        Abandoned => pb::JobStatus::Abandoned,
        Stopped => pb::JobStatus::Stopped,
        Lost => pb::JobStatus::Lost,
    }
}

/// Revision to protobuf.
pub fn revision(r: &Revision) -> pb::SourceRevision {
    pb::SourceRevision {
        branch: r.branch.clone(),
        commit: r.commit.clone(),
        message: r.message.clone(),
        trigger: r.trigger.clone(),
        revision_order: r.order,
    }
}

/// Revision from protobuf.
pub fn revision_from(r: Option<pb::SourceRevision>) -> Revision {
    let r = r.unwrap_or_default();
    Revision {
        branch: r.branch,
        commit: r.commit,
        message: r.message,
        trigger: if r.trigger.is_empty() {
            "api".into()
        } else {
            r.trigger
        },
        order: r.revision_order,
    }
}

/// A job to protobuf.
pub fn job(j: &JobRecord) -> pb::Job {
    pb::Job {
        job_id: j.id.clone(),
        action: j.action.clone(),
        attempt: j.attempt,
        status: job_status(j.status) as i32,
        worker: j.worker.clone(),
        exit_code: j.exit_code,
        started_at_ms: j.started_at_ms,
        finished_at_ms: j.finished_at_ms,
        steps_done: j.steps_done,
        step_count: j.steps.len() as u32,
        message: j.message.clone(),
    }
}

/// An execution with its jobs (looked up by `job_of`) to protobuf.
pub fn execution(
    e: &ExecutionRecord,
    job_of: impl Fn(&str) -> Option<JobRecord>,
) -> pb::PipelineExecution {
    pb::PipelineExecution {
        execution_id: e.id.clone(),
        pipeline: e.pipeline.clone(),
        pipeline_version: e.pipeline_version,
        number: e.number,
        revision: Some(revision(&e.revision)),
        status: execution_status(e.status) as i32,
        status_reason: e.status_reason.clone(),
        created_at_ms: e.created_at_ms,
        updated_at_ms: e.updated_at_ms,
        stages: e
            .stages
            .iter()
            .map(|run| pb::StageExecution {
                stage: run.stage.clone(),
                status: stage_status(run.status) as i32,
                started_at_ms: run.started_at_ms,
                finished_at_ms: run.finished_at_ms,
                fence_token: run.fence_token,
                jobs: run
                    .jobs
                    .iter()
                    .filter_map(|id| job_of(id))
                    .map(|j| job(&j))
                    .collect(),
            })
            .collect(),
    }
}

/// A pipeline's state, with why each waiter waits.
pub fn pipeline_state(view: &StateView) -> pb::PipelineState {
    let label = |id: &str| {
        view.executions
            .get(id)
            .map(|e| format!("#{} ({})", e.number, short(&e.revision.commit)))
            .unwrap_or_else(|| id.to_string())
    };
    pb::PipelineState {
        pipeline: view.pipeline.clone(),
        version: view.version,
        stages: view
            .stages
            .iter()
            .map(|s| {
                let holder = s.lock.holders.first();
                pb::StageState {
                    stage: s.stage.clone(),
                    lane: String::new(),
                    mode: mode(s.mode) as i32,
                    lock: holder.map(|h| {
                        let e = view.executions.get(&h.execution_id);
                        pb::StageHolder {
                            execution_id: h.execution_id.clone(),
                            revision: e.map(|e| revision(&e.revision)),
                            since_ms: h.since_ms,
                            fence_token: h.fence_token,
                            status: e.map(|e| execution_status(e.status) as i32).unwrap_or(0),
                            number: e.map(|e| e.number).unwrap_or(0),
                        }
                    }),
                    waiting: s
                        .lock
                        .waiting
                        .iter()
                        .enumerate()
                        .map(|(i, w)| {
                            let e = view.executions.get(&w.execution_id);
                            let reason = match (i, holder) {
                                (0, Some(h)) => format!("lock held by {}", label(&h.execution_id)),
                                (0, None) => "stage is free; entering".to_string(),
                                _ => format!(
                                    "queued behind {}",
                                    label(&s.lock.waiting[i - 1].execution_id)
                                ),
                            };
                            pb::StageWaiter {
                                execution_id: w.execution_id.clone(),
                                revision: e.map(|e| revision(&e.revision)),
                                since_ms: w.since_ms,
                                reason,
                                number: e.map(|e| e.number).unwrap_or(0),
                            }
                        })
                        .collect(),
                    fence_token: s.lock.fence_token,
                    last_outcome: s.lock.last_outcome.as_ref().map(|o| pb::StageOutcome {
                        execution_id: o.execution_id.clone(),
                        status: match o.result {
                            LeaveReason::Succeeded => pb::StageStatus::Succeeded,
                            LeaveReason::Failed => pb::StageStatus::Failed,
                            LeaveReason::Stopped => pb::StageStatus::Stopped,
                        } as i32,
                        finished_at_ms: o.at_ms,
                        number: view
                            .executions
                            .get(&o.execution_id)
                            .map(|e| e.number)
                            .unwrap_or(0),
                    }),
                }
            })
            .collect(),
    }
}

/// An event to protobuf.
pub fn event(e: &Event) -> pb::PipelineEvent {
    pb::PipelineEvent {
        seq: e.seq,
        at_ms: e.at_ms,
        pipeline: e.pipeline.clone(),
        execution_id: e.execution_id.clone(),
        stage: e.stage.clone(),
        job_id: e.job_id.clone(),
        change: Some(match &e.change {
            Change::Execution(s) => {
                pb::pipeline_event::Change::ExecutionStatus(execution_status(*s) as i32)
            }
            Change::Stage(s) => pb::pipeline_event::Change::StageStatus(stage_status(*s) as i32),
            Change::Job(s) => pb::pipeline_event::Change::JobStatus(job_status(*s) as i32),
        }),
        message: e.message.clone(),
    }
}
