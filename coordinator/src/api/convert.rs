//! Records and views to their `baton.v1` protobuf form.

use baton_proto::v1 as pb;

use crate::events::{Change, Event};
use crate::execution::actor::{StageView, StateView};
use crate::pipeline::Mode;
use crate::stage::rules::{LeaveReason, Transition};
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
        tag: r.tag.clone(),
        pull_request: r.pull_request.clone(),
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
        tag: r.tag,
        pull_request: r.pull_request,
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
        approval: j.approval.as_ref().map(|a| pb::ApprovalState {
            decision: match a.approved {
                Some(true) => pb::ApprovalDecision::Approve,
                Some(false) => pb::ApprovalDecision::Reject,
                None => pb::ApprovalDecision::Unspecified,
            } as i32,
            by: a.by.clone(),
            comment: a.comment.clone(),
            pending_since_ms: a.pending_since_ms,
            times_out_at_ms: a.times_out_at_ms,
            decided_at_ms: a.decided_at_ms,
        }),
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

/// A transition to protobuf.
pub fn transition(t: &Transition) -> pb::TransitionState {
    match t {
        Transition::Enabled => pb::TransitionState {
            enabled: true,
            ..Default::default()
        },
        Transition::Disabled {
            by,
            reason,
            since_ms,
        } => pb::TransitionState {
            enabled: false,
            disabled_by: by.clone(),
            reason: reason.clone(),
            since_ms: *since_ms,
        },
    }
}

/// A pipeline's state, with why each waiter waits.
pub fn pipeline_state(view: &StateView) -> pb::PipelineState {
    pb::PipelineState {
        pipeline: view.pipeline.clone(),
        version: view.version,
        stages: view.stages.iter().map(|s| stage_state(view, s)).collect(),
    }
}

fn stage_state(view: &StateView, s: &StageView) -> pb::StageState {
    let holders: Vec<pb::StageHolder> = s
        .lock
        .holders
        .iter()
        .map(|h| {
            let e = view.executions.get(&h.execution_id);
            pb::StageHolder {
                execution_id: h.execution_id.clone(),
                revision: e.map(|e| revision(&e.revision)),
                since_ms: h.since_ms,
                fence_token: h.fence_token,
                status: e.map(|e| execution_status(e.status) as i32).unwrap_or(0),
                number: e.map(|e| e.number).unwrap_or(0),
                cancelled_by: h.cancelled_by.clone().unwrap_or_default(),
                note: view
                    .holder_notes
                    .get(&h.execution_id)
                    .cloned()
                    .unwrap_or_default(),
            }
        })
        .collect();
    pb::StageState {
        stage: s.stage.clone(),
        lane: s.lane.clone(),
        mode: mode(s.policy.mode) as i32,
        lock: holders.first().cloned(),
        waiting: s
            .lock
            .waiting
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let e = view.executions.get(&w.execution_id);
                pb::StageWaiter {
                    execution_id: w.execution_id.clone(),
                    revision: e.map(|e| revision(&e.revision)),
                    since_ms: w.since_ms,
                    reason: waiting_reason(view, s, i),
                    number: e.map(|e| e.number).unwrap_or(w.number),
                    paused: w.paused,
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
                LeaveReason::Cancelled => pb::StageStatus::Cancelled,
            } as i32,
            finished_at_ms: o.at_ms,
            number: view
                .executions
                .get(&o.execution_id)
                .map(|e| e.number)
                .unwrap_or(0),
        }),
        transition: Some(transition(&s.lock.transition)),
        holders,
        capacity: match s.policy.room() {
            usize::MAX => 0,
            n => u32::try_from(n).unwrap_or(u32::MAX),
        },
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

/// Why the `i`th waiter of stage `s` waits, with what holds up the holder (a pending
/// approval, a cancel at the next boundary) when it is first in line.
fn waiting_reason(view: &StateView, s: &StageView, i: usize) -> String {
    let reason = s.reasons.get(i).cloned().unwrap_or_default();
    let note = (i == 0)
        .then(|| s.lock.holders.first())
        .flatten()
        .and_then(|h| view.holder_notes.get(&h.execution_id));
    match note {
        Some(note) => format!("{reason} ({note})"),
        None => reason,
    }
}
