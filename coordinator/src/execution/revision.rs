//! Revision order: "newer" means a higher revision order, not a later arrival (issue 9).
//!
//! Pure rules, no I/O. Where a caller gives revision orders, a SUPERSEDED stage never admits
//! an execution whose order is lower than that of another execution of the same concurrency
//! key that has already reached the stage (waits in front of it, is inside it, or went past
//! it), unless that one failed or was stopped by a person. The older arrival is Superseded on
//! arrival, with a reason that names the newer one. Executions without an order (0) are
//! compared by arrival, as before.

use std::collections::HashMap;

use crate::store::records::{ExecutionRecord, ExecutionStatus, StageStatus};

/// Another execution as the rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rival<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its concurrency key (the branch by default).
    pub key: &'a str,
    /// Its revision order; 0 = not given.
    pub order: u64,
    /// Whether it reached the stage in question (waits at, is inside, or went past it).
    pub reached: bool,
    /// Its status.
    pub status: ExecutionStatus,
}

/// True when an execution in `status` still outranks older arrivals: everything except a
/// failure or a person's stop (a superseded or auto-cancelled one was ended by a newer one).
pub fn still_counts(status: ExecutionStatus) -> bool {
    !matches!(
        status,
        ExecutionStatus::Failed | ExecutionStatus::Stopped | ExecutionStatus::Stopping
    )
}

/// The rival that makes an arrival with `key` and `order` too old to enter, if any: the one
/// with the highest order.
pub fn outranked_by<'a>(
    key: &str,
    order: u64,
    rivals: impl IntoIterator<Item = Rival<'a>>,
) -> Option<Rival<'a>> {
    if order == 0 {
        return None;
    }
    rivals
        .into_iter()
        .filter(|r| r.key == key && r.order > order && r.reached && still_counts(r.status))
        .max_by_key(|r| r.order)
}

/// Whether `exec` reached stage `index`: it waits at, is inside, or went past it.
pub fn reached(exec: &ExecutionRecord, index: usize) -> bool {
    exec.stages
        .get(index)
        .is_some_and(|run| run.status != StageStatus::Pending)
        || exec.stage_index > index
}

/// Highest orders of executions that have ended and still count (succeeded, superseded,
/// cancelled), per concurrency key and stage index: what outranks arrivals once those
/// executions have left memory.
#[derive(Debug, Default, Clone)]
pub struct EndedOrders {
    highest: HashMap<(String, usize), u64>,
}

impl EndedOrders {
    /// Remembers an ended execution's order at every stage it reached.
    pub fn record(&mut self, key: &str, exec: &ExecutionRecord) {
        if exec.revision.order == 0 || !still_counts(exec.status) {
            return;
        }
        for index in 0..exec.stages.len() {
            if reached(exec, index) {
                let slot = self.highest.entry((key.to_string(), index)).or_insert(0);
                *slot = (*slot).max(exec.revision.order);
            }
        }
    }

    /// The highest ended order that reached stage `index` for `key`; 0 when none.
    pub fn highest(&self, key: &str, index: usize) -> u64 {
        self.highest
            .get(&(key.to_string(), index))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rival(
        id: &'static str,
        order: u64,
        reached: bool,
        status: ExecutionStatus,
    ) -> Rival<'static> {
        Rival {
            id,
            key: "main",
            order,
            reached,
            status,
        }
    }

    #[test]
    fn an_older_arrival_is_outranked_by_the_newest_that_reached_the_stage() {
        let rivals = [
            rival("r4", 4, true, ExecutionStatus::InProgress),
            rival("r5", 5, true, ExecutionStatus::Succeeded),
            rival("r9", 9, false, ExecutionStatus::InProgress),
        ];
        assert_eq!(outranked_by("main", 3, rivals).map(|r| r.id), Some("r5"));
        assert_eq!(outranked_by("main", 6, rivals), None);
    }

    #[test]
    fn failures_stops_other_keys_and_missing_orders_do_not_outrank() {
        let rivals = [
            rival("failed", 8, true, ExecutionStatus::Failed),
            rival("stopped", 7, true, ExecutionStatus::Stopped),
            Rival {
                key: "other",
                ..rival("other", 9, true, ExecutionStatus::InProgress)
            },
        ];
        assert_eq!(outranked_by("main", 3, rivals), None);
        let newer = [rival("r5", 5, true, ExecutionStatus::InProgress)];
        assert_eq!(
            outranked_by("main", 0, newer),
            None,
            "no order: arrival decides"
        );
    }
}
