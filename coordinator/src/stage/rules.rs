//! The stage rules: what happens when an execution arrives at, leaves, or is withdrawn from a
//! stage, when a transition is disabled or enabled, when a person resumes a paused execution,
//! and when a settle window ends. Plain functions over plain data: no I/O, no clocks (time is
//! passed in as [`Now`]; a rule that needs to be asked again later says so with
//! [`Effect::WakeAt`], and the actor shell arms a timer).
//!
//! SUPERSEDED (CodePipeline rules 1–3): one execution holds the lock; one may wait in front
//! (the inbound slot); a newer arrival takes the slot and the one it displaces is superseded.
//! Superseding happens only between stages, never inside one. `when_busy` says what a newer
//! arrival does when the stage is held: wait in the slot (`supersede`), wait Paused for a
//! person (`pause`), or stop the holder and enter after it (`cancel_running`). `settle` makes
//! the slot a trailing-edge debounce bounded by `max_wait`.
//!
//! QUEUED: up to `capacity` executions hold the stage; the rest wait in a line whose `order`
//! picks who enters next. PARALLEL: no lock, everyone enters.
//!
//! A disabled transition holds every arrival in front of the stage, with the mode's waiting
//! rules; enabling it lets the waiting ones in. A withdrawn (stopped) waiter never enters.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::policy::StagePolicy;
pub use super::why::{WaitWhy, why_waiting};
use crate::pipeline::{Mode, QueueOrder, WhenBusy};

/// An execution inside the stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The execution.
    pub execution_id: String,
    /// When it entered (Unix ms).
    pub since_ms: i64,
    /// The fence token it entered with.
    pub fence_token: u64,
    /// Set once a newer execution (`when_busy: cancel_running`) has asked it to stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
}

/// An execution waiting in front of the stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    /// The execution.
    pub execution_id: String,
    /// When it started waiting (Unix ms).
    pub since_ms: i64,
    /// The execution's number: higher is newer.
    #[serde(default)]
    pub number: u64,
    /// True while it waits for a person to resume it (`when_busy: pause`).
    #[serde(default)]
    pub paused: bool,
}

/// How the last execution that left the stage fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The execution.
    pub execution_id: String,
    /// Whether it succeeded, failed or was stopped.
    pub result: LeaveReason,
    /// When it left (Unix ms).
    pub at_ms: i64,
}

/// Why an execution leaves a stage it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaveReason {
    /// Every action succeeded.
    Succeeded,
    /// An action failed.
    Failed,
    /// A person stopped it.
    Stopped,
    /// A newer execution stopped it (`when_busy: cancel_running`).
    Cancelled,
}

/// Whether executions may enter the stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transition {
    /// They may. The default.
    #[default]
    Enabled,
    /// They wait in front until it is enabled again.
    Disabled {
        /// Who disabled it.
        by: String,
        /// Why, in their words.
        reason: String,
        /// When (Unix ms).
        since_ms: i64,
    },
}

impl Transition {
    /// True when executions may enter.
    pub fn is_enabled(&self) -> bool {
        matches!(self, Transition::Enabled)
    }
}

/// One stage's lock state (of one lane).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageLock {
    /// Executions inside (at most the policy's room).
    pub holders: Vec<Holder>,
    /// Executions waiting in front, in arrival order.
    pub waiting: VecDeque<Waiter>,
    /// The latest fence token issued; increases on every entry.
    pub fence_token: u64,
    /// The last execution that left.
    pub last_outcome: Option<Outcome>,
    /// Whether the transition into the stage is enabled.
    #[serde(default)]
    pub transition: Transition,
    /// With `settle`: when the first waiter of the current burst arrived (Unix ms).
    #[serde(default)]
    pub burst_since_ms: Option<i64>,
}

/// The moment a rule is applied: the time, and what the shell knows outside the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    /// Unix ms.
    pub ms: i64,
    /// The number of the newest execution of this lane still in an earlier stage, if any
    /// (QUEUED `order: newest_first` holds the stage for it).
    pub newest_upstream: Option<u64>,
}

impl Now {
    /// `ms` with nothing upstream.
    pub fn at(ms: i64) -> Self {
        Self {
            ms,
            newest_upstream: None,
        }
    }
}

/// What the rules decided; the actor shell applies these in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The execution enters the stage with this fence token.
    Enter {
        /// The execution.
        execution_id: String,
        /// Its new fence token.
        fence_token: u64,
    },
    /// The execution waits in front of the stage.
    Wait {
        /// The execution.
        execution_id: String,
    },
    /// The execution waits in front of the stage, Paused until a person resumes it.
    Pause {
        /// The execution.
        execution_id: String,
    },
    /// The waiting execution was displaced by a newer one and goes no further.
    Supersede {
        /// The displaced execution.
        execution_id: String,
        /// The newer execution that took its place.
        by: String,
    },
    /// The holder must be stopped so that a newer execution can enter after it.
    CancelHolder {
        /// The holder.
        execution_id: String,
        /// The newer execution.
        by: String,
    },
    /// Ask the rules again ([`tick`]) at this time (Unix ms).
    WakeAt {
        /// When.
        at_ms: i64,
    },
}

impl StageLock {
    fn enter(&mut self, execution_id: String, now_ms: i64) -> Effect {
        self.fence_token += 1;
        self.holders.push(Holder {
            execution_id: execution_id.clone(),
            since_ms: now_ms,
            fence_token: self.fence_token,
            cancelled_by: None,
        });
        Effect::Enter {
            execution_id,
            fence_token: self.fence_token,
        }
    }

    /// True when `execution_id` holds the stage.
    pub fn holds(&self, execution_id: &str) -> bool {
        self.holders.iter().any(|h| h.execution_id == execution_id)
    }

    /// True when `execution_id` waits in front of the stage.
    pub fn is_waiting(&self, execution_id: &str) -> bool {
        self.waiting.iter().any(|w| w.execution_id == execution_id)
    }

    /// The waiting executions' indices in the order they would enter.
    pub fn line(&self, policy: &StagePolicy) -> Vec<usize> {
        let mut line: Vec<usize> = (0..self.waiting.len()).collect();
        let newest = matches!(
            policy.order,
            QueueOrder::NewestFirst | QueueOrder::NewestReadyFirst
        );
        if policy.mode == Mode::Queued && newest {
            line.sort_by_key(|&i| std::cmp::Reverse(self.waiting[i].number));
        }
        line
    }

    /// When the waiter may enter under `settle`, if the stage has a settle window.
    pub(super) fn settle_due(&self, policy: &StagePolicy, waiter: &Waiter) -> Option<i64> {
        let settle = policy.settle.filter(|_| policy.mode == Mode::Superseded)?;
        let first = self.burst_since_ms.unwrap_or(waiter.since_ms);
        Some(
            waiter
                .since_ms
                .saturating_add(settle.window_ms)
                .min(first.saturating_add(settle.max_wait_ms)),
        )
    }
}

fn cancels_holders(policy: &StagePolicy) -> bool {
    policy.mode == Mode::Superseded && policy.when_busy == WhenBusy::CancelRunning
}

/// An execution (number `number`, higher is newer) arrives in front of the stage.
pub fn arrive(
    lock: &mut StageLock,
    policy: &StagePolicy,
    execution_id: &str,
    number: u64,
    now: Now,
) -> Vec<Effect> {
    let id = execution_id.to_string();
    let mut effects = Vec::new();
    if policy.mode == Mode::Superseded {
        // The inbound slot holds one execution: a newer arrival displaces it.
        for displaced in lock.waiting.drain(..) {
            effects.push(Effect::Supersede {
                execution_id: displaced.execution_id,
                by: id.clone(),
            });
        }
        if policy.settle.is_some() && lock.burst_since_ms.is_none() {
            lock.burst_since_ms = Some(now.ms);
        }
    }
    let busy = lock.holders.len() >= policy.room();
    let paused = policy.mode == Mode::Superseded && policy.when_busy == WhenBusy::Pause && busy;
    lock.waiting.push_back(Waiter {
        execution_id: id.clone(),
        since_ms: now.ms,
        number,
        paused,
    });
    let admitted = admit(lock, policy, now);
    if !entered(&admitted, &id) {
        effects.push(if paused {
            Effect::Pause { execution_id: id }
        } else {
            Effect::Wait { execution_id: id }
        });
    }
    effects.extend(admitted);
    effects
}

fn entered(effects: &[Effect], id: &str) -> bool {
    effects
        .iter()
        .any(|e| matches!(e, Effect::Enter { execution_id, .. } if execution_id == id))
}

/// The holder `execution_id` leaves the stage; waiting executions enter while there is room.
pub fn leave(
    lock: &mut StageLock,
    policy: &StagePolicy,
    execution_id: &str,
    result: LeaveReason,
    now: Now,
) -> Vec<Effect> {
    let before = lock.holders.len();
    lock.holders.retain(|h| h.execution_id != execution_id);
    if lock.holders.len() != before {
        lock.last_outcome = Some(Outcome {
            execution_id: execution_id.to_string(),
            result,
            at_ms: now.ms,
        });
    }
    admit(lock, policy, now)
}

/// A waiting execution is taken out of the line (stopped while inbound): it never enters.
pub fn withdraw(
    lock: &mut StageLock,
    policy: &StagePolicy,
    execution_id: &str,
    now: Now,
) -> Vec<Effect> {
    lock.waiting.retain(|w| w.execution_id != execution_id);
    if lock.waiting.is_empty() {
        lock.burst_since_ms = None;
    }
    admit(lock, policy, now)
}

/// A person resumes a Paused waiter: it waits like any other and enters when it may.
/// Errs (in words) when `execution_id` is not paused in front of this stage.
pub fn resume(
    lock: &mut StageLock,
    policy: &StagePolicy,
    execution_id: &str,
    now: Now,
) -> Result<Vec<Effect>, String> {
    let waiter = lock
        .waiting
        .iter_mut()
        .find(|w| w.execution_id == execution_id)
        .ok_or_else(|| "it is not waiting in front of the stage".to_string())?;
    if !waiter.paused {
        return Err("it is waiting but not paused".to_string());
    }
    waiter.paused = false;
    let admitted = admit(lock, policy, now);
    let mut effects = Vec::new();
    if !entered(&admitted, execution_id) {
        effects.push(Effect::Wait {
            execution_id: execution_id.to_string(),
        });
    }
    effects.extend(admitted);
    Ok(effects)
}

/// Enables or disables the transition into the stage. Enabling lets the waiting ones in.
pub fn set_transition(
    lock: &mut StageLock,
    policy: &StagePolicy,
    transition: Transition,
    now: Now,
) -> Vec<Effect> {
    lock.transition = transition;
    admit(lock, policy, now)
}

/// A timer asked for with [`Effect::WakeAt`] fired (or anything outside changed): lets in
/// whoever may enter now.
pub fn tick(lock: &mut StageLock, policy: &StagePolicy, now: Now) -> Vec<Effect> {
    admit(lock, policy, now)
}

/// Lets waiting executions in while the stage has room and the transition is enabled; with
/// `cancel_running`, asks a full stage's holders to stop for the next one.
pub fn admit(lock: &mut StageLock, policy: &StagePolicy, now: Now) -> Vec<Effect> {
    let mut effects = Vec::new();
    if !lock.transition.is_enabled() {
        return effects;
    }
    while let Some(i) = next(lock, policy, now) {
        let full = lock.holders.len() >= policy.room();
        if let Some(due) = lock.settle_due(policy, &lock.waiting[i])
            && now.ms < due
        {
            // A full stage lets the waiter in when its holder leaves; only a free stage, or
            // one whose holder this waiter will stop, needs to be asked again at `due`.
            if !full || cancels_holders(policy) {
                effects.push(Effect::WakeAt { at_ms: due });
            }
            break;
        }
        if full {
            if cancels_holders(policy) {
                let by = lock.waiting[i].execution_id.clone();
                for holder in lock.holders.iter_mut() {
                    if holder.cancelled_by.is_none() {
                        holder.cancelled_by = Some(by.clone());
                        effects.push(Effect::CancelHolder {
                            execution_id: holder.execution_id.clone(),
                            by: by.clone(),
                        });
                    }
                }
            }
            break;
        }
        let Some(waiter) = lock.waiting.remove(i) else {
            break;
        };
        effects.push(lock.enter(waiter.execution_id, now.ms));
        if lock.waiting.is_empty() {
            lock.burst_since_ms = None;
        }
    }
    effects
}

/// The index of the waiter that enters next, if one may (not paused, not held for a newer
/// upstream execution).
fn next(lock: &StageLock, policy: &StagePolicy, now: Now) -> Option<usize> {
    let first = lock
        .line(policy)
        .into_iter()
        .find(|&i| !lock.waiting[i].paused)?;
    let holds_for_newer = policy.mode == Mode::Queued
        && policy.order == QueueOrder::NewestFirst
        && now
            .newest_upstream
            .is_some_and(|n| n > lock.waiting[first].number);
    (!holds_for_newer).then_some(first)
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "rules_props.rs"]
mod props;
