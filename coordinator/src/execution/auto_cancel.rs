//! Auto-cancel, decided: which older executions a new one ends. A pure function over plain
//! data (no I/O, no clock); the pipeline actor applies the verdicts (see `cancel.rs`).
//!
//! `running` applies when its condition holds for the new execution, else `queued` when its
//! condition holds. `queued` cancels older executions of the same concurrency key that wait in
//! front of a stage (they have no job running); `running` also stops those inside a stage,
//! except inside an `interruptible: false` stage, where the execution finishes the stage and
//! is cancelled at the next boundary.

use crate::pipeline::condition::{self, ConditionInput};
use crate::pipeline::{CancelStop, ConcurrencyKey, PipelineSpec};
use crate::store::records::{ExecutionStatus, Revision, StageStatus};

/// An older execution as auto-cancel sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// The execution.
    pub id: &'a str,
    /// Its number (older ones have lower numbers).
    pub number: u64,
    /// Its revision order; 0 = not given.
    pub order: u64,
    /// Its branch.
    pub branch: &'a str,
    /// Its status.
    pub status: ExecutionStatus,
    /// Its status in the stage it is in or in front of.
    pub stage_status: StageStatus,
    /// Whether that stage may be interrupted.
    pub interruptible: bool,
    /// How that stage is stopped.
    pub on_cancel: CancelStop,
}

/// What happens to one older execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It waits in front of a stage: it is cancelled at once and leaves the line.
    CancelWaiting(String),
    /// It is inside a stage: its jobs are stopped this way, then it ends Cancelled.
    StopRunning(String, CancelStop),
    /// It is inside an `interruptible: false` stage: it finishes the stage, then ends
    /// Cancelled instead of going on.
    CancelAtBoundary(String),
}

impl Verdict {
    /// The execution the verdict is about.
    pub fn execution_id(&self) -> &str {
        match self {
            Verdict::CancelWaiting(id)
            | Verdict::StopRunning(id, _)
            | Verdict::CancelAtBoundary(id) => id,
        }
    }
}

/// Puts verdicts in the order they are carried out: every waiting execution leaves its line
/// first, then the executions inside stages are stopped; oldest (by `number`) first within
/// each, so events read in order.
///
/// Waiting ones go first because a holder whose jobs had not started leaves its stage at
/// once, and the stage then lets its next waiter in: that waiter must not be one the same
/// new execution is cancelling (it would enter, Cancelled, and hold the stage for good).
pub fn carrying_order(verdicts: &mut [Verdict], number: impl Fn(&str) -> u64) {
    verdicts.sort_by_key(|v| {
        let inside = !matches!(v, Verdict::CancelWaiting(_));
        (inside, number(v.execution_id()))
    });
}

/// Which rule applies to a new execution of `spec` for `revision`: `Some(true)` for
/// `running`, `Some(false)` for `queued`, `None` for neither. A condition that cannot be
/// evaluated counts as false (and is logged).
pub fn rule_for(spec: &PipelineSpec, revision: &Revision) -> Option<bool> {
    let input = ConditionInput {
        branch: &revision.branch,
        tag: &revision.tag,
        pull_request: &revision.pull_request,
        pipeline: &spec.name,
    };
    let holds = |rule: &Option<crate::pipeline::Condition>| {
        rule.as_ref().is_some_and(|c| {
            condition::evaluate(&c.expr, input).unwrap_or_else(|e| {
                tracing::warn!(pipeline = %spec.name, when = %c.expr, error = %e, "auto-cancel condition failed; treated as false");
                false
            })
        })
    };
    if holds(&spec.auto_cancel.running) {
        Some(true)
    } else if holds(&spec.auto_cancel.queued) {
        Some(false)
    } else {
        None
    }
}

/// Decides what a new execution (`number`, `revision`) ends among `candidates` when
/// `running` is the rule that applies (`false`: `queued`).
pub fn decide(
    key: ConcurrencyKey,
    running: bool,
    number: u64,
    revision: &Revision,
    candidates: &[Candidate<'_>],
) -> Vec<Verdict> {
    let competes = |c: &Candidate<'_>| {
        c.number < number
            // Where both give a revision order, only an older revision is ended: a late
            // trigger for an old commit never cancels a newer one.
            && !(revision.order > 0 && c.order >= revision.order)
            && match key {
                ConcurrencyKey::Branch => c.branch == revision.branch,
                ConcurrencyKey::Pipeline => true,
            }
    };
    let mut verdicts = Vec::new();
    for c in candidates.iter().filter(|c| competes(c)) {
        let waiting = matches!(c.stage_status, StageStatus::Waiting | StageStatus::Pending);
        match c.status {
            ExecutionStatus::InProgress | ExecutionStatus::Paused if waiting => {
                verdicts.push(Verdict::CancelWaiting(c.id.to_string()));
            }
            ExecutionStatus::InProgress if running && c.stage_status == StageStatus::InProgress => {
                verdicts.push(if c.interruptible {
                    Verdict::StopRunning(c.id.to_string(), c.on_cancel)
                } else {
                    Verdict::CancelAtBoundary(c.id.to_string())
                });
            }
            _ => {}
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(
        id: &'static str,
        number: u64,
        branch: &'static str,
        stage_status: StageStatus,
    ) -> Candidate<'static> {
        Candidate {
            id,
            number,
            order: 0,
            branch,
            status: ExecutionStatus::InProgress,
            stage_status,
            interruptible: true,
            on_cancel: CancelStop::Abandon,
        }
    }

    fn revision(branch: &str) -> Revision {
        Revision {
            branch: branch.into(),
            ..Revision::default()
        }
    }

    /// Semaphore's walk-through: A runs, B and C wait, D arrives.
    fn commits() -> Vec<Candidate<'static>> {
        vec![
            candidate("A", 1, "main", StageStatus::InProgress),
            candidate("B", 2, "main", StageStatus::Waiting),
            candidate("C", 3, "main", StageStatus::Waiting),
        ]
    }

    #[test]
    fn queued_cancels_only_the_waiting_ones() {
        let v = decide(
            ConcurrencyKey::Branch,
            false,
            4,
            &revision("main"),
            &commits(),
        );
        assert_eq!(
            v,
            [
                Verdict::CancelWaiting("B".into()),
                Verdict::CancelWaiting("C".into())
            ]
        );
    }

    #[test]
    fn running_also_stops_the_running_one() {
        let v = decide(
            ConcurrencyKey::Branch,
            true,
            4,
            &revision("main"),
            &commits(),
        );
        assert_eq!(
            v,
            [
                Verdict::StopRunning("A".into(), CancelStop::Abandon),
                Verdict::CancelWaiting("B".into()),
                Verdict::CancelWaiting("C".into())
            ]
        );
    }

    #[test]
    fn waiting_ones_leave_their_lines_before_a_holder_is_stopped() {
        // Semaphore's A/B/C/D with `running`: A's stop may release the stage at once (its
        // job had not started); B and C must be out of the line by then.
        let mut v = decide(
            ConcurrencyKey::Branch,
            true,
            4,
            &revision("main"),
            &commits(),
        );
        carrying_order(&mut v, |id| match id {
            "A" => 1,
            "B" => 2,
            _ => 3,
        });
        assert_eq!(
            v,
            [
                Verdict::CancelWaiting("B".into()),
                Verdict::CancelWaiting("C".into()),
                Verdict::StopRunning("A".into(), CancelStop::Abandon),
            ]
        );
    }

    #[test]
    fn only_older_executions_of_the_same_key_compete() {
        let mut all = commits();
        all.push(candidate("other", 2, "feature", StageStatus::Waiting));
        all.push(candidate("newer", 9, "main", StageStatus::Waiting));
        let by_branch = decide(ConcurrencyKey::Branch, false, 4, &revision("main"), &all);
        assert_eq!(by_branch.len(), 2);
        let by_pipeline = decide(ConcurrencyKey::Pipeline, false, 4, &revision("main"), &all);
        assert!(by_pipeline.contains(&Verdict::CancelWaiting("other".into())));
        assert!(!by_pipeline.contains(&Verdict::CancelWaiting("newer".into())));
    }

    #[test]
    fn a_non_interruptible_stage_is_left_to_finish() {
        let mut deploy = candidate("A", 1, "main", StageStatus::InProgress);
        deploy.interruptible = false;
        let v = decide(
            ConcurrencyKey::Branch,
            true,
            2,
            &revision("main"),
            &[deploy],
        );
        assert_eq!(v, [Verdict::CancelAtBoundary("A".into())]);
    }

    #[test]
    fn stopping_and_ended_executions_are_left_alone() {
        let mut stopping = candidate("A", 1, "main", StageStatus::Stopping);
        stopping.status = ExecutionStatus::Stopping;
        let v = decide(
            ConcurrencyKey::Branch,
            true,
            2,
            &revision("main"),
            &[stopping],
        );
        assert!(v.is_empty());
    }

    #[test]
    fn the_rule_follows_the_conditions() {
        let text = "name: p\nauto_cancel:\n  queued: {}\n  running:\n    when: \"branch != 'master'\"\nstages:\n  - name: s\n    actions:\n      - name: a\n        run: [make]\n";
        let spec = crate::pipeline::parse_pipeline_file("p.yaml", text).expect("valid");
        assert_eq!(rule_for(&spec, &revision("feature")), Some(true));
        assert_eq!(rule_for(&spec, &revision("master")), Some(false));
        let none = crate::pipeline::parse_pipeline_file(
            "p.yaml",
            "name: p\nstages:\n  - name: s\n    actions:\n      - name: a\n        run: [make]\n",
        )
        .expect("valid");
        assert_eq!(rule_for(&none, &revision("main")), None);
    }

    #[test]
    fn an_older_revision_never_cancels_a_newer_one() {
        let newer = Candidate {
            order: 9,
            ..candidate("r9", 1, "main", StageStatus::InProgress)
        };
        let older_rev = Revision {
            order: 3,
            ..revision("main")
        };
        let verdicts = decide(
            ConcurrencyKey::Branch,
            true,
            2,
            &older_rev,
            std::slice::from_ref(&newer),
        );
        assert!(verdicts.is_empty(), "{verdicts:?}");
        let newest_rev = Revision {
            order: 10,
            ..revision("main")
        };
        let verdicts = decide(ConcurrencyKey::Branch, true, 2, &newest_rev, &[newer]);
        assert_eq!(verdicts.len(), 1);
    }
}
