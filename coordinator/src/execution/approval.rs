//! Approval actions: a person approves or rejects; nobody deciding in time is a failure.
//!
//! An approval is kept as a job that never goes to a worker: Queued while pending,
//! Succeeded when approved, Failed when rejected or timed out. The stage stays locked
//! meanwhile. With `follow_latest`, a pending approval moves to the newest execution waiting
//! in front of the stage: the holder is superseded and the newest enters.

use actix::prelude::*;

use super::actor::{PipelineActor, answer, reply_once};
use super::lanes::LaneKey;
use super::txn::{Txn, Work};
use crate::error::CoordError;
use crate::events::Change;
use crate::pipeline::ApprovalSpec;
use crate::stage::actor::Ask;
use crate::store::Tree;
use crate::store::records::{
    ApprovalRecord, ExecutionRecord, ExecutionStatus, JobStatus, StageStatus,
};

/// A new pending approval.
pub(super) fn pending(spec: ApprovalSpec, now_ms: i64) -> ApprovalRecord {
    ApprovalRecord {
        pending_since_ms: now_ms,
        times_out_at_ms: now_ms
            .saturating_add(i64::try_from(spec.timeout.as_millis()).unwrap_or(i64::MAX)),
        follow_latest: spec.follow_latest,
        approved: None,
        by: String::new(),
        comment: String::new(),
        decided_at_ms: 0,
    }
}

/// A time in Unix ms as an RFC 3339 UTC time, to the second.
pub fn rfc3339(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// "approval pending since …, times out at …".
pub(super) fn pending_words(a: &ApprovalRecord) -> String {
    format!(
        "approval pending since {}, times out at {}",
        rfc3339(a.pending_since_ms),
        rfc3339(a.times_out_at_ms)
    )
}

/// Approves or rejects a pending approval; answers with the execution once durable.
#[derive(Message)]
#[rtype(result = "Result<ExecutionRecord, CoordError>")]
pub struct Decide {
    /// The execution.
    pub execution_id: String,
    /// The stage.
    pub stage: String,
    /// The approval action.
    pub action: String,
    /// Approve (true) or reject.
    pub approve: bool,
    /// Who decides.
    pub by: String,
    /// What they say.
    pub comment: String,
}

/// Fails the approvals whose time is up (sent on every timer tick).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CheckApprovals;

impl Handler<Decide> for PipelineActor {
    type Result = ResponseFuture<Result<ExecutionRecord, CoordError>>;
    fn handle(&mut self, msg: Decide, ctx: &mut Context<Self>) -> Self::Result {
        let mut txn = Txn::default();
        if let Err(e) = self.decide(&msg, &mut txn) {
            return Box::pin(async move { Err(e) });
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let id = msg.execution_id;
        let store = self.shared.store.clone();
        reply_once(&mut txn, tx, move |act| match act.executions.get(&id) {
            Some(exec) => Ok(exec.clone()),
            None => store
                .get_json(Tree::Executions, id.as_bytes())?
                .ok_or_else(|| CoordError::NotFound(format!("execution {id} not found"))),
        });
        self.run(txn, ctx);
        Box::pin(answer(rx))
    }
}

impl Handler<CheckApprovals> for PipelineActor {
    type Result = ();
    fn handle(&mut self, _: CheckApprovals, ctx: &mut Context<Self>) {
        let now = self.now();
        let due: Vec<String> = self
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Queued)
            .filter(|j| {
                j.approval
                    .as_ref()
                    .is_some_and(|a| a.times_out_at_ms <= now)
            })
            .map(|j| j.id.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let mut txn = Txn::default();
        for id in due {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            let since = job.approval.as_ref().map_or(0, |a| a.pending_since_ms);
            job.status = JobStatus::Failed;
            job.finished_at_ms = now;
            job.message = format!(
                "approval timed out: pending since {}, nobody approved it in time",
                rfc3339(since)
            );
            let (exec, stage, message) = (
                job.execution_id.clone(),
                job.stage.clone(),
                job.message.clone(),
            );
            txn.jobs.insert(id.clone());
            let ev = self.event(&exec, &stage, &id, Change::Job(JobStatus::Failed), message);
            txn.events.push(ev);
            self.evaluate_stage(&exec, &mut txn);
        }
        self.run(txn, ctx);
    }
}

impl PipelineActor {
    fn decide(&mut self, msg: &Decide, txn: &mut Txn) -> Result<(), CoordError> {
        let Some(exec) = self.executions.get(&msg.execution_id) else {
            return match self
                .shared
                .store
                .get_json::<ExecutionRecord>(Tree::Executions, msg.execution_id.as_bytes())?
            {
                Some(e) => Err(CoordError::Precondition(format!(
                    "execution #{} has ended ({:?}); its approvals can no longer change",
                    e.number, e.status
                ))),
                None => Err(CoordError::NotFound(format!(
                    "execution {} not found",
                    msg.execution_id
                ))),
            };
        };
        let n = exec.number;
        let Some(run) = exec.stages.iter().find(|r| r.stage == msg.stage) else {
            return Err(CoordError::NotFound(format!(
                "execution #{n} has no stage `{}`",
                msg.stage
            )));
        };
        let job_id = run
            .jobs
            .iter()
            .filter_map(|j| self.jobs.get(j))
            .rfind(|j| j.action == msg.action)
            .filter(|j| j.approval.is_some())
            .map(|j| (j.id.clone(), j.status));
        let job_id = match job_id {
            Some((id, JobStatus::Queued)) if run.status == StageStatus::InProgress => id,
            Some((_, status)) => {
                return Err(CoordError::Precondition(format!(
                    "approval `{}` of execution #{n} in `{}` is not pending (it is {status:?})",
                    msg.action, msg.stage
                )));
            }
            None => {
                return Err(CoordError::Precondition(format!(
                    "execution #{n} has no pending approval `{}` in stage `{}`",
                    msg.action, msg.stage
                )));
            }
        };
        let now = self.now();
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return Ok(());
        };
        let by = if msg.by.is_empty() {
            "someone"
        } else {
            msg.by.as_str()
        };
        let verb = if msg.approve { "approved" } else { "rejected" };
        job.status = if msg.approve {
            JobStatus::Succeeded
        } else {
            JobStatus::Failed
        };
        job.finished_at_ms = now;
        job.message = if msg.comment.is_empty() {
            format!("{verb} by {by}")
        } else {
            format!("{verb} by {by}: {}", msg.comment)
        };
        if let Some(a) = job.approval.as_mut() {
            a.approved = Some(msg.approve);
            a.by = by.to_string();
            a.comment = msg.comment.clone();
            a.decided_at_ms = now;
        }
        let (status, message) = (job.status, job.message.clone());
        txn.jobs.insert(job_id.clone());
        let ev = self.event(
            &msg.execution_id,
            &msg.stage,
            &job_id,
            Change::Job(status),
            message,
        );
        txn.events.push(ev);
        self.evaluate_stage(&msg.execution_id, txn);
        Ok(())
    }

    /// With `follow_latest`: when the holder of `stage` has nothing left but pending
    /// follow-latest approvals and an execution waits in front, the approval moves to the
    /// newest waiter (the holder is superseded).
    pub(super) fn follow_latest(&mut self, key: &LaneKey, txn: &mut Txn) {
        let stage = key.0.as_str();
        let Some(lock) = self.locks.get(key) else {
            return;
        };
        let (Some(holder), Some(newest)) = (lock.holders.first(), lock.waiting.back()) else {
            return;
        };
        let (holder, newest) = (holder.execution_id.clone(), newest.execution_id.clone());
        let Some(exec) = self.executions.get(&holder) else {
            return;
        };
        let Some(run) = exec.stages.get(exec.stage_index) else {
            return;
        };
        if exec.status != ExecutionStatus::InProgress
            || run.stage != stage
            || run.status != StageStatus::InProgress
        {
            return;
        }
        let open: Vec<&crate::store::records::JobRecord> = run
            .jobs
            .iter()
            .filter_map(|j| self.jobs.get(j))
            .filter(|j| !j.status.is_final())
            .collect();
        let only_following = !open.is_empty()
            && open.iter().all(|j| {
                j.status == JobStatus::Queued
                    && j.approval.as_ref().is_some_and(|a| a.follow_latest)
            });
        if !only_following {
            return;
        }
        let pending: Vec<String> = open.iter().map(|j| j.id.clone()).collect();
        let by = self
            .executions
            .get(&newest)
            .map(|e| format!("#{} ({})", e.number, e.id))
            .unwrap_or_else(|| newest.clone());
        let now = self.now();
        for id in pending {
            if let Some(job) = self.jobs.get_mut(&id) {
                job.status = JobStatus::Stopped;
                job.finished_at_ms = now;
                job.message = format!("approval moved to {by} (follow_latest)");
                let message = job.message.clone();
                txn.jobs.insert(id.clone());
                let ev = self.event(
                    &holder,
                    stage,
                    &id,
                    Change::Job(JobStatus::Stopped),
                    message,
                );
                txn.events.push(ev);
            }
        }
        let reason = format!(
            "superseded by {by} in {stage}: its pending approval moved to the newer revision \
             (follow_latest)"
        );
        self.set_stage_status(&holder, stage, StageStatus::Superseded, reason.clone(), txn);
        self.end_execution(&holder, ExecutionStatus::Superseded, reason, txn);
        let ask = Ask::HandOver {
            execution_id: holder,
        };
        txn.work.push_back(Work::new(stage, &key.1, ask));
    }
}
