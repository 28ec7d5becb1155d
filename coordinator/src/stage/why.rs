//! Why a waiting execution has not entered a stage: a pure reading of the stage's state, in
//! the same terms the rules decide by ([`super::words`] puts it in words).

use super::policy::StagePolicy;
use super::rules::{Now, StageLock, Transition};
use crate::pipeline::{Mode, QueueOrder};

/// Why a waiting execution has not entered, most telling reason first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitWhy {
    /// It waits for a person to resume it.
    Paused,
    /// The transition into the stage is disabled.
    TransitionDisabled {
        /// Who disabled it.
        by: String,
        /// Why.
        reason: String,
    },
    /// It settles until this time (Unix ms).
    Settling {
        /// When it may enter.
        until_ms: i64,
    },
    /// Another execution is ahead of it in the line.
    QueuedBehind {
        /// The one ahead.
        execution_id: String,
    },
    /// The stage holds off for a newer execution still in an earlier stage.
    HoldingForNewer {
        /// That execution's number.
        number: u64,
    },
    /// The holder is being stopped for it (`cancel_running`).
    Cancelling {
        /// The holder.
        execution_id: String,
    },
    /// The stage is full.
    LockHeld {
        /// The holders.
        execution_ids: Vec<String>,
    },
    /// Nothing holds it back; it enters at the next decision.
    Entering,
}

/// Why the waiter at `index` of `lock.waiting` has not entered.
pub fn why_waiting(lock: &StageLock, policy: &StagePolicy, index: usize, now: Now) -> WaitWhy {
    let Some(waiter) = lock.waiting.get(index) else {
        return WaitWhy::Entering;
    };
    if waiter.paused {
        return WaitWhy::Paused;
    }
    if let Transition::Disabled { by, reason, .. } = &lock.transition {
        return WaitWhy::TransitionDisabled {
            by: by.clone(),
            reason: reason.clone(),
        };
    }
    if let Some(due) = lock.settle_due(policy, waiter)
        && now.ms < due
    {
        return WaitWhy::Settling { until_ms: due };
    }
    let line = lock.line(policy);
    let ahead = line
        .iter()
        .take_while(|&&i| i != index)
        .filter(|&&i| !lock.waiting[i].paused)
        .last();
    if let Some(&ahead) = ahead {
        return WaitWhy::QueuedBehind {
            execution_id: lock.waiting[ahead].execution_id.clone(),
        };
    }
    if policy.mode == Mode::Queued
        && policy.order == QueueOrder::NewestFirst
        && let Some(n) = now.newest_upstream.filter(|&n| n > waiter.number)
    {
        return WaitWhy::HoldingForNewer { number: n };
    }
    if lock.holders.len() >= policy.room() {
        if let Some(h) = lock.holders.iter().find(|h| h.cancelled_by.is_some()) {
            return WaitWhy::Cancelling {
                execution_id: h.execution_id.clone(),
            };
        }
        return WaitWhy::LockHeld {
            execution_ids: lock
                .holders
                .iter()
                .map(|h| h.execution_id.clone())
                .collect(),
        };
    }
    WaitWhy::Entering
}
