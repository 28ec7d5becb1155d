//! A model of the pipeline actor for the property tests: the same moves as `flow.rs`,
//! `cancel.rs` and `policies.rs` (create, auto-cancel, arrive, enter, evaluate, leave, stop,
//! pause, resume, transitions, timers), over plain maps instead of actors and a store.
//!
//! Every decision is the real one: stage questions are answered by
//! [`crate::stage::actor::answer`] (the stage actor's own dispatch over the rules core),
//! lanes by [`lane_of`], stage progress by [`progress::evaluate`], auto-cancel by
//! [`auto_cancel::rule_for`] and [`auto_cancel::decide`], revision order by
//! [`revision::outranked_by`]. Only the glue that carries the decisions out is written again
//! here, line for line after the actor's.
//!
//! While it runs, the model checks the invariants of issue 3 and notes what it saw (entries
//! per stage, supersedes, cancellations...) so that the tests can show they are not vacuous.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::actor::StopMode;
use super::auto_cancel::{self, Candidate, Verdict};
use super::lanes::{LaneKey, lane_of};
use super::progress::{self, JobView, Progress};
use super::revision::{self, Rival};
use super::txn::Work;
use crate::pipeline::{CancelStop, Mode, PipelineSpec, QueueOrder};
use crate::stage::actor::{Ask, answer};
use crate::stage::policy::StagePolicy;
use crate::stage::rules::{Effect, LeaveReason, Now, StageLock, Transition};
use crate::store::records::{
    ExecutionRecord, ExecutionStatus, JobStatus, PendingCancel, Revision, StageRun, StageStatus,
};

/// The branches executions are started for.
pub const BRANCHES: [&str; 3] = ["main", "feat-a", "feat-b"];

/// How a job that a worker ran ends (unless a stop signal decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// Every step exited 0.
    Succeeded,
    /// A step failed.
    Failed,
}

/// One thing that happens to the pipeline.
#[derive(Debug, Clone)]
pub enum Step {
    /// A new execution starts for `BRANCHES[branch % 3]` with revision order `order` (0: none).
    Start {
        /// Index into [`BRANCHES`].
        branch: usize,
        /// Revision order; 0 = not given.
        order: u64,
    },
    /// A worker accepts the n-th live queued job.
    Accept(usize),
    /// The n-th live job ends.
    Finish(usize, JobEnd),
    /// A person stops the n-th live execution (abandon when true, else wait).
    Stop(usize, bool),
    /// A person disables the transition into stage n.
    Disable(usize),
    /// A person enables the transition into stage n.
    Enable(usize),
    /// A person resumes the n-th paused execution.
    Resume(usize),
    /// The clock moves on by this many ms; timers that are due fire one by one.
    Advance(i64),
}

/// A job as the model keeps it.
#[derive(Debug, Clone)]
pub struct Job {
    id: String,
    exec: String,
    stage: String,
    action: String,
    run_order: u32,
    status: JobStatus,
    fence: u64,
    signal: Option<StopMode>,
}

/// One auto-cancel verdict as it was carried out, with what the model knew at the time.
#[derive(Debug, Clone)]
pub struct CancelSeen {
    /// The new execution's number, branch and revision order.
    pub by: (u64, String, u64),
    /// True under the `running` rule, false under `queued`.
    pub running_rule: bool,
    /// The verdict.
    pub verdict: Verdict,
    /// The target's number, branch and revision order.
    pub target: (u64, String, u64),
    /// The target's status in the stage it is in or in front of.
    pub target_stage_status: StageStatus,
    /// Whether the target held a stage lock.
    pub target_holds: bool,
    /// Whether that stage is `interruptible: false`.
    pub target_uninterruptible: bool,
}

/// Counts of what happened, to show a property is not vacuous.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Entries per stage index.
    pub entries: [u64; 4],
    /// Entries into a lane of a branch (`lanes: branch`, not shared).
    pub branch_lane_entries: u64,
    /// Entries into a `lane: shared` stage of a pipeline with `lanes: branch`.
    pub shared_lane_entries: u64,
    /// Entries into QUEUED fifo stages with capacity above 1 while another holder was inside.
    pub shared_capacity_entries: u64,
    /// Supersede effects and supersedes on arrival (revision order).
    pub supersedes: u64,
    /// Supersedes on arrival (an older revision order).
    pub too_old: u64,
    /// `when_busy: cancel_running` holders asked to stop.
    pub cancel_holders: u64,
    /// Executions paused in front of a stage.
    pub pauses: u64,
    /// Paused executions resumed by a person.
    pub resumes: u64,
    /// Stops with wait, with abandon, and escalations of a Stopping execution to abandon.
    pub stops: [u64; 3],
    /// Waiting executions taken out of a line (stopped or cancelled while inbound).
    pub withdrawals: u64,
    /// Arrivals in front of a disabled transition.
    pub held_by_transition: u64,
    /// Timers fired.
    pub timers: u64,
    /// Executions that ended, by final status: Succeeded, Failed, Stopped, Superseded,
    /// Cancelled.
    pub ended: [u64; 5],
    /// Auto-cancel verdicts: cancel waiting, stop running, cancel at boundary.
    pub verdicts: [u64; 3],
    /// Executions cancelled at the boundary of an `interruptible: false` stage.
    pub cancelled_at_boundary: u64,
    /// Older holders of the new execution's key left alone because `queued` applied.
    pub queued_spared: u64,
}

impl Seen {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Seen) {
        let pairs: [(&mut u64, u64); 13] = [
            (&mut self.queued_spared, other.queued_spared),
            (&mut self.branch_lane_entries, other.branch_lane_entries),
            (&mut self.shared_lane_entries, other.shared_lane_entries),
            (
                &mut self.shared_capacity_entries,
                other.shared_capacity_entries,
            ),
            (&mut self.supersedes, other.supersedes),
            (&mut self.too_old, other.too_old),
            (&mut self.cancel_holders, other.cancel_holders),
            (&mut self.pauses, other.pauses),
            (&mut self.resumes, other.resumes),
            (&mut self.withdrawals, other.withdrawals),
            (&mut self.held_by_transition, other.held_by_transition),
            (&mut self.timers, other.timers),
            (&mut self.cancelled_at_boundary, other.cancelled_at_boundary),
        ];
        for (mine, theirs) in pairs {
            *mine += theirs;
        }
        for (mine, theirs) in self.entries.iter_mut().zip(other.entries) {
            *mine += theirs;
        }
        for (mine, theirs) in self.stops.iter_mut().zip(other.stops) {
            *mine += theirs;
        }
        for (mine, theirs) in self.ended.iter_mut().zip(other.ended) {
            *mine += theirs;
        }
        for (mine, theirs) in self.verdicts.iter_mut().zip(other.verdicts) {
            *mine += theirs;
        }
    }
}

/// The pipeline actor's state, as plain maps, and what the invariants remember.
pub struct Model {
    spec: PipelineSpec,
    locks: BTreeMap<LaneKey, StageLock>,
    transitions: HashMap<String, Transition>,
    /// Every execution ever started (ended ones stay, for the checks).
    pub execs: BTreeMap<u64, ExecutionRecord>,
    jobs: Vec<Job>,
    next_number: u64,
    now: i64,
    timers: Vec<(LaneKey, i64)>,
    work: VecDeque<Work>,
    // What the invariants remember.
    last_fence: HashMap<LaneKey, u64>,
    last_entered: HashMap<String, usize>,
    arrival_seq: HashMap<(LaneKey, String), u64>,
    next_arrival: u64,
    last_fifo_entry: HashMap<LaneKey, u64>,
    /// Auto-cancel verdicts carried out.
    pub cancels: Vec<CancelSeen>,
    /// Who asked a holder to stop under `when_busy: cancel_running`: (holder, by).
    pub cancel_running: Vec<(String, String)>,
    /// Invariants found broken, in words.
    pub broken: Vec<String>,
    /// What happened.
    pub seen: Seen,
}

fn number_of(id: &str) -> u64 {
    id.trim_start_matches('e').parse().unwrap_or(0)
}

impl Model {
    /// An empty pipeline of `spec`.
    pub fn new(spec: PipelineSpec) -> Self {
        Self {
            spec,
            locks: BTreeMap::new(),
            transitions: HashMap::new(),
            execs: BTreeMap::new(),
            jobs: Vec::new(),
            next_number: 1,
            now: 1_000,
            timers: Vec::new(),
            work: VecDeque::new(),
            last_fence: HashMap::new(),
            last_entered: HashMap::new(),
            arrival_seq: HashMap::new(),
            next_arrival: 0,
            last_fifo_entry: HashMap::new(),
            cancels: Vec::new(),
            cancel_running: Vec::new(),
            broken: Vec::new(),
            seen: Seen::default(),
        }
    }

    /// The pipeline definition.
    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }

    fn exec(&self, id: &str) -> Option<&ExecutionRecord> {
        self.execs.get(&number_of(id))
    }

    fn exec_mut(&mut self, id: &str) -> Option<&mut ExecutionRecord> {
        self.execs.get_mut(&number_of(id))
    }

    fn policy_of(&self, stage: &str) -> StagePolicy {
        self.spec
            .stages
            .iter()
            .find(|s| s.name == stage)
            .map(|s| StagePolicy::of(&self.spec, s))
            .unwrap_or_else(|| StagePolicy::of_mode(self.spec.mode))
    }

    fn lane_of_exec(&self, exec: &ExecutionRecord, stage: &str) -> String {
        lane_of(&self.spec, stage, &exec.revision.branch)
    }

    fn broke(&mut self, what: String) {
        self.broken.push(what);
    }

    // ---- One step, as one message to the actor, then the invariants. ----

    /// Applies `step` and checks the invariants; errs with the first broken one.
    pub fn step(&mut self, step: &Step) -> Result<(), String> {
        match *step {
            Step::Start { branch, order } => {
                let revision = Revision {
                    branch: BRANCHES[branch % BRANCHES.len()].to_string(),
                    commit: format!("c{}", self.next_number),
                    order,
                    ..Revision::default()
                };
                self.create_execution(revision);
            }
            Step::Accept(n) => {
                let queued: Vec<usize> = (0..self.jobs.len())
                    .filter(|&i| self.jobs[i].status == JobStatus::Queued)
                    .collect();
                if let Some(&i) = queued.get(n % queued.len().max(1)) {
                    self.jobs[i].status = JobStatus::Running;
                }
            }
            Step::Finish(n, end) => {
                let live: Vec<usize> = (0..self.jobs.len())
                    .filter(|&i| !self.jobs[i].status.is_final())
                    .collect();
                if let Some(&i) = live.get(n % live.len().max(1)) {
                    let status = match (self.jobs[i].signal, end) {
                        (Some(StopMode::Abandon), _) => JobStatus::Abandoned,
                        (Some(StopMode::Wait), _) => JobStatus::Stopped,
                        (None, JobEnd::Succeeded) => JobStatus::Succeeded,
                        (None, JobEnd::Failed) => JobStatus::Failed,
                    };
                    self.on_job_finished(i, status);
                }
            }
            Step::Stop(n, abandon) => {
                let live: Vec<String> = self
                    .execs
                    .values()
                    .filter(|e| !e.status.is_final())
                    .map(|e| e.id.clone())
                    .collect();
                if let Some(id) = live.get(n % live.len().max(1)).cloned() {
                    let mode = if abandon {
                        StopMode::Abandon
                    } else {
                        StopMode::Wait
                    };
                    self.stop(&id, mode);
                }
            }
            Step::Disable(n) | Step::Enable(n) => {
                let stage = self.spec.stages[n % self.spec.stages.len()].name.clone();
                let transition = match step {
                    Step::Disable(_) => Transition::Disabled {
                        by: "prop".into(),
                        reason: "model".into(),
                        since_ms: self.now,
                    },
                    _ => Transition::Enabled,
                };
                self.set_transition(&stage, transition);
            }
            Step::Resume(n) => {
                let paused: Vec<String> = self
                    .execs
                    .values()
                    .filter(|e| e.status == ExecutionStatus::Paused)
                    .map(|e| e.id.clone())
                    .collect();
                if let Some(id) = paused.get(n % paused.len().max(1)).cloned() {
                    self.resume(&id);
                }
            }
            Step::Advance(ms) => {
                self.now += ms;
                // Each due timer is its own message to the actor, fired one by one.
                while let Some(pos) = self.timers.iter().position(|(_, at)| *at <= self.now) {
                    let (key, _) = self.timers.swap_remove(pos);
                    self.seen.timers += 1;
                    self.work.push_back(Work::new(&key.0, &key.1, Ask::Tick));
                    self.run();
                    self.check()?;
                }
            }
        }
        self.run();
        self.check()
    }

    /// Brings everything to an end: transitions enabled, paused executions resumed, every job
    /// succeeds and the clock runs past every timer, until no execution is live. Errs when
    /// an invariant breaks or an execution is left stuck.
    pub fn drain(&mut self) -> Result<(), String> {
        for i in 0..self.spec.stages.len() {
            self.step(&Step::Enable(i))?;
        }
        for _ in 0..2_000 {
            if self.execs.values().all(|e| e.status.is_final()) {
                break;
            }
            if self
                .execs
                .values()
                .any(|e| e.status == ExecutionStatus::Paused)
            {
                self.step(&Step::Resume(0))?;
                continue;
            }
            if self.jobs.iter().any(|j| !j.status.is_final()) {
                self.step(&Step::Finish(0, JobEnd::Succeeded))?;
                continue;
            }
            self.step(&Step::Advance(10_000))?;
        }
        if let Some(stuck) = self.execs.values().find(|e| !e.status.is_final()) {
            return Err(format!(
                "{} is stuck {:?} at stage {} ({:?}) once everything else ended; locks {:?}",
                stuck.id,
                stuck.status,
                stuck.stage_index,
                stuck.stages[stuck.stage_index].status,
                self.locks
            ));
        }
        for (key, lock) in &self.locks {
            if !lock.holders.is_empty() || !lock.waiting.is_empty() {
                return Err(format!("{key:?} still holds or has waiters: {lock:?}"));
            }
        }
        Ok(())
    }

    // ---- The actor's moves (flow.rs, cancel.rs, policies.rs). ----

    fn create_execution(&mut self, revision: Revision) {
        let number = self.next_number;
        self.next_number += 1;
        let id = format!("e{number}");
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
        let first = self.spec.stages[0].name.clone();
        let exec = ExecutionRecord {
            id: id.clone(),
            pipeline: self.spec.name.clone(),
            pipeline_version: 1,
            number,
            revision,
            status: ExecutionStatus::InProgress,
            status_reason: String::new(),
            stage_index: 0,
            stages,
            created_at_ms: self.now,
            updated_at_ms: self.now,
            cancel: None,
            cancelled_by: None,
        };
        let lane = self.lane_of_exec(&exec, &first);
        self.execs.insert(number, exec);
        self.auto_cancel(&id);
        self.work
            .push_back(Work::arrive(&id, number, &first, &lane));
    }

    fn auto_cancel(&mut self, new_id: &str) {
        let Some(new) = self.exec(new_id).cloned() else {
            return;
        };
        let Some(running) = auto_cancel::rule_for(&self.spec, &new.revision) else {
            return;
        };
        let candidates: Vec<Candidate<'_>> = self
            .execs
            .values()
            .filter(|e| e.id != new_id && !e.status.is_final())
            .filter_map(|e| {
                let run = e.stages.get(e.stage_index)?;
                let stage = self.spec.stages.get(e.stage_index).cloned();
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
        if !running {
            let key = self.spec.concurrency_key;
            self.seen.queued_spared += candidates
                .iter()
                .filter(|c| c.stage_status == StageStatus::InProgress && c.number < new.number)
                .filter(|c| {
                    key == crate::pipeline::ConcurrencyKey::Pipeline
                        || c.branch == new.revision.branch
                })
                .count() as u64;
        }
        let mut verdicts = auto_cancel::decide(
            self.spec.concurrency_key,
            running,
            new.number,
            &new.revision,
            &candidates,
        );
        auto_cancel::carrying_order(&mut verdicts, number_of);
        let reason = format!("cancelled by #{}", new.number);
        for verdict in verdicts {
            let id = verdict.execution_id();
            if let Some(target) = self.exec(id) {
                let stage = self.spec.stages.get(target.stage_index);
                let seen = CancelSeen {
                    by: (new.number, new.revision.branch.clone(), new.revision.order),
                    running_rule: running,
                    verdict: verdict.clone(),
                    target: (
                        target.number,
                        target.revision.branch.clone(),
                        target.revision.order,
                    ),
                    target_stage_status: target.stages[target.stage_index].status,
                    target_holds: self.locks.values().any(|l| l.holds(id)),
                    target_uninterruptible: stage.is_some_and(|s| s.uninterruptible),
                };
                self.cancels.push(seen);
            }
            match verdict {
                Verdict::CancelWaiting(id) => {
                    self.seen.verdicts[0] += 1;
                    self.cancel_waiting(&id, &reason);
                }
                Verdict::StopRunning(id, stop) => {
                    self.seen.verdicts[1] += 1;
                    if let Some(exec) = self.exec_mut(&id) {
                        exec.cancel = Some(PendingCancel {
                            reason: reason.clone(),
                            at_boundary: false,
                        });
                    }
                    let mode = match stop {
                        CancelStop::Abandon => StopMode::Abandon,
                        CancelStop::Drain => StopMode::Wait,
                    };
                    self.stop_inside(&id, mode, reason.clone());
                }
                Verdict::CancelAtBoundary(id) => {
                    self.seen.verdicts[2] += 1;
                    if let Some(exec) = self.exec_mut(&id) {
                        exec.cancel = Some(PendingCancel {
                            reason: reason.clone(),
                            at_boundary: true,
                        });
                    }
                }
            }
        }
    }

    fn cancel_waiting(&mut self, id: &str, reason: &str) {
        let Some(exec) = self.exec(id) else {
            return;
        };
        let stage = exec.stages[exec.stage_index].stage.clone();
        let lane = self.lane_of_exec(exec, &stage);
        self.set_stage_status(id, &stage, StageStatus::Cancelled);
        self.end_execution(id, ExecutionStatus::Cancelled, reason);
        let ask = Ask::Withdraw {
            execution_id: id.to_string(),
        };
        self.work.push_back(Work::new(&stage, &lane, ask));
    }

    fn set_stage_status(&mut self, id: &str, stage: &str, status: StageStatus) {
        let now = self.now;
        if let Some(exec) = self.exec_mut(id)
            && let Some(run) = exec.stages.iter_mut().find(|r| r.stage == stage)
        {
            run.status = status;
            if !matches!(
                status,
                StageStatus::Waiting | StageStatus::InProgress | StageStatus::Stopping
            ) {
                run.finished_at_ms = now;
            }
        }
    }

    fn end_execution(&mut self, id: &str, status: ExecutionStatus, reason: &str) {
        let Some(exec) = self.exec_mut(id) else {
            return;
        };
        if exec.status.is_final() {
            let was = exec.status;
            self.broke(format!("{id} ended {status:?} after it had ended {was:?}"));
            return;
        }
        exec.status = status;
        exec.status_reason = reason.to_string();
        let slot = match status {
            ExecutionStatus::Succeeded => 0,
            ExecutionStatus::Failed => 1,
            ExecutionStatus::Stopped => 2,
            ExecutionStatus::Superseded => 3,
            _ => 4,
        };
        self.seen.ended[slot] += 1;
        self.recheck_upstream(id);
    }

    fn recheck_upstream(&mut self, id: &str) {
        let Some(exec) = self.exec(id) else {
            return;
        };
        let mut ticks = Vec::new();
        for (i, stage) in self.spec.stages.iter().enumerate() {
            if i > exec.stage_index && stage.order == Some(QueueOrder::NewestFirst) {
                let lane = self.lane_of_exec(exec, &stage.name);
                ticks.push(Work::new(&stage.name, &lane, Ask::Tick));
            }
        }
        self.work.extend(ticks);
    }

    fn too_old_for(&self, id: &str, stage: &str) -> bool {
        let Some(exec) = self.exec(id) else {
            return false;
        };
        let order = exec.revision.order;
        let Some(index) = self.spec.stage_index(stage) else {
            return false;
        };
        if order == 0 || self.spec.stages[index].effective_mode(self.spec.mode) != Mode::Superseded
        {
            return false;
        }
        let rivals = self.execs.values().filter(|x| x.id != id).map(|x| Rival {
            id: &x.id,
            key: &x.revision.branch,
            order: x.revision.order,
            reached: revision::reached(x, index),
            status: x.status,
        });
        revision::outranked_by(&exec.revision.branch, order, rivals).is_some()
    }

    /// The actor's `moment`: now, and the newest execution of the lane in an earlier stage.
    fn moment(&self, key: &LaneKey) -> Now {
        let (stage, lane) = key;
        let newest_upstream = self
            .execs
            .values()
            .filter(|e| {
                matches!(
                    e.status,
                    ExecutionStatus::InProgress | ExecutionStatus::Paused
                )
            })
            .filter(|e| {
                self.spec
                    .stage_index(stage)
                    .is_some_and(|i| e.stage_index < i)
                    && self.lane_of_exec(e, stage) == *lane
            })
            .map(|e| e.number)
            .max();
        Now {
            ms: self.now,
            newest_upstream,
        }
    }

    /// The actor's `run`: asks the stages every queued question, in order.
    fn run(&mut self) {
        let mut asked = 0;
        while let Some(work) = self.work.pop_front() {
            asked += 1;
            if asked > 100_000 {
                self.broke("the stage questions never end".into());
                return;
            }
            if let Ask::Arrive { execution_id, .. } = &work.ask
                && self.too_old_for(execution_id, &work.stage)
            {
                self.seen.supersedes += 1;
                self.seen.too_old += 1;
                let id = execution_id.clone();
                self.set_stage_status(&id, &work.stage, StageStatus::Superseded);
                self.end_execution(&id, ExecutionStatus::Superseded, "too old");
                continue;
            }
            let key = work.key();
            if let Ask::Arrive { execution_id, .. } = &work.ask {
                self.next_arrival += 1;
                let seq = self.next_arrival;
                self.arrival_seq
                    .insert((key.clone(), execution_id.clone()), seq);
            }
            let policy = self.policy_of(&key.0);
            let now = self.moment(&key);
            let transition = self.transitions.get(&key.0).cloned().unwrap_or_default();
            let lock = self.locks.entry(key.clone()).or_insert_with(|| StageLock {
                transition,
                ..StageLock::default()
            });
            if matches!(work.ask, Ask::Arrive { .. }) && !lock.transition.is_enabled() {
                self.seen.held_by_transition += 1;
            }
            if let Ask::Withdraw { execution_id } = &work.ask
                && lock.is_waiting(execution_id)
            {
                self.seen.withdrawals += 1;
            }
            let holders_before = lock.holders.len();
            if let Ok(effects) = answer(lock, &policy, work.ask, now) {
                if policy.mode == Mode::Queued && policy.capacity > 1 && holders_before > 0 {
                    let entered = effects
                        .iter()
                        .filter(|e| matches!(e, Effect::Enter { .. }))
                        .count();
                    self.seen.shared_capacity_entries += entered as u64;
                }
                self.apply_decision(&key, effects);
            }
        }
    }

    fn apply_decision(&mut self, key: &LaneKey, effects: Vec<Effect>) {
        let stage = key.0.clone();
        for effect in effects {
            match effect {
                Effect::Enter {
                    execution_id,
                    fence_token,
                } => {
                    self.unpause(&execution_id);
                    self.enter(key, &execution_id, fence_token);
                }
                Effect::Wait { execution_id } => {
                    self.unpause(&execution_id);
                    self.set_stage_status(&execution_id, &stage, StageStatus::Waiting);
                }
                Effect::Pause { execution_id } => {
                    self.seen.pauses += 1;
                    if let Some(exec) = self.exec_mut(&execution_id) {
                        exec.status = ExecutionStatus::Paused;
                    }
                    self.set_stage_status(&execution_id, &stage, StageStatus::Waiting);
                }
                Effect::Supersede { execution_id, .. } => {
                    self.seen.supersedes += 1;
                    self.set_stage_status(&execution_id, &stage, StageStatus::Superseded);
                    self.end_execution(&execution_id, ExecutionStatus::Superseded, "superseded");
                }
                Effect::CancelHolder { execution_id, by } => {
                    self.seen.cancel_holders += 1;
                    self.cancel_running.push((execution_id.clone(), by.clone()));
                    self.cancel_holder(&execution_id, &by, &stage);
                }
                Effect::WakeAt { at_ms } => {
                    if at_ms <= self.now {
                        self.broke(format!("{key:?} asked for a timer in the past ({at_ms})"));
                    }
                    self.timers.push((key.clone(), at_ms));
                }
            }
        }
    }

    fn unpause(&mut self, id: &str) {
        if let Some(exec) = self.exec_mut(id)
            && exec.status == ExecutionStatus::Paused
        {
            exec.status = ExecutionStatus::InProgress;
        }
    }

    fn enter(&mut self, key: &LaneKey, id: &str, fence_token: u64) {
        self.check_entry(key, id, fence_token);
        let Some(exec) = self.exec_mut(id) else {
            return;
        };
        let stage = key.0.as_str();
        let Some(index) = exec.stages.iter().position(|r| r.stage == stage) else {
            return;
        };
        exec.stage_index = index;
        exec.stages[index].fence_token = fence_token;
        self.set_stage_status(id, stage, StageStatus::InProgress);
        let first = self.spec.stages[index]
            .run_orders()
            .first()
            .copied()
            .unwrap_or(1);
        self.start_order(id, index, first);
    }

    /// Invariants of one entry: a live execution, forward only, fence tokens increase, FIFO.
    fn check_entry(&mut self, key: &LaneKey, id: &str, fence_token: u64) {
        let Some(exec) = self.exec(id).cloned() else {
            return self.broke(format!("unknown {id} entered {key:?}"));
        };
        if !matches!(
            exec.status,
            ExecutionStatus::InProgress | ExecutionStatus::Paused
        ) {
            let status = exec.status;
            self.broke(format!("{id} entered {key:?} while {status:?}"));
        }
        let Some(index) = self.spec.stage_index(&key.0) else {
            return self.broke(format!("{key:?} is no stage"));
        };
        if let Some(&before) = self.last_entered.get(id)
            && before >= index
        {
            self.broke(format!(
                "{id} entered stage {index} after it had entered stage {before}"
            ));
        }
        self.last_entered.insert(id.to_string(), index);
        let lane = self.lane_of_exec(&exec, &key.0);
        if lane != key.1 {
            self.broke(format!("{id} entered {key:?}, not its lane {lane:?}"));
        }
        let last = self
            .last_fence
            .insert(key.clone(), fence_token)
            .unwrap_or(0);
        if fence_token <= last {
            self.broke(format!(
                "fence token of {key:?} went from {last} to {fence_token} ({id} entered)"
            ));
        }
        let policy = self.policy_of(&key.0);
        if policy.mode == Mode::Queued && policy.order == QueueOrder::Fifo {
            let seq = self
                .arrival_seq
                .get(&(key.clone(), id.to_string()))
                .copied()
                .unwrap_or(0);
            let last = self.last_fifo_entry.insert(key.clone(), seq).unwrap_or(0);
            if seq <= last {
                self.broke(format!(
                    "{id} (arrival {seq}) overtook an earlier arrival ({last}) into fifo {key:?}"
                ));
            }
        }
        self.seen.entries[index.min(3)] += 1;
        if self.spec.lanes == crate::pipeline::Lanes::Branch {
            if key.1.is_empty() {
                self.seen.shared_lane_entries += 1;
            } else {
                self.seen.branch_lane_entries += 1;
            }
        }
    }

    fn start_order(&mut self, id: &str, index: usize, order: u32) {
        let Some(exec) = self.exec(id).cloned() else {
            return;
        };
        if exec.status != ExecutionStatus::InProgress {
            let status = exec.status;
            self.broke(format!("{id} started a job while {status:?}"));
        }
        let fence = exec.stages[index].fence_token;
        let stage = self.spec.stages[index].clone();
        for action in stage.actions.iter().filter(|a| a.run_order == order) {
            let job = Job {
                id: format!("j{}", self.jobs.len()),
                exec: id.to_string(),
                stage: stage.name.clone(),
                action: action.name.clone(),
                run_order: order,
                status: JobStatus::Queued,
                fence,
                signal: None,
            };
            if let Some(exec) = self.exec_mut(id) {
                exec.stages[index].jobs.push(job.id.clone());
                exec.stages[index].run_order = order;
            }
            self.jobs.push(job);
        }
    }

    fn on_job_finished(&mut self, i: usize, status: JobStatus) {
        let job = &self.jobs[i];
        let current = self.exec(&job.exec).is_some_and(|e| {
            e.stages
                .get(e.stage_index)
                .is_some_and(|run| run.stage == job.stage && run.fence_token == job.fence)
        });
        if !current {
            // A stale fence token: the report is dropped.
            return;
        }
        self.jobs[i].status = status;
        let exec = self.jobs[i].exec.clone();
        self.evaluate_stage(&exec);
    }

    fn evaluate_stage(&mut self, id: &str) {
        let Some(exec) = self.exec(id).cloned() else {
            return;
        };
        let index = exec.stage_index;
        let stage_spec = self.spec.stages[index].clone();
        let run = &exec.stages[index];
        if !matches!(run.status, StageStatus::InProgress | StageStatus::Stopping) {
            return;
        }
        let jobs: Vec<&Job> = self
            .jobs
            .iter()
            .filter(|j| run.jobs.contains(&j.id) && j.run_order == run.run_order)
            .collect();
        let views: Vec<JobView<'_>> = jobs
            .iter()
            .map(|j| JobView {
                action: &j.action,
                status: j.status,
                exit_code: 0,
                message: "",
            })
            .collect();
        let stopping = exec.status == ExecutionStatus::Stopping;
        let decision =
            progress::evaluate(&views, &stage_spec.run_orders(), run.run_order, stopping);
        let stage = stage_spec.name.clone();
        let cancelled = exec.cancelled_by.is_some();
        let next_stage = self.spec.stages.get(index + 1).map(|s| s.name.clone());
        match decision {
            Progress::Running => {}
            Progress::Next(order) => self.start_order(id, index, order),
            Progress::Stopped if cancelled => {
                self.set_stage_status(id, &stage, StageStatus::Cancelled);
                self.end_execution(id, ExecutionStatus::Cancelled, "cancel_running");
                self.leave(id, &stage, LeaveReason::Cancelled);
            }
            Progress::Stopped => {
                let (stage_status, status, leave) = match exec.cancel {
                    Some(c) if !c.at_boundary => (
                        StageStatus::Cancelled,
                        ExecutionStatus::Cancelled,
                        LeaveReason::Cancelled,
                    ),
                    _ => (
                        StageStatus::Stopped,
                        ExecutionStatus::Stopped,
                        LeaveReason::Stopped,
                    ),
                };
                self.set_stage_status(id, &stage, stage_status);
                self.end_execution(id, status, "stopped");
                self.leave(id, &stage, leave);
            }
            Progress::Failed(_) => {
                self.set_stage_status(id, &stage, StageStatus::Failed);
                self.end_execution(id, ExecutionStatus::Failed, "failed");
                self.leave(id, &stage, LeaveReason::Failed);
            }
            Progress::Succeeded => {
                self.set_stage_status(id, &stage, StageStatus::Succeeded);
                self.leave(id, &stage, LeaveReason::Succeeded);
                match next_stage {
                    Some(_) if exec.cancel.is_some() => {
                        self.seen.cancelled_at_boundary += 1;
                        self.end_execution(id, ExecutionStatus::Cancelled, "at boundary");
                    }
                    Some(next) => {
                        let lane = lane_of(&self.spec, &next, &exec.revision.branch);
                        if let Some(exec) = self.exec_mut(id) {
                            exec.stage_index = index + 1;
                        }
                        self.work
                            .push_back(Work::arrive(id, exec.number, &next, &lane));
                    }
                    None => self.end_execution(id, ExecutionStatus::Succeeded, ""),
                }
            }
        }
    }

    fn leave(&mut self, id: &str, stage: &str, reason: LeaveReason) {
        let Some(exec) = self.exec(id) else {
            return;
        };
        let lane = self.lane_of_exec(exec, stage);
        self.work.push_back(Work::leave(id, stage, &lane, reason));
    }

    /// A person's stop (StopPipelineExecution).
    fn stop(&mut self, id: &str, mode: StopMode) {
        let Some(exec) = self.exec(id) else {
            return;
        };
        if exec.status.is_final() {
            return;
        }
        if exec.status == ExecutionStatus::Stopping && mode == StopMode::Wait {
            return; // Refused: already stopping; only abandon escalates.
        }
        let slot = match (exec.status, mode) {
            (ExecutionStatus::Stopping, _) => 2,
            (_, StopMode::Wait) => 0,
            (_, StopMode::Abandon) => 1,
        };
        self.seen.stops[slot] += 1;
        self.stop_for(id, mode, "stopped".into());
    }

    fn stop_for(&mut self, id: &str, mode: StopMode, why: String) {
        let Some(exec) = self.exec(id) else {
            return;
        };
        let run = &exec.stages[exec.stage_index];
        let stage = run.stage.clone();
        if matches!(run.status, StageStatus::Waiting | StageStatus::Pending) {
            let lane = self.lane_of_exec(exec, &stage);
            self.set_stage_status(id, &stage, StageStatus::Stopped);
            self.end_execution(id, ExecutionStatus::Stopped, &why);
            let ask = Ask::Withdraw {
                execution_id: id.to_string(),
            };
            self.work.push_back(Work::new(&stage, &lane, ask));
            return;
        }
        if let Some(exec) = self.exec_mut(id) {
            exec.cancel = None;
        }
        self.stop_inside(id, mode, why);
    }

    fn stop_inside(&mut self, id: &str, mode: StopMode, why: String) {
        let Some(exec) = self.exec(id) else {
            return;
        };
        let run = &exec.stages[exec.stage_index];
        let (stage, job_ids) = (run.stage.clone(), run.jobs.clone());
        if let Some(exec) = self.exec_mut(id) {
            exec.status = ExecutionStatus::Stopping;
            exec.status_reason = why;
        }
        self.set_stage_status(id, &stage, StageStatus::Stopping);
        for job in self.jobs.iter_mut().filter(|j| job_ids.contains(&j.id)) {
            match job.status {
                JobStatus::Queued => job.status = JobStatus::Stopped,
                JobStatus::Running => job.signal = Some(mode),
                _ => {}
            }
        }
        self.evaluate_stage(id);
    }

    fn cancel_holder(&mut self, id: &str, by: &str, stage: &str) {
        let Some(exec) = self.exec(id) else {
            return;
        };
        if exec.status != ExecutionStatus::InProgress {
            return;
        }
        let mode = match self.spec.stages.iter().find(|s| s.name == stage) {
            Some(s) if s.on_cancel == CancelStop::Drain => StopMode::Wait,
            _ => StopMode::Abandon,
        };
        if let Some(exec) = self.exec_mut(id) {
            exec.cancelled_by = Some(by.to_string());
        }
        self.stop_for(id, mode, format!("cancelled by {by}"));
    }

    fn set_transition(&mut self, stage: &str, transition: Transition) {
        self.transitions
            .insert(stage.to_string(), transition.clone());
        let mut lanes: Vec<String> = self
            .locks
            .keys()
            .filter(|(s, _)| s == stage)
            .map(|(_, l)| l.clone())
            .collect();
        lanes.push(String::new());
        lanes.sort();
        lanes.dedup();
        for lane in lanes {
            let ask = Ask::SetTransition(transition.clone());
            self.work.push_back(Work::new(stage, &lane, ask));
        }
    }

    fn resume(&mut self, id: &str) {
        let Some(exec) = self.exec(id).cloned() else {
            return;
        };
        if exec.status != ExecutionStatus::Paused {
            return;
        }
        self.seen.resumes += 1;
        let stage = exec.stages[exec.stage_index].stage.clone();
        let lane = self.lane_of_exec(&exec, &stage);
        self.unpause(id);
        let ask = Ask::Resume {
            execution_id: id.to_string(),
        };
        self.work.push_back(Work::new(&stage, &lane, ask));
    }

    // ---- The invariants that hold between messages. ----

    fn check(&mut self) -> Result<(), String> {
        let mut broken = std::mem::take(&mut self.broken);
        let mut place: HashMap<&str, (&LaneKey, bool)> = HashMap::new();
        for (key, lock) in &self.locks {
            let room = self.policy_of(&key.0).room();
            if lock.holders.len() > room {
                broken.push(format!(
                    "{key:?} holds {} executions, more than its room {room}",
                    lock.holders.len()
                ));
            }
            let inside = lock.holders.iter().map(|h| (&h.execution_id, true));
            let waiting = lock.waiting.iter().map(|w| (&w.execution_id, false));
            for (id, holds) in inside.chain(waiting) {
                if let Some((other, _)) = place.insert(id, (key, holds)) {
                    broken.push(format!("{id} is in {other:?} and in {key:?} at once"));
                }
            }
            if lock.fence_token != self.last_fence.get(key).copied().unwrap_or(0) {
                broken.push(format!(
                    "{key:?} fence token {} is not the last one handed out",
                    lock.fence_token
                ));
            }
            let policy = self.policy_of(&key.0);
            if policy.mode == Mode::Queued && policy.order == QueueOrder::Fifo {
                let last = self.last_fifo_entry.get(key).copied().unwrap_or(0);
                for w in &lock.waiting {
                    let seq = self.arrival_seq.get(&(key.clone(), w.execution_id.clone()));
                    if seq.is_none_or(|&s| s <= last) {
                        broken.push(format!(
                            "{} waits in fifo {key:?} behind a later arrival that entered",
                            w.execution_id
                        ));
                    }
                }
            }
        }
        for exec in self.execs.values() {
            let run = &exec.stages[exec.stage_index];
            let at = place.get(exec.id.as_str());
            match (exec.status.is_final(), at) {
                (true, Some((key, _))) => broken.push(format!(
                    "{} ended {:?} but is still in {key:?}",
                    exec.id, exec.status
                )),
                (false, None) => broken.push(format!(
                    "{} is {:?} ({:?} at stage {}) but in no stage's lock or line",
                    exec.id, exec.status, run.status, exec.stage_index
                )),
                (false, Some((key, holds))) => {
                    let expected = if *holds {
                        matches!(run.status, StageStatus::InProgress | StageStatus::Stopping)
                    } else {
                        run.status == StageStatus::Waiting
                    };
                    if key.0 != run.stage || !expected {
                        broken.push(format!(
                            "{} is in {key:?} (holder: {holds}) but its stage {} says {:?}",
                            exec.id, run.stage, run.status
                        ));
                    }
                }
                (true, None) => {}
            }
            let reached = self.last_entered.get(&exec.id).copied().unwrap_or(0);
            if exec.stage_index < reached {
                broken.push(format!(
                    "{} is at stage {} after it entered stage {reached}",
                    exec.id, exec.stage_index
                ));
            }
        }
        match broken.first() {
            Some(first) => Err(first.clone()),
            None => Ok(()),
        }
    }
}
