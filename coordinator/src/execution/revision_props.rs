//! Property test of revision order over the stage rules: random revisions arrive out of order
//! at a three-stage SUPERSEDED pipeline (one branch), holders complete, fail or are stopped
//! while waiting; every arrival first passes [`outranked_by`], as the pipeline actor does.
//!
//! Invariants:
//! - the revision orders that complete the last stage strictly increase: an older revision
//!   never completes after a newer one did (no old deploy overtakes a new one);
//! - when nobody fails and nobody is stopped, the execution that finally completes the last
//!   stage is the highest order that arrived.

use proptest::prelude::*;

use super::revision::{Rival, outranked_by};
use crate::pipeline::Mode;
use crate::stage::policy::StagePolicy;
use crate::stage::rules::{self, Effect, LeaveReason, Now, StageLock};
use crate::store::records::ExecutionStatus;

const STAGES: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    Arrive(u64),
    Complete(usize),
    Fail(usize),
    StopWaiting(usize),
}

fn step(with_failures: bool) -> BoxedStrategy<Step> {
    let base = prop_oneof![
        3 => (1u64..1000).prop_map(Step::Arrive),
        3 => (0..STAGES).prop_map(Step::Complete),
    ];
    if with_failures {
        prop_oneof![
            6 => base,
            1 => (0..STAGES).prop_map(Step::Fail),
            1 => (0..STAGES).prop_map(Step::StopWaiting),
        ]
        .boxed()
    } else {
        base.boxed()
    }
}

struct Exec {
    order: u64,
    status: ExecutionStatus,
    reached: [bool; STAGES],
}

struct Sim {
    locks: Vec<StageLock>,
    policy: StagePolicy,
    execs: Vec<Exec>,
    completed: Vec<u64>,
    now: i64,
}

impl Sim {
    fn new() -> Self {
        Sim {
            locks: vec![StageLock::default(); STAGES],
            policy: StagePolicy::of_mode(Mode::Superseded),
            execs: Vec::new(),
            completed: Vec::new(),
            now: 0,
        }
    }

    fn index(id: &str) -> usize {
        id.parse().unwrap_or(usize::MAX)
    }

    fn apply(&mut self, stage: usize, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Enter { execution_id, .. } | Effect::Wait { execution_id } => {
                    if let Some(e) = self.execs.get_mut(Self::index(&execution_id)) {
                        e.reached[stage] = true;
                    }
                }
                Effect::Supersede { execution_id, .. } => {
                    if let Some(e) = self.execs.get_mut(Self::index(&execution_id)) {
                        e.status = ExecutionStatus::Superseded;
                    }
                }
                _ => {}
            }
        }
    }

    fn arrive(&mut self, i: usize, stage: usize) {
        self.now += 1;
        let ids: Vec<String> = (0..self.execs.len()).map(|n| n.to_string()).collect();
        let rivals = self
            .execs
            .iter()
            .enumerate()
            .filter(|(n, _)| *n != i)
            .map(|(n, e)| Rival {
                id: &ids[n],
                key: "main",
                order: e.order,
                reached: e.reached[stage],
                status: e.status,
            });
        if outranked_by("main", self.execs[i].order, rivals).is_some() {
            self.execs[i].status = ExecutionStatus::Superseded;
            return;
        }
        let number = i as u64 + 1;
        let effects = rules::arrive(
            &mut self.locks[stage],
            &self.policy,
            &i.to_string(),
            number,
            Now::at(self.now),
        );
        self.apply(stage, effects);
    }

    fn holder(&self, stage: usize) -> Option<usize> {
        self.locks[stage]
            .holders
            .first()
            .map(|h| Self::index(&h.execution_id))
    }

    fn leave(&mut self, stage: usize, i: usize, reason: LeaveReason) {
        self.now += 1;
        let effects = rules::leave(
            &mut self.locks[stage],
            &self.policy,
            &i.to_string(),
            reason,
            Now::at(self.now),
        );
        self.apply(stage, effects);
    }

    fn complete(&mut self, stage: usize) -> bool {
        let Some(i) = self.holder(stage) else {
            return false;
        };
        self.leave(stage, i, LeaveReason::Succeeded);
        if stage + 1 < STAGES {
            self.arrive(i, stage + 1);
        } else {
            self.execs[i].status = ExecutionStatus::Succeeded;
            self.completed.push(self.execs[i].order);
        }
        true
    }

    fn step(&mut self, step: &Step) {
        match *step {
            Step::Arrive(order) => {
                // Distinct orders: the arrival index breaks ties.
                let order = order * 1000 + self.execs.len() as u64;
                self.execs.push(Exec {
                    order,
                    status: ExecutionStatus::InProgress,
                    reached: [false; STAGES],
                });
                self.arrive(self.execs.len() - 1, 0);
            }
            Step::Complete(stage) => {
                self.complete(stage);
            }
            Step::Fail(stage) => {
                if let Some(i) = self.holder(stage) {
                    self.execs[i].status = ExecutionStatus::Failed;
                    self.leave(stage, i, LeaveReason::Failed);
                }
            }
            Step::StopWaiting(stage) => {
                let waiter = self.locks[stage]
                    .waiting
                    .front()
                    .map(|w| w.execution_id.clone());
                if let Some(id) = waiter {
                    self.execs[Self::index(&id)].status = ExecutionStatus::Stopped;
                    self.now += 1;
                    let effects = rules::withdraw(
                        &mut self.locks[stage],
                        &self.policy,
                        &id,
                        Now::at(self.now),
                    );
                    self.apply(stage, effects);
                }
            }
        }
    }

    /// Completes whatever is left, last stage first, until nothing holds any stage.
    fn drain(&mut self) {
        while (0..STAGES).rev().any(|s| self.complete(s)) {}
    }

    fn completions_increase(&self) -> bool {
        self.completed.windows(2).all(|w| w[0] < w[1])
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_older_revision_completes_after_a_newer_one(
        steps in proptest::collection::vec(step(true), 1..80),
    ) {
        let mut sim = Sim::new();
        for s in &steps {
            sim.step(s);
            prop_assert!(sim.completions_increase(), "completions {:?}", sim.completed);
        }
        sim.drain();
        prop_assert!(sim.completions_increase(), "completions {:?}", sim.completed);
    }

    #[test]
    fn without_failures_or_stops_the_highest_order_completes_last(
        steps in proptest::collection::vec(step(false), 1..80),
    ) {
        let mut sim = Sim::new();
        for s in &steps {
            sim.step(s);
        }
        sim.drain();
        let highest = sim.execs.iter().map(|e| e.order).max();
        prop_assert_eq!(sim.completed.last().copied(), highest, "completions {:?}", sim.completed);
    }
}
