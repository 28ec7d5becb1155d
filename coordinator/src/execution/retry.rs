//! RetryStageExecution: a failed or stopped execution resumes in the stage it left, either
//! with the actions that did not succeed or with all of them, as long as no other execution
//! has entered that stage since (the stage's fence token says so).

use std::sync::Arc;

use actix::prelude::*;

use super::actor::{PipelineActor, answer, reply_once};
use super::txn::{Txn, Work};
use crate::error::CoordError;
use crate::events::Change;
use crate::pipeline::parse_pipeline_file;
use crate::stage::actor::Ask;
use crate::stage::reentry;
use crate::store::records::{ExecutionRecord, ExecutionStatus, JobRecord, JobStatus, StageStatus};
use crate::store::{Tree, key_num};

/// Resumes a failed or stopped execution in `stage`; answers with it once durable.
#[derive(Message)]
#[rtype(result = "Result<ExecutionRecord, CoordError>")]
pub struct Retry {
    /// The execution.
    pub execution_id: String,
    /// The stage it failed or was stopped in.
    pub stage: String,
    /// Run every action of the stage again (false: only those that did not succeed).
    pub all_actions: bool,
}

impl Handler<Retry> for PipelineActor {
    type Result = ResponseFuture<Result<ExecutionRecord, CoordError>>;
    fn handle(&mut self, msg: Retry, ctx: &mut Context<Self>) -> Self::Result {
        let mut txn = Txn::default();
        if let Err(e) = self.retry(&msg, &mut txn) {
            return Box::pin(async move { Err(e) });
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let id = msg.execution_id;
        reply_once(&mut txn, tx, move |act| {
            act.executions
                .get(&id)
                .cloned()
                .ok_or_else(|| CoordError::NotFound(format!("execution {id} not found")))
        });
        self.run(txn, ctx);
        Box::pin(answer(rx))
    }
}

impl PipelineActor {
    fn retry(&mut self, msg: &Retry, txn: &mut Txn) -> Result<(), CoordError> {
        let precondition = |m: String| Err(CoordError::Precondition(m));
        if let Some(live) = self
            .executions
            .get(&msg.execution_id)
            .filter(|e| !e.status.is_final())
        {
            return precondition(format!(
                "execution #{} is {:?}; only a failed or stopped execution can be retried",
                live.number, live.status
            ));
        }
        let store = self.shared.store.clone();
        // An execution that ended in a batch still flushing is still in memory.
        let in_memory = self.executions.get(&msg.execution_id).cloned();
        let mut exec: ExecutionRecord = match in_memory {
            Some(exec) => Some(exec),
            None => store.get_json(Tree::Executions, msg.execution_id.as_bytes())?,
        }
        .filter(|e: &ExecutionRecord| e.pipeline == self.name)
        .ok_or_else(|| CoordError::NotFound(format!("execution {} not found", msg.execution_id)))?;
        let n = exec.number;
        if !matches!(
            exec.status,
            ExecutionStatus::Failed | ExecutionStatus::Stopped
        ) {
            return precondition(format!(
                "execution #{n} is {:?}; only a failed or stopped execution can be retried",
                exec.status
            ));
        }
        let Some(index) = exec.stages.iter().position(|r| r.stage == msg.stage) else {
            return Err(CoordError::NotFound(format!(
                "execution #{n} has no stage `{}`",
                msg.stage
            )));
        };
        let current = exec.stages[exec.stage_index].stage.clone();
        if index != exec.stage_index {
            return precondition(format!(
                "execution #{n} ended in stage `{current}`, not `{}`; retry `{current}`",
                msg.stage
            ));
        }
        let run = &exec.stages[index];
        if run.fence_token == 0 || !matches!(run.status, StageStatus::Failed | StageStatus::Stopped)
        {
            return precondition(format!(
                "execution #{n} was {:?} while waiting in front of `{current}` (inbound); it never \
                 entered the stage, so there is nothing to retry: start a new execution instead",
                exec.status
            ));
        }
        self.ensure_spec(exec.pipeline_version)?;
        let mode = self
            .spec
            .stages
            .iter()
            .find(|s| s.name == current)
            .map(|s| s.effective_mode(self.spec.mode))
            .unwrap_or(self.spec.mode);
        let lane = self.lane_of_exec(&exec, &current);
        let lock = self
            .locks
            .get(&(current.clone(), lane.clone()))
            .cloned()
            .unwrap_or_default();
        if let Some(why) = reentry::refusal(&lock, mode, run.fence_token) {
            return precondition(format!(
                "execution #{n} cannot be retried in `{current}`: {}",
                self.name_ids(&why)
            ));
        }
        let fence_token = run.fence_token;
        for job_id in exec.stages.iter().flat_map(|r| r.jobs.iter()) {
            if self.jobs.contains_key(job_id) {
                continue;
            }
            if let Some(job) = store.get_json::<JobRecord>(Tree::Jobs, job_id.as_bytes())? {
                self.jobs.insert(job_id.clone(), job);
            }
        }
        let what = if msg.all_actions {
            "all actions"
        } else {
            "failed actions"
        };
        let reason = format!("retried in {current} ({what})");
        exec.status = ExecutionStatus::InProgress;
        exec.status_reason = reason.clone();
        exec.cancel = None;
        exec.updated_at_ms = self.now();
        self.executions.insert(exec.id.clone(), exec);
        txn.executions.insert(msg.execution_id.clone());
        let ev = self.event(
            &msg.execution_id,
            "",
            "",
            Change::Execution(ExecutionStatus::InProgress),
            format!("#{n} {reason}"),
        );
        txn.events.push(ev);
        if !msg.all_actions {
            txn.retry_failed_only.insert(msg.execution_id.clone());
        }
        let ask = Ask::Reenter {
            execution_id: msg.execution_id.clone(),
            fence_token,
        };
        txn.work.push_back(Work::new(&current, &lane, ask));
        Ok(())
    }

    /// The stage refused a retried execution after all (it was taken in between): it ends
    /// Failed again.
    pub(super) fn retry_refused(&mut self, work: &Work, refused: &str, txn: &mut Txn) {
        if let Ask::Reenter { execution_id, .. } = &work.ask {
            let reason = format!("retry refused in {}: {refused}", work.stage);
            self.end_execution(execution_id, ExecutionStatus::Failed, reason, txn);
        }
    }

    /// Replaces execution ids in `text` with `#N (commit)` where known.
    fn name_ids(&self, text: &str) -> String {
        let mut out = text.to_string();
        for lock in self.locks.values() {
            let ids = lock
                .holders
                .iter()
                .map(|h| &h.execution_id)
                .chain(lock.waiting.iter().map(|w| &w.execution_id));
            for id in ids {
                if let Some(e) = self.executions.get(id) {
                    out = out.replace(
                        id.as_str(),
                        &format!("#{} ({})", e.number, super::short(&e.revision.commit)),
                    );
                }
            }
        }
        out
    }

    /// Loads definition `version` from the store if no live execution needed it so far.
    fn ensure_spec(&mut self, version: u64) -> Result<(), CoordError> {
        if self.specs.contains_key(&version) {
            return Ok(());
        }
        let yaml = self
            .shared
            .store
            .get(Tree::PipelineVersions, &key_num(&self.name, version))?
            .ok_or_else(|| {
                CoordError::Precondition(format!(
                    "version {version} of pipeline `{}` is no longer stored",
                    self.name
                ))
            })?;
        let spec = parse_pipeline_file("stored", &String::from_utf8_lossy(&yaml))
            .map_err(|e| CoordError::Precondition(e.to_string()))?;
        self.specs.insert(version, Arc::new(spec));
        Ok(())
    }

    /// Starts again the actions of the current run order that did not succeed (a retry of
    /// failed actions); when all of them had succeeded, the stage goes on from there.
    pub(super) fn start_unfinished(&mut self, exec_id: &str, index: usize, txn: &mut Txn) {
        let Some(exec) = self.executions.get(exec_id) else {
            return;
        };
        let run = &exec.stages[index];
        let order = run.run_order.max(1);
        let spec = self.spec_of(exec);
        let Some(stage) = spec.stages.get(index) else {
            return;
        };
        let unfinished: Vec<String> = stage
            .actions
            .iter()
            .filter(|a| a.run_order == order)
            .filter(|a| {
                let latest = run
                    .jobs
                    .iter()
                    .filter_map(|j| self.jobs.get(j))
                    .rfind(|j| j.action == a.name);
                latest.is_none_or(|j| j.status != JobStatus::Succeeded)
            })
            .map(|a| a.name.clone())
            .collect();
        if unfinished.is_empty() {
            self.evaluate_stage(exec_id, txn);
        } else {
            self.start_actions(exec_id, index, order, Some(&unfinished), txn);
        }
    }
}
