//! How executions move: what each stage decision, job report and stop request changes.
//!
//! Synchronous methods on the pipeline actor that change its in-memory records and note in the
//! [`Txn`] what to persist, what stage questions to ask next and what to send afterwards.

use std::collections::BTreeMap;

use baton_proto::v1 as pb;

use super::actor::{PipelineActor, StopMode};
use super::progress::{self, JobView, Progress};
use super::revision;
use super::txn::{Txn, Work};
use crate::dispatcher::{JobEvent, JobEventKind, JobSignal};
use crate::error::CoordError;
use crate::events::{Change, Event};
use crate::stage::actor::Decision;
use crate::stage::rules::{Effect, LeaveReason};
use crate::store::records::{
    ExecutionRecord, ExecutionStatus, JobRecord, JobStatus, Revision, StageRun, StageStatus,
};

/// The short form of a commit id used in messages.
pub fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

/// What the worker is sent for a job.
pub fn job_spec(job: &JobRecord) -> pb::JobSpec {
    pb::JobSpec {
        job_id: job.id.clone(),
        execution_id: job.execution_id.clone(),
        pipeline: job.pipeline.clone(),
        stage: job.stage.clone(),
        action: job.action.clone(),
        steps: job.steps.clone(),
        env: job.env.clone().into_iter().collect(),
        timeout_ms: job.timeout_ms,
        grace_ms: job.grace_ms,
        fence_token: job.fence_token,
        attempt: job.attempt,
    }
}

impl PipelineActor {
    fn event(&self, exec: &str, stage: &str, job: &str, change: Change, message: String) -> Event {
        Event {
            seq: 0,
            at_ms: self.now(),
            pipeline: self.name.clone(),
            execution_id: exec.to_string(),
            stage: stage.to_string(),
            job_id: job.to_string(),
            change,
            message,
        }
    }

    /// Creates an execution and sends it to the first stage.
    pub(super) fn create_execution(&mut self, revision: Revision, txn: &mut Txn) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        let now = self.now();
        let number = self.next_number;
        self.next_number += 1;
        let stages = self
            .spec
            .stages
            .iter()
            .map(|s| StageRun {
                stage: s.name.clone(),
                status: StageStatus::Pending,
                started_at_ms: 0,
                finished_at_ms: 0,
                fence_token: 0,
                run_order: 0,
                jobs: Vec::new(),
            })
            .collect();
        let first = self
            .spec
            .stages
            .first()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let message = format!(
            "#{number} started for {} at {}",
            revision.branch,
            short(&revision.commit)
        );
        let exec = ExecutionRecord {
            id: id.clone(),
            pipeline: self.name.clone(),
            pipeline_version: self.version,
            number,
            revision,
            status: ExecutionStatus::InProgress,
            status_reason: String::new(),
            stage_index: 0,
            stages,
            created_at_ms: now,
            updated_at_ms: now,
        };
        txn.events.push(self.event(
            &id,
            "",
            "",
            Change::Execution(ExecutionStatus::InProgress),
            message,
        ));
        self.executions.insert(id.clone(), exec);
        txn.executions.insert(id.clone());
        txn.work.push_back(Work::Arrive {
            execution_id: id.clone(),
            stage: first,
        });
        id
    }

    fn set_stage_status(
        &mut self,
        exec_id: &str,
        stage: &str,
        status: StageStatus,
        message: String,
        txn: &mut Txn,
    ) {
        let now = self.now();
        let Some(exec) = self.executions.get_mut(exec_id) else {
            return;
        };
        if let Some(run) = exec.stages.iter_mut().find(|r| r.stage == stage) {
            run.status = status;
            if !matches!(
                status,
                StageStatus::Waiting | StageStatus::InProgress | StageStatus::Stopping
            ) {
                run.finished_at_ms = now;
            }
        }
        exec.updated_at_ms = now;
        txn.executions.insert(exec_id.to_string());
        let event = self.event(exec_id, stage, "", Change::Stage(status), message);
        txn.events.push(event);
    }

    /// Ends an execution with a final status.
    fn end_execution(
        &mut self,
        exec_id: &str,
        status: ExecutionStatus,
        reason: String,
        txn: &mut Txn,
    ) {
        let now = self.now();
        let Some(exec) = self.executions.get_mut(exec_id) else {
            return;
        };
        exec.status = status;
        exec.status_reason = reason.clone();
        exec.updated_at_ms = now;
        txn.executions.insert(exec_id.to_string());
        let message = if reason.is_empty() {
            format!("{status:?}")
        } else {
            reason
        };
        let event = self.event(exec_id, "", "", Change::Execution(status), message);
        txn.events.push(event);
    }

    fn number_and_commit(&self, exec_id: &str) -> String {
        self.executions
            .get(exec_id)
            .map(|e| format!("#{} ({})", e.number, short(&e.revision.commit)))
            .unwrap_or_else(|| exec_id.to_string())
    }

    /// Why an execution arriving at a SUPERSEDED stage is too old to enter: another execution
    /// of its concurrency key with a higher revision order already reached the stage.
    pub(super) fn too_old_for(&self, exec_id: &str, stage: &str) -> Option<String> {
        let exec = self.executions.get(exec_id)?;
        let order = exec.revision.order;
        if order == 0 {
            return None;
        }
        let spec = self.spec_of(exec);
        let index = exec.stages.iter().position(|r| r.stage == stage)?;
        let mode = spec.stages.get(index)?.effective_mode(spec.mode);
        if mode != crate::pipeline::Mode::Superseded {
            return None;
        }
        let key = exec.revision.branch.as_str();
        let rivals = self
            .executions
            .values()
            .filter(|x| x.id != exec_id)
            .map(|x| revision::Rival {
                id: &x.id,
                key: &x.revision.branch,
                order: x.revision.order,
                reached: revision::reached(x, index),
                status: x.status,
            });
        if let Some(newer) = revision::outranked_by(key, order, rivals) {
            return Some(format!(
                "superseded on arrival at {stage}: {} has a newer revision order ({} > {order})",
                self.number_and_commit(newer.id),
                newer.order
            ));
        }
        let ended = self.ended_orders.highest(key, index);
        (ended > order).then(|| {
            format!(
                "superseded on arrival at {stage}: an execution with a newer revision order \
                 ({ended} > {order}) already went through it"
            )
        })
    }

    /// Ends an execution that arrived at `stage` older than one that already reached it.
    pub(super) fn supersede_on_arrival(
        &mut self,
        exec_id: &str,
        stage: &str,
        reason: String,
        txn: &mut Txn,
    ) {
        self.set_stage_status(exec_id, stage, StageStatus::Superseded, reason.clone(), txn);
        self.end_execution(exec_id, ExecutionStatus::Superseded, reason, txn);
    }

    /// Applies a stage actor's decision.
    pub(super) fn apply_decision(&mut self, stage: &str, decision: Decision, txn: &mut Txn) {
        self.locks.insert(stage.to_string(), decision.lock);
        txn.stages.insert(stage.to_string());
        for effect in decision.effects {
            match effect {
                Effect::Enter {
                    execution_id,
                    fence_token,
                } => self.enter(&execution_id, stage, fence_token, txn),
                Effect::Wait { execution_id } => {
                    let holder = self
                        .locks
                        .get(stage)
                        .and_then(|l| l.holders.first())
                        .map(|h| self.number_and_commit(&h.execution_id))
                        .unwrap_or_default();
                    self.set_stage_status(
                        &execution_id,
                        stage,
                        StageStatus::Waiting,
                        format!("waits in front of {stage}: lock held by {holder}"),
                        txn,
                    );
                }
                Effect::Supersede { execution_id, by } => {
                    let reason = format!(
                        "superseded by {} in front of {stage}",
                        self.number_and_commit(&by)
                    );
                    self.set_stage_status(
                        &execution_id,
                        stage,
                        StageStatus::Superseded,
                        reason.clone(),
                        txn,
                    );
                    self.end_execution(&execution_id, ExecutionStatus::Superseded, reason, txn);
                }
            }
        }
    }

    fn enter(&mut self, exec_id: &str, stage: &str, fence_token: u64, txn: &mut Txn) {
        let now = self.now();
        let Some(exec) = self.executions.get_mut(exec_id) else {
            return;
        };
        let spec = self
            .specs
            .get(&exec.pipeline_version)
            .cloned()
            .unwrap_or_else(|| self.spec.clone());
        let Some(index) = exec.stages.iter().position(|r| r.stage == stage) else {
            return;
        };
        exec.stage_index = index;
        let run = &mut exec.stages[index];
        run.started_at_ms = now;
        run.fence_token = fence_token;
        let first = spec
            .stages
            .get(index)
            .and_then(|s| s.run_orders().first().copied())
            .unwrap_or(1);
        self.set_stage_status(
            exec_id,
            stage,
            StageStatus::InProgress,
            format!("entered {stage} with fence token {fence_token}"),
            txn,
        );
        self.start_order(exec_id, index, first, txn);
    }

    /// Creates the jobs of one run order of the execution's current stage.
    fn start_order(&mut self, exec_id: &str, index: usize, order: u32, txn: &mut Txn) {
        let Some(exec) = self.executions.get(exec_id) else {
            return;
        };
        let spec = self.spec_of(exec);
        let Some(stage) = spec.stages.get(index) else {
            return;
        };
        let fence = exec.stages[index].fence_token;
        let mut created = Vec::new();
        for action in stage.actions.iter().filter(|a| a.run_order == order) {
            let id = uuid::Uuid::now_v7().to_string();
            let mut env: BTreeMap<String, String> = action.env.clone();
            for (k, v) in [
                ("BATON_PIPELINE", self.name.clone()),
                ("BATON_PIPELINE_VERSION", exec.pipeline_version.to_string()),
                ("BATON_STAGE", stage.name.clone()),
                ("BATON_ACTION", action.name.clone()),
                ("BATON_EXECUTION_ID", exec.id.clone()),
                ("BATON_EXECUTION_NUMBER", exec.number.to_string()),
                ("BATON_BRANCH", exec.revision.branch.clone()),
                ("BATON_COMMIT", exec.revision.commit.clone()),
                ("BATON_COMMIT_MESSAGE", exec.revision.message.clone()),
                ("BATON_FENCE_TOKEN", fence.to_string()),
                ("BATON_JOB_ID", id.clone()),
                ("BATON_ATTEMPT", "1".to_string()),
            ] {
                env.insert(k.to_string(), v);
            }
            created.push(JobRecord {
                id,
                execution_id: exec.id.clone(),
                pipeline: self.name.clone(),
                stage: stage.name.clone(),
                action: action.name.clone(),
                run_order: order,
                attempt: 1,
                status: JobStatus::Queued,
                worker: String::new(),
                exit_code: 0,
                started_at_ms: 0,
                finished_at_ms: 0,
                steps_done: 0,
                steps: action.steps.clone(),
                labels: action.labels.clone(),
                env,
                timeout_ms: action.timeout.map(|t| t.as_millis() as u64).unwrap_or(0),
                grace_ms: action.grace.as_millis() as u64,
                fence_token: fence,
                message: String::new(),
            });
        }
        let stage_name = stage.name.clone();
        for job in created {
            txn.jobs.insert(job.id.clone());
            txn.enqueue.push(job.id.clone());
            let event = self.event(
                exec_id,
                &stage_name,
                &job.id,
                Change::Job(JobStatus::Queued),
                format!("{} queued", job.action),
            );
            txn.events.push(event);
            if let Some(exec) = self.executions.get_mut(exec_id) {
                exec.stages[index].jobs.push(job.id.clone());
                exec.stages[index].run_order = order;
            }
            self.jobs.insert(job.id.clone(), job);
        }
        txn.executions.insert(exec_id.to_string());
    }

    /// A worker's report about a job. Reports from stale fence tokens are dropped.
    pub(super) fn on_job_event(&mut self, event: JobEvent, txn: &mut Txn) {
        let now = self.now();
        let Some(job) = self.jobs.get_mut(&event.job_id) else {
            tracing::debug!(job_id = %event.job_id, "report for a job that is no longer live");
            return;
        };
        if job.status.is_final() {
            return;
        }
        let current = self.executions.get(&job.execution_id).and_then(|e| {
            let run = e.stages.get(e.stage_index)?;
            (run.stage == job.stage && run.fence_token == job.fence_token).then_some(())
        });
        if current.is_none() {
            tracing::warn!(job_id = %job.id, fence = job.fence_token, "dropped a report with a stale fence token");
            return;
        }
        let (exec_id, stage, job_id) =
            (job.execution_id.clone(), job.stage.clone(), job.id.clone());
        let message = match event.kind {
            JobEventKind::Accepted { worker } => {
                job.status = JobStatus::Running;
                job.worker = worker.clone();
                job.started_at_ms = now;
                Some(format!("{} running on {worker}", job.action))
            }
            JobEventKind::StepFinished { steps_done } => {
                job.steps_done = job.steps_done.max(steps_done);
                None
            }
            JobEventKind::Finished {
                status,
                exit_code,
                steps_done,
                message,
            } => {
                job.status = status;
                job.exit_code = exit_code;
                job.steps_done = job.steps_done.max(steps_done);
                job.finished_at_ms = now;
                job.message = message;
                Some(format!("{} {:?}", job.action, status))
            }
        };
        txn.jobs.insert(job_id.clone());
        if let Some(message) = message {
            let status = job.status;
            let ev = self.event(&exec_id, &stage, &job_id, Change::Job(status), message);
            txn.events.push(ev);
            self.evaluate_stage(&exec_id, txn);
        }
    }

    /// Moves an execution on once its current stage's jobs allow it.
    fn evaluate_stage(&mut self, exec_id: &str, txn: &mut Txn) {
        let Some(exec) = self.executions.get(exec_id) else {
            return;
        };
        let index = exec.stage_index;
        let spec = self.spec_of(exec);
        let Some(stage_spec) = spec.stages.get(index) else {
            return;
        };
        let run = &exec.stages[index];
        if !matches!(run.status, StageStatus::InProgress | StageStatus::Stopping) {
            return;
        }
        let views: Vec<JobView<'_>> = run
            .jobs
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .filter(|j| j.run_order == run.run_order)
            .map(|j| JobView {
                action: &j.action,
                status: j.status,
                exit_code: j.exit_code,
                message: &j.message,
            })
            .collect();
        let stopping = exec.status == ExecutionStatus::Stopping;
        let decision =
            progress::evaluate(&views, &stage_spec.run_orders(), run.run_order, stopping);
        let stage = stage_spec.name.clone();
        let reason = exec.status_reason.clone();
        let next_stage = spec.stages.get(index + 1).map(|s| s.name.clone());
        match decision {
            Progress::Running => {}
            Progress::Next(order) => self.start_order(exec_id, index, order, txn),
            Progress::Stopped => {
                self.set_stage_status(exec_id, &stage, StageStatus::Stopped, reason.clone(), txn);
                self.end_execution(exec_id, ExecutionStatus::Stopped, reason, txn);
                self.leave(exec_id, &stage, LeaveReason::Stopped, txn);
            }
            Progress::Failed(why) => {
                self.set_stage_status(exec_id, &stage, StageStatus::Failed, why.clone(), txn);
                self.end_execution(
                    exec_id,
                    ExecutionStatus::Failed,
                    format!("{stage}: {why}"),
                    txn,
                );
                self.leave(exec_id, &stage, LeaveReason::Failed, txn);
            }
            Progress::Succeeded => {
                self.set_stage_status(
                    exec_id,
                    &stage,
                    StageStatus::Succeeded,
                    format!("{stage} succeeded"),
                    txn,
                );
                self.leave(exec_id, &stage, LeaveReason::Succeeded, txn);
                match next_stage {
                    Some(next) => {
                        if let Some(exec) = self.executions.get_mut(exec_id) {
                            exec.stage_index = index + 1;
                        }
                        txn.work.push_back(Work::Arrive {
                            execution_id: exec_id.to_string(),
                            stage: next,
                        });
                    }
                    None => {
                        self.end_execution(exec_id, ExecutionStatus::Succeeded, String::new(), txn)
                    }
                }
            }
        }
    }

    fn leave(&mut self, exec_id: &str, stage: &str, reason: LeaveReason, txn: &mut Txn) {
        txn.work.push_back(Work::Leave {
            execution_id: exec_id.to_string(),
            stage: stage.to_string(),
            reason,
        });
    }

    /// Stops an execution: a waiting one leaves the line at once; one inside a stage drains
    /// or abandons its running jobs and leaves once they have ended.
    pub(super) fn stop(
        &mut self,
        exec_id: &str,
        mode: StopMode,
        reason: &str,
        txn: &mut Txn,
    ) -> Result<(), CoordError> {
        let Some(exec) = self.executions.get(exec_id) else {
            return match self
                .shared
                .store
                .get_json::<ExecutionRecord>(crate::store::Tree::Executions, exec_id.as_bytes())?
            {
                Some(e) => Err(CoordError::Precondition(format!(
                    "execution #{} has already ended ({:?}); nothing to stop",
                    e.number, e.status
                ))),
                None => Err(CoordError::NotFound(format!(
                    "execution {exec_id} not found"
                ))),
            };
        };
        if exec.status == ExecutionStatus::Stopping && mode == StopMode::Wait {
            return Err(CoordError::Precondition(format!(
                "execution #{} is already stopping; stop it with abandon to terminate its jobs",
                exec.number
            )));
        }
        let index = exec.stage_index;
        let run = &exec.stages[index];
        let stage = run.stage.clone();
        let (status, number) = (run.status, exec.number);
        let why = match (mode, reason.is_empty()) {
            (StopMode::Wait, true) => "stopped (wait)".to_string(),
            (StopMode::Abandon, true) => "stopped (abandon)".to_string(),
            (_, false) => format!("stopped: {reason}"),
        };
        if matches!(status, StageStatus::Waiting | StageStatus::Pending) {
            self.set_stage_status(exec_id, &stage, StageStatus::Stopped, why.clone(), txn);
            self.end_execution(exec_id, ExecutionStatus::Stopped, why, txn);
            txn.work.push_back(Work::Withdraw {
                execution_id: exec_id.to_string(),
                stage,
            });
            return Ok(());
        }
        let job_ids: Vec<String> = run.jobs.clone();
        if let Some(exec) = self.executions.get_mut(exec_id) {
            exec.status = ExecutionStatus::Stopping;
            exec.status_reason = why.clone();
        }
        let ev = self.event(
            exec_id,
            "",
            "",
            Change::Execution(ExecutionStatus::Stopping),
            format!("#{number} {why}"),
        );
        txn.events.push(ev);
        self.set_stage_status(exec_id, &stage, StageStatus::Stopping, why, txn);
        let now = self.now();
        for id in job_ids {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            match job.status {
                JobStatus::Queued => {
                    job.status = JobStatus::Stopped;
                    job.finished_at_ms = now;
                    job.message = "stopped before it started".into();
                    txn.jobs.insert(id.clone());
                    txn.cancel.push(id);
                }
                JobStatus::Running => {
                    let signal = match mode {
                        StopMode::Wait => JobSignal::Drain,
                        StopMode::Abandon => JobSignal::Abandon {
                            grace_ms: job.grace_ms,
                        },
                    };
                    txn.signals.push((id, signal));
                }
                _ => {}
            }
        }
        self.evaluate_stage(exec_id, txn);
        Ok(())
    }
}
