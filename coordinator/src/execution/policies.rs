//! The pipeline actor's side of the stage policies: lanes, transitions, pausing and resuming,
//! stopping a holder for a newer execution (`when_busy: cancel_running`), settle timers, and
//! the "who waits and why" of GetPipelineState.

use actix::prelude::*;

use super::actor::{PipelineActor, StageView, StopMode};
use super::lanes::{LaneKey, lane_of};
use super::txn::{Txn, Work};
use crate::error::CoordError;
use crate::events::Change;
use crate::pipeline::{LaneScope, Lanes, Mode, QueueOrder, StageSpec};
use crate::stage::actor::Ask;
use crate::stage::rules::{Now, StageLock, Transition, why_waiting};
use crate::stage::words::why_in_words;
use crate::store::records::{ExecutionRecord, ExecutionStatus, StageStatus};

/// How a holder is stopped when a newer execution arrives at a `cancel_running` stage.
///
/// The stage's `on_cancel` decides: `abandon` (the default) terminates the running jobs,
/// `drain` lets each finish its current step.
pub fn cancel_running_stop_mode(stage: &StageSpec) -> StopMode {
    match stage.on_cancel {
        crate::pipeline::CancelStop::Abandon => StopMode::Abandon,
        crate::pipeline::CancelStop::Drain => StopMode::Wait,
    }
}

/// Enables or disables the transition into a stage; answers once it is durable.
#[derive(Message)]
#[rtype(result = "Result<Transition, CoordError>")]
pub struct SetTransition {
    /// Stage name.
    pub stage: String,
    /// Enabled, or disabled with who and why.
    pub transition: Transition,
}

/// Resumes a Paused execution; answers with it once the change is durable.
#[derive(Message)]
#[rtype(result = "Result<ExecutionRecord, CoordError>")]
pub struct Resume {
    /// The execution.
    pub execution_id: String,
}

impl PipelineActor {
    /// The lane in which execution `exec` meets `stage` (by its pinned definition).
    pub(super) fn lane_of_exec(&self, exec: &ExecutionRecord, stage: &str) -> String {
        lane_of(&self.spec_of(exec), stage, &exec.revision.branch)
    }

    /// The moment a stage question is asked: now, and the newest execution of the lane still
    /// in an earlier stage (for `order: newest_first`).
    pub(super) fn moment(&self, key: &LaneKey) -> Now {
        let (stage, lane) = key;
        let now = self.now();
        // Only `order: newest_first` looks upstream: other stages skip the scan.
        let policy = self.policy_of(stage);
        if !(policy.mode == Mode::Queued && policy.order == QueueOrder::NewestFirst) {
            return Now {
                ms: now,
                newest_upstream: None,
            };
        }
        let newest_upstream = self
            .executions
            .values()
            .filter(|e| {
                matches!(
                    e.status,
                    ExecutionStatus::InProgress | ExecutionStatus::Paused
                )
            })
            .filter(|e| {
                self.spec_of(e)
                    .stage_index(stage)
                    .is_some_and(|i| e.stage_index < i)
                    && self.lane_of_exec(e, stage) == *lane
            })
            .map(|e| e.number)
            .max();
        Now {
            ms: now,
            newest_upstream,
        }
    }

    /// After an execution ended: stages that hold off for newer upstream executions
    /// (`order: newest_first`) may now let someone in.
    pub(super) fn recheck_upstream(&self, exec_id: &str, txn: &mut Txn) {
        let Some(exec) = self.executions.get(exec_id) else {
            return;
        };
        let spec = self.spec_of(exec);
        for (i, stage) in spec.stages.iter().enumerate() {
            if i > exec.stage_index && stage.order == Some(QueueOrder::NewestFirst) {
                let lane = self.lane_of_exec(exec, &stage.name);
                txn.work.push_back(Work::new(&stage.name, &lane, Ask::Tick));
            }
        }
    }

    /// Arms a timer that asks the stage again at `at_ms` (a settle window ends).
    pub(super) fn arm_timer(&self, key: LaneKey, at_ms: i64, ctx: &mut Context<Self>) {
        let sleep = self.shared.clock.sleep_until(at_ms);
        ctx.spawn(sleep.into_actor(self).map(move |_, act, ctx| {
            let mut txn = Txn::default();
            txn.work.push_back(Work::new(&key.0, &key.1, Ask::Tick));
            act.run(txn, ctx);
        }));
    }

    /// "#3 (abc1234)" for an execution this actor knows, else its id.
    pub(super) fn label(&self, exec_id: &str) -> String {
        self.executions
            .get(exec_id)
            .map(|e| format!("#{} ({})", e.number, super::short(&e.revision.commit)))
            .unwrap_or_else(|| exec_id.to_string())
    }

    /// Why `exec_id` waits in front of the stage `key`, in words.
    pub(super) fn why(&self, key: &LaneKey, exec_id: &str) -> String {
        let lock = self.locks.get(key).cloned().unwrap_or_default();
        let index = lock
            .waiting
            .iter()
            .position(|w| w.execution_id == exec_id)
            .unwrap_or(usize::MAX);
        let why = why_waiting(&lock, &self.policy_of(&key.0), index, self.moment(key));
        why_in_words(&why, |id| self.label(id))
    }

    /// The newer execution `by` asks holder `exec_id` to leave: it is stopped (see
    /// [`cancel_running_stop_mode`]) and ends Cancelled once its jobs have ended.
    pub(super) fn cancel_holder(&mut self, exec_id: &str, by: &str, stage: &str, txn: &mut Txn) {
        let by_label = self.label(by);
        let Some(exec) = self.executions.get(exec_id) else {
            return;
        };
        if exec.status != ExecutionStatus::InProgress {
            // Already stopping for a person; it leaves when that stop ends.
            return;
        }
        let spec = self.spec_of(exec);
        if let Some(exec) = self.executions.get_mut(exec_id) {
            exec.cancelled_by = Some(by.to_string());
        }
        let mode = spec
            .stages
            .iter()
            .find(|s| s.name == stage)
            .map_or(StopMode::Abandon, cancel_running_stop_mode);
        let reason = format!(
            "cancelled by {by_label}, newer, arriving at {stage} (when_busy: cancel_running)"
        );
        if let Err(e) = self.stop_for(exec_id, mode, reason, txn) {
            tracing::warn!(execution = %exec_id, error = %e, "could not cancel the holder");
        }
    }

    /// A Paused execution waits in front of a stage for a person.
    pub(super) fn pause(&mut self, exec_id: &str, stage: &str, txn: &mut Txn) {
        let Some(exec) = self.executions.get_mut(exec_id) else {
            return;
        };
        exec.status = ExecutionStatus::Paused;
        exec.status_reason = format!("paused in front of {stage}: waiting for a person to resume");
        let (number, reason) = (exec.number, exec.status_reason.clone());
        let event = self.event(
            exec_id,
            "",
            "",
            Change::Execution(ExecutionStatus::Paused),
            format!("#{number} {reason}"),
        );
        txn.events.push(event);
        self.set_stage_status(exec_id, stage, StageStatus::Waiting, reason, txn);
    }

    /// A Paused execution goes on (resumed, or let in).
    pub(super) fn unpause(&mut self, exec_id: &str, txn: &mut Txn) {
        let Some(exec) = self.executions.get_mut(exec_id) else {
            return;
        };
        if exec.status != ExecutionStatus::Paused {
            return;
        }
        exec.status = ExecutionStatus::InProgress;
        exec.status_reason = String::new();
        let number = exec.number;
        txn.executions.insert(exec_id.to_string());
        let event = self.event(
            exec_id,
            "",
            "",
            Change::Execution(ExecutionStatus::InProgress),
            format!("#{number} resumed"),
        );
        txn.events.push(event);
    }

    /// Every stage's lanes, in stage order, with why each waiter waits.
    pub(super) fn stage_views(&self) -> Vec<StageView> {
        let mut views = Vec::new();
        for stage in &self.spec.stages {
            let per_lane = self.spec.lanes == Lanes::Branch && stage.lane != LaneScope::Shared;
            let mut lanes: Vec<&String> = self
                .locks
                .keys()
                .filter(|(s, _)| *s == stage.name)
                .map(|(_, lane)| lane)
                .filter(|lane| !per_lane || !lane.is_empty())
                .collect();
            lanes.sort();
            let empty = String::new();
            if lanes.is_empty() {
                lanes.push(&empty);
            }
            for lane in lanes {
                let key = (stage.name.clone(), lane.clone());
                let mut lock: StageLock = self.locks.get(&key).cloned().unwrap_or_default();
                lock.transition = self
                    .transitions
                    .get(&stage.name)
                    .cloned()
                    .unwrap_or_default();
                let reasons = lock
                    .waiting
                    .iter()
                    .map(|w| self.why(&key, &w.execution_id))
                    .collect();
                views.push(StageView {
                    stage: stage.name.clone(),
                    lane: lane.clone(),
                    policy: self.policy_of(&stage.name),
                    lock,
                    reasons,
                });
            }
        }
        views
    }

    /// The lanes of `stage` that have a stage actor or a stored lock, the default lane always.
    fn lanes_of(&self, stage: &str) -> Vec<String> {
        let mut lanes: Vec<String> = self
            .locks
            .keys()
            .chain(self.stages.keys())
            .filter(|(s, _)| s == stage)
            .map(|(_, l)| l.clone())
            .collect();
        lanes.push(String::new());
        lanes.sort();
        lanes.dedup();
        lanes
    }
}

impl Handler<SetTransition> for PipelineActor {
    type Result = ResponseFuture<Result<Transition, CoordError>>;
    fn handle(&mut self, msg: SetTransition, ctx: &mut Context<Self>) -> Self::Result {
        if self.spec.stage_index(&msg.stage).is_none() {
            let known: Vec<&str> = self.spec.stages.iter().map(|s| s.name.as_str()).collect();
            let e = CoordError::NotFound(format!(
                "pipeline '{}' has no stage '{}'; its stages are {}",
                self.name,
                msg.stage,
                known.join(", ")
            ));
            return Box::pin(async move { Err(e) });
        }
        self.transitions
            .insert(msg.stage.clone(), msg.transition.clone());
        let mut txn = Txn::default();
        for lane in self.lanes_of(&msg.stage) {
            let ask = Ask::SetTransition(msg.transition.clone());
            txn.work.push_back(Work::new(&msg.stage, &lane, ask));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let transition = msg.transition;
        txn.replies.push(Box::new(move |_, result| {
            let _ = tx.send(result.map(|_| transition).map_err(CoordError::from));
        }));
        self.run(txn, ctx);
        Box::pin(async move { rx.await.map_err(|_| CoordError::Unavailable)? })
    }
}

impl Handler<Resume> for PipelineActor {
    type Result = ResponseFuture<Result<ExecutionRecord, CoordError>>;
    fn handle(&mut self, msg: Resume, ctx: &mut Context<Self>) -> Self::Result {
        let id = msg.execution_id;
        let exec = match self.executions.get(&id) {
            Some(e) if e.status == ExecutionStatus::Paused => e.clone(),
            Some(e) => {
                let e = CoordError::Precondition(format!(
                    "execution #{} is {:?}, not Paused; only a paused execution can be resumed",
                    e.number, e.status
                ));
                return Box::pin(async move { Err(e) });
            }
            None => {
                let e = CoordError::Precondition(format!(
                    "execution {id} is not a live execution of pipeline '{}'; only a paused \
                     execution can be resumed",
                    self.name
                ));
                return Box::pin(async move { Err(e) });
            }
        };
        let stage = exec
            .stages
            .get(exec.stage_index)
            .map(|r| r.stage.clone())
            .unwrap_or_default();
        let lane = self.lane_of_exec(&exec, &stage);
        let mut txn = Txn::default();
        self.unpause(&id, &mut txn);
        let ask = Ask::Resume {
            execution_id: id.clone(),
        };
        txn.work.push_back(Work::new(&stage, &lane, ask));
        let (tx, rx) = tokio::sync::oneshot::channel();
        txn.replies.push(Box::new(move |act, result| {
            let answer = result.map_err(CoordError::from).and_then(|_| {
                act.executions
                    .get(&id)
                    .cloned()
                    .or_else(|| {
                        act.shared
                            .store
                            .get_json(crate::store::Tree::Executions, id.as_bytes())
                            .ok()
                            .flatten()
                    })
                    .ok_or_else(|| CoordError::NotFound(format!("execution {id} not found")))
            });
            let _ = tx.send(answer);
        }));
        self.run(txn, ctx);
        Box::pin(async move { rx.await.map_err(|_| CoordError::Unavailable)? })
    }
}
