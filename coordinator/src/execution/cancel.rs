//! Auto-cancel, applied: the pipeline actor asks [`super::auto_cancel`] what a new execution
//! ends and carries the verdicts out in the same transaction as the new execution's start.

use super::actor::{PipelineActor, StopMode};
use super::auto_cancel::{self, Candidate, Verdict};
use super::txn::{Txn, Work};
use crate::pipeline::CancelStop;
use crate::stage::actor::Ask;
use crate::store::records::{ExecutionStatus, PendingCancel, StageStatus};

impl PipelineActor {
    /// Ends what the new execution `new_id` cancels under the pipeline's auto-cancel policy.
    pub(super) fn auto_cancel(&mut self, new_id: &str, txn: &mut Txn) {
        let Some(new) = self.executions.get(new_id) else {
            return;
        };
        let Some(running) = auto_cancel::rule_for(&self.spec, &new.revision) else {
            return;
        };
        let rule = if running { "running" } else { "queued" };
        let reason = format!(
            "cancelled by #{} ({}): auto_cancel {rule} for a newer execution of {}",
            new.number,
            new.id,
            match self.spec.concurrency_key {
                crate::pipeline::ConcurrencyKey::Branch =>
                    format!("branch {}", new.revision.branch),
                crate::pipeline::ConcurrencyKey::Pipeline => format!("pipeline {}", self.name),
            }
        );
        let candidates: Vec<Candidate<'_>> = self
            .executions
            .values()
            .filter(|e| e.id != new_id && !e.status.is_final())
            .filter_map(|e| {
                let run = e.stages.get(e.stage_index)?;
                let stage = self.spec_of(e).stages.get(e.stage_index).cloned();
                Some(Candidate {
                    id: &e.id,
                    number: e.number,
                    order: e.revision.order,
                    branch: &e.revision.branch,
                    status: e.status,
                    stage_status: run.status,
                    interruptible: stage.as_ref().is_none_or(|s| !s.uninterruptible),
                    on_cancel: stage.map(|s| s.on_cancel).unwrap_or_default(),
                })
            })
            .collect();
        let mut verdicts = auto_cancel::decide(
            self.spec.concurrency_key,
            running,
            new.number,
            &new.revision,
            &candidates,
        );
        auto_cancel::carrying_order(&mut verdicts, |id| {
            self.executions.get(id).map_or(0, |e| e.number)
        });
        for verdict in verdicts {
            match verdict {
                Verdict::CancelWaiting(id) => self.cancel_waiting(&id, &reason, txn),
                Verdict::StopRunning(id, stop) => {
                    if let Some(exec) = self.executions.get_mut(&id) {
                        exec.cancel = Some(PendingCancel {
                            reason: reason.clone(),
                            at_boundary: false,
                        });
                    }
                    let mode = match stop {
                        CancelStop::Abandon => StopMode::Abandon,
                        CancelStop::Drain => StopMode::Wait,
                    };
                    self.stop_inside(&id, mode, reason.clone(), txn);
                }
                Verdict::CancelAtBoundary(id) => {
                    if let Some(exec) = self.executions.get_mut(&id) {
                        exec.cancel = Some(PendingCancel {
                            reason: reason.clone(),
                            at_boundary: true,
                        });
                        txn.executions.insert(id.clone());
                    }
                    let ev = self.event(
                        &id,
                        "",
                        "",
                        crate::events::Change::Execution(ExecutionStatus::InProgress),
                        format!("finishes its non-interruptible stage, then is {reason}"),
                    );
                    txn.events.push(ev);
                }
            }
        }
    }

    fn cancel_waiting(&mut self, id: &str, reason: &str, txn: &mut Txn) {
        let Some(exec) = self.executions.get(id) else {
            return;
        };
        let Some(stage) = exec.stages.get(exec.stage_index).map(|r| r.stage.clone()) else {
            return;
        };
        let lane = self.lane_of_exec(exec, &stage);
        self.set_stage_status(id, &stage, StageStatus::Cancelled, reason.to_string(), txn);
        self.end_execution(id, ExecutionStatus::Cancelled, reason.to_string(), txn);
        let ask = Ask::Withdraw {
            execution_id: id.to_string(),
        };
        txn.work.push_back(Work::new(&stage, &lane, ask));
    }
}
