//! Property tests of the stage rules: random policies driven by random sequences of arrivals,
//! completions, failures, stops, transition toggles, resumes and clock advances, with the
//! timers the rules ask for fired as the actor shell would fire them.
//!
//! Invariants checked after every step:
//! - the stage never holds more executions than its room (capacity);
//! - a Superseded, Cancelled or Stopped execution never enters;
//! - fence tokens strictly increase (by one per entry);
//! - QUEUED `fifo`: no execution overtakes an earlier one;
//! - with `settle`: nothing enters while the newest arrival is younger than the window,
//!   unless `max_wait` has passed since the burst's first arrival;
//! - nothing is forgotten: whenever an execution could enter, it has, or a timer is armed.

use std::collections::HashSet;

use proptest::prelude::*;

use super::*;
use crate::stage::policy::SettleMs;

#[derive(Debug, Clone)]
enum Step {
    Arrive,
    Complete(usize),
    Fail(usize),
    StopHolder(usize),
    FinishCancel,
    StopWaiter(usize),
    Disable,
    Enable,
    Resume(usize),
    Advance(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Arrive),
        2 => any::<usize>().prop_map(Step::Complete),
        1 => any::<usize>().prop_map(Step::Fail),
        1 => any::<usize>().prop_map(Step::StopHolder),
        1 => Just(Step::FinishCancel),
        1 => any::<usize>().prop_map(Step::StopWaiter),
        1 => Just(Step::Disable),
        1 => Just(Step::Enable),
        1 => any::<usize>().prop_map(Step::Resume),
        3 => (1i64..300).prop_map(Step::Advance),
    ]
}

fn policy() -> impl Strategy<Value = StagePolicy> {
    let superseded = (
        prop_oneof![
            Just(WhenBusy::Supersede),
            Just(WhenBusy::Pause),
            Just(WhenBusy::CancelRunning)
        ],
        proptest::option::of((1i64..200, 1i64..5)),
    )
        .prop_map(|(when_busy, settle)| StagePolicy {
            when_busy,
            settle: settle
                .filter(|_| when_busy != WhenBusy::Pause)
                .map(|(window_ms, factor)| SettleMs {
                    window_ms,
                    max_wait_ms: window_ms * factor,
                }),
            ..StagePolicy::of_mode(Mode::Superseded)
        });
    let queued = (
        prop_oneof![
            Just(QueueOrder::Fifo),
            Just(QueueOrder::NewestFirst),
            Just(QueueOrder::NewestReadyFirst)
        ],
        1usize..4,
    )
        .prop_map(|(order, capacity)| StagePolicy {
            order,
            capacity,
            ..StagePolicy::of_mode(Mode::Queued)
        });
    prop_oneof![
        3 => superseded,
        3 => queued,
        1 => Just(StagePolicy::of_mode(Mode::Parallel)),
    ]
}

/// The stage and what the test remembers about it.
struct Sim {
    lock: StageLock,
    policy: StagePolicy,
    now: i64,
    next_number: u64,
    /// Executions that may never enter: superseded, stopped while waiting, or that left.
    ended: HashSet<String>,
    /// Timers armed and not yet fired.
    timers: Vec<i64>,
    /// Numbers in the order they entered.
    entered: Vec<u64>,
    last_arrival_ms: i64,
    burst_first_ms: Option<i64>,
}

impl Sim {
    fn new(policy: StagePolicy) -> Self {
        Sim {
            lock: StageLock::default(),
            policy,
            now: 0,
            next_number: 0,
            ended: HashSet::new(),
            timers: Vec::new(),
            entered: Vec::new(),
            last_arrival_ms: 0,
            burst_first_ms: None,
        }
    }

    fn now(&self) -> Now {
        Now::at(self.now)
    }

    fn holder(&self, i: usize) -> Option<String> {
        let n = self.lock.holders.len();
        (n > 0).then(|| self.lock.holders[i % n].execution_id.clone())
    }

    fn waiter(&self, i: usize) -> Option<String> {
        let n = self.lock.waiting.len();
        (n > 0).then(|| self.lock.waiting[i % n].execution_id.clone())
    }

    fn leave(&mut self, id: String, reason: LeaveReason) -> Vec<Effect> {
        self.ended.insert(id.clone());
        let now = self.now();
        leave(&mut self.lock, &self.policy, &id, reason, now)
    }

    fn run(&mut self, step: Step) -> Result<(), TestCaseError> {
        let (p, now) = (self.policy, self.now());
        let effects = match step {
            Step::Arrive => {
                self.next_number += 1;
                self.last_arrival_ms = self.now;
                if self.policy.mode == Mode::Superseded && self.burst_first_ms.is_none() {
                    self.burst_first_ms = Some(self.now);
                }
                let id = format!("e{}", self.next_number);
                arrive(&mut self.lock, &p, &id, self.next_number, now)
            }
            Step::Complete(i) => match self.holder(i) {
                Some(id) => self.leave(id, LeaveReason::Succeeded),
                None => Vec::new(),
            },
            Step::Fail(i) => match self.holder(i) {
                Some(id) => self.leave(id, LeaveReason::Failed),
                None => Vec::new(),
            },
            Step::StopHolder(i) => match self.holder(i) {
                Some(id) => self.leave(id, LeaveReason::Stopped),
                None => Vec::new(),
            },
            Step::FinishCancel => {
                let cancelled = self.lock.holders.iter().find(|h| h.cancelled_by.is_some());
                match cancelled.map(|h| h.execution_id.clone()) {
                    Some(id) => self.leave(id, LeaveReason::Cancelled),
                    None => Vec::new(),
                }
            }
            Step::StopWaiter(i) => match self.waiter(i) {
                Some(id) => {
                    self.ended.insert(id.clone());
                    let effects = withdraw(&mut self.lock, &p, &id, now);
                    if self.lock.waiting.is_empty() {
                        self.burst_first_ms = None;
                    }
                    effects
                }
                None => Vec::new(),
            },
            Step::Disable => {
                let t = Transition::Disabled {
                    by: "prop".into(),
                    reason: "test".into(),
                    since_ms: self.now,
                };
                set_transition(&mut self.lock, &p, t, now)
            }
            Step::Enable => set_transition(&mut self.lock, &p, Transition::Enabled, now),
            Step::Resume(i) => match self.waiter(i) {
                Some(id) => resume(&mut self.lock, &p, &id, now).unwrap_or_default(),
                None => Vec::new(),
            },
            Step::Advance(ms) => {
                self.now += ms;
                let mut effects = Vec::new();
                // Fire due timers one at a time, as the shell does.
                while let Some(pos) = self.timers.iter().position(|&t| t <= self.now) {
                    self.timers.swap_remove(pos);
                    let now = self.now();
                    let fired = tick(&mut self.lock, &p, now);
                    self.check(&fired)?;
                    effects.extend(fired);
                }
                return self.check_state();
            }
        };
        self.check(&effects)?;
        self.check_state()
    }

    /// Checks and records one decision's effects.
    fn check(&mut self, effects: &[Effect]) -> Result<(), TestCaseError> {
        for effect in effects {
            match effect {
                Effect::Enter {
                    execution_id,
                    fence_token,
                } => {
                    prop_assert!(
                        !self.ended.contains(execution_id),
                        "{execution_id} entered after it was superseded, stopped or left"
                    );
                    prop_assert_eq!(*fence_token, self.entered.len() as u64 + 1);
                    let number: u64 = execution_id[1..].parse().unwrap_or(0);
                    if let Some(settle) = self.policy.settle {
                        let quiet = self.now - self.last_arrival_ms >= settle.window_ms;
                        let overdue = self
                            .burst_first_ms
                            .is_some_and(|f| self.now - f >= settle.max_wait_ms);
                        prop_assert!(
                            quiet || overdue,
                            "{execution_id} entered at {} while the newest arrival ({}) is \
                             younger than {} and max_wait has not passed",
                            self.now,
                            self.last_arrival_ms,
                            settle.window_ms
                        );
                        self.burst_first_ms = None;
                    }
                    self.entered.push(number);
                }
                Effect::Supersede { execution_id, by } => {
                    prop_assert!(!self.lock.holds(execution_id), "a holder was superseded");
                    prop_assert!(execution_id != by);
                    self.ended.insert(execution_id.clone());
                }
                Effect::CancelHolder { execution_id, .. } => {
                    prop_assert!(self.lock.holds(execution_id));
                }
                Effect::WakeAt { at_ms } => {
                    prop_assert!(*at_ms > self.now, "a timer for the past");
                    self.timers.push(*at_ms);
                }
                Effect::Wait { .. } | Effect::Pause { .. } => {}
            }
        }
        Ok(())
    }

    fn check_state(&self) -> Result<(), TestCaseError> {
        let lock = &self.lock;
        prop_assert!(lock.holders.len() <= self.policy.room(), "over capacity");
        prop_assert_eq!(lock.fence_token, self.entered.len() as u64);
        if self.policy.mode == Mode::Superseded {
            prop_assert!(lock.waiting.len() <= 1, "one inbound slot");
        }
        if self.policy.mode == Mode::Queued && self.policy.order == QueueOrder::Fifo {
            prop_assert!(
                self.entered.windows(2).all(|w| w[0] < w[1]),
                "fifo overtaken: {:?}",
                self.entered
            );
            let last = self.entered.last().copied().unwrap_or(0);
            prop_assert!(lock.waiting.iter().all(|w| w.number > last));
        }
        // Nothing forgotten: a waiter that may enter has, or a timer will let it.
        if lock.transition.is_enabled()
            && lock.holders.len() < self.policy.room()
            && let Some(w) = lock.waiting.iter().find(|w| !w.paused)
        {
            match lock.settle_due(&self.policy, w) {
                Some(due) if due > self.now => prop_assert!(
                    self.timers.iter().any(|&t| t <= due),
                    "{} settles until {due} but no timer is armed",
                    w.execution_id
                ),
                _ => prop_assert!(false, "{} could enter but waits", w.execution_id),
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn stage_invariants_hold_under_random_traffic(
        policy in policy(),
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        let mut sim = Sim::new(policy);
        for step in steps {
            sim.run(step)?;
        }
    }
}
