//! Jobs lost with their worker: a new attempt on another worker while the action's
//! `retry.lost` allows it. The new attempt keeps the stage's fence token (the execution still
//! holds the stage) and gets a new job id, so nothing the lost attempt's worker may still say
//! can be taken for the new one.

use super::actor::PipelineActor;
use super::txn::Txn;
use crate::events::Change;
use crate::store::records::{ExecutionStatus, JobStatus};

impl PipelineActor {
    /// Queues a new attempt of a lost job when its action's `retry.lost` allows one and the
    /// execution is not being stopped. Returns whether it did.
    pub(super) fn retry_lost(&mut self, job_id: &str, txn: &mut Txn) -> bool {
        let Some(job) = self.jobs.get(job_id) else {
            return false;
        };
        let Some(exec) = self.executions.get(&job.execution_id) else {
            return false;
        };
        if job.status != JobStatus::Lost || exec.status != ExecutionStatus::InProgress {
            return false;
        }
        let spec = self.spec_of(exec);
        let allowed = spec
            .stages
            .iter()
            .find(|s| s.name == job.stage)
            .and_then(|s| s.actions.iter().find(|a| a.name == job.action))
            .map_or(0, |a| a.retry.lost);
        // Attempt 1 is the first try; `lost: N` allows attempts 2..=N+1.
        if job.attempt > allowed {
            return false;
        }
        let Some(index) = exec.stages.iter().position(|r| r.stage == job.stage) else {
            return false;
        };
        let id = uuid::Uuid::now_v7().to_string();
        let attempt = job.attempt + 1;
        let mut next = job.clone();
        next.id = id.clone();
        next.attempt = attempt;
        next.status = JobStatus::Queued;
        next.worker.clear();
        next.exit_code = 0;
        (next.started_at_ms, next.finished_at_ms, next.steps_done) = (0, 0, 0);
        next.message = format!(
            "attempt {attempt} of {}: attempt {} was lost ({})",
            allowed + 1,
            job.attempt,
            job.message
        );
        next.env.insert("BATON_JOB_ID".into(), id.clone());
        next.env.insert("BATON_ATTEMPT".into(), attempt.to_string());
        let (exec_id, stage, message) = (
            next.execution_id.clone(),
            next.stage.clone(),
            format!("{} retried: {}", next.action, next.message),
        );
        if let Some(exec) = self.executions.get_mut(&exec_id) {
            exec.stages[index].jobs.push(id.clone());
            txn.executions.insert(exec_id.clone());
        }
        self.jobs.insert(id.clone(), next);
        txn.jobs.insert(id.clone());
        txn.enqueue.push(id.clone());
        let event = self.event(
            &exec_id,
            &stage,
            &id,
            Change::Job(JobStatus::Queued),
            message,
        );
        txn.events.push(event);
        true
    }
}
