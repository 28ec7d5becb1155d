//! The stage rules: what happens when an execution arrives at, leaves, or is withdrawn from a
//! stage. Plain functions over plain data: no I/O, no clocks (time is passed in).
//!
//! SUPERSEDED (CodePipeline rules 1–3): one execution holds the lock; one may wait in front
//! (the inbound slot); a newer arrival takes the slot and the one it displaces is superseded.
//! Superseding happens only between stages, never inside one. QUEUED: arrivals wait in FIFO
//! order. PARALLEL: no lock, everyone enters.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::pipeline::Mode;

/// An execution inside the stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The execution.
    pub execution_id: String,
    /// When it entered (Unix ms).
    pub since_ms: i64,
    /// The fence token it entered with.
    pub fence_token: u64,
}

/// An execution waiting in front of the stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    /// The execution.
    pub execution_id: String,
    /// When it started waiting (Unix ms).
    pub since_ms: i64,
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
}

/// One stage's lock state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageLock {
    /// Executions inside (at most one unless the stage is PARALLEL).
    pub holders: Vec<Holder>,
    /// Executions waiting in front, first to enter first.
    pub waiting: VecDeque<Waiter>,
    /// The latest fence token issued; increases on every entry.
    pub fence_token: u64,
    /// The last execution that left.
    pub last_outcome: Option<Outcome>,
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
    /// The waiting execution was displaced by a newer one and goes no further.
    Supersede {
        /// The displaced execution.
        execution_id: String,
        /// The newer execution that took its place.
        by: String,
    },
}

impl StageLock {
    fn enter(&mut self, execution_id: String, now_ms: i64) -> Effect {
        self.fence_token += 1;
        self.holders.push(Holder {
            execution_id: execution_id.clone(),
            since_ms: now_ms,
            fence_token: self.fence_token,
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
}

/// An execution arrives in front of the stage.
pub fn arrive(lock: &mut StageLock, mode: Mode, execution_id: &str, now_ms: i64) -> Vec<Effect> {
    let id = execution_id.to_string();
    if mode == Mode::Parallel || lock.holders.is_empty() && lock.waiting.is_empty() {
        return vec![lock.enter(id, now_ms)];
    }
    let mut effects = Vec::new();
    if mode == Mode::Superseded {
        // The inbound slot holds one execution: a newer arrival displaces it.
        for displaced in lock.waiting.drain(..) {
            effects.push(Effect::Supersede {
                execution_id: displaced.execution_id,
                by: id.clone(),
            });
        }
    }
    lock.waiting.push_back(Waiter {
        execution_id: id.clone(),
        since_ms: now_ms,
    });
    effects.push(Effect::Wait { execution_id: id });
    // A free lock with waiters (e.g. after a restart) admits the first one now.
    effects.extend(admit(lock, mode, now_ms));
    effects
}

/// The holder `execution_id` leaves the stage; the next waiter (if any) enters.
pub fn leave(
    lock: &mut StageLock,
    mode: Mode,
    execution_id: &str,
    result: LeaveReason,
    now_ms: i64,
) -> Vec<Effect> {
    let before = lock.holders.len();
    lock.holders.retain(|h| h.execution_id != execution_id);
    if lock.holders.len() != before {
        lock.last_outcome = Some(Outcome {
            execution_id: execution_id.to_string(),
            result,
            at_ms: now_ms,
        });
    }
    admit(lock, mode, now_ms)
}

/// A waiting execution is taken out of the line (stopped while inbound). Returns whether it
/// was waiting.
pub fn withdraw(lock: &mut StageLock, execution_id: &str) -> bool {
    let before = lock.waiting.len();
    lock.waiting.retain(|w| w.execution_id != execution_id);
    lock.waiting.len() != before
}

/// Lets waiting executions in while the stage has room.
pub fn admit(lock: &mut StageLock, mode: Mode, now_ms: i64) -> Vec<Effect> {
    let capacity = if mode == Mode::Parallel {
        usize::MAX
    } else {
        1
    };
    let mut effects = Vec::new();
    while lock.holders.len() < capacity {
        let Some(next) = lock.waiting.pop_front() else {
            break;
        };
        effects.push(lock.enter(next.execution_id, now_ms));
    }
    effects
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
