//! Unit tests of the stage rules: one example per rule, in the sources' own terms.

use super::*;
use crate::stage::policy::SettleMs;

fn enter(id: &str, fence: u64) -> Effect {
    Effect::Enter {
        execution_id: id.into(),
        fence_token: fence,
    }
}

fn wait(id: &str) -> Effect {
    Effect::Wait {
        execution_id: id.into(),
    }
}

fn supersede(id: &str, by: &str) -> Effect {
    Effect::Supersede {
        execution_id: id.into(),
        by: by.into(),
    }
}

fn superseded() -> StagePolicy {
    StagePolicy::of_mode(Mode::Superseded)
}

fn queued(order: QueueOrder, capacity: usize) -> StagePolicy {
    StagePolicy {
        order,
        capacity,
        ..StagePolicy::of_mode(Mode::Queued)
    }
}

fn busy(when_busy: WhenBusy) -> StagePolicy {
    StagePolicy {
        when_busy,
        ..superseded()
    }
}

fn settling(window_ms: i64, max_wait_ms: i64) -> StagePolicy {
    StagePolicy {
        settle: Some(SettleMs {
            window_ms,
            max_wait_ms,
        }),
        ..superseded()
    }
}

/// Arrival of `e{n}` at time `t`.
fn arrive_n(lock: &mut StageLock, policy: &StagePolicy, n: u64, t: i64) -> Vec<Effect> {
    arrive(lock, policy, &format!("e{n}"), n, Now::at(t))
}

fn disabled() -> Transition {
    Transition::Disabled {
        by: "alice".into(),
        reason: "freeze".into(),
        since_ms: 0,
    }
}

#[test]
fn first_arrival_enters_a_free_stage() {
    let mut lock = StageLock::default();
    assert_eq!(
        arrive_n(&mut lock, &superseded(), 1, 0),
        vec![enter("e1", 1)]
    );
    assert!(lock.holds("e1"));
}

#[test]
fn codepipeline_rules_1_to_3_lock_wait_and_supersede() {
    let p = superseded();
    let mut lock = StageLock::default();
    arrive_n(&mut lock, &p, 1, 0);
    // Rule 2: a later execution waits in front of the locked stage.
    assert_eq!(arrive_n(&mut lock, &p, 2, 1), vec![wait("e2")]);
    // Rule 3: a more recent execution overtakes the waiting one, which goes no further.
    assert_eq!(
        arrive_n(&mut lock, &p, 3, 2),
        vec![supersede("e2", "e3"), wait("e3")]
    );
    // Rule 1: the holder is never superseded; superseding happens only between stages.
    assert!(lock.holds("e1"));
    assert_eq!(
        leave(&mut lock, &p, "e1", LeaveReason::Succeeded, Now::at(3)),
        vec![enter("e3", 2)]
    );
    assert_eq!(
        lock.last_outcome.as_ref().map(|o| o.result),
        Some(LeaveReason::Succeeded)
    );
}

#[test]
fn a_failure_releases_the_lock_for_the_waiting_execution() {
    let p = superseded();
    let mut lock = StageLock::default();
    arrive_n(&mut lock, &p, 1, 0);
    arrive_n(&mut lock, &p, 2, 1);
    assert_eq!(
        leave(&mut lock, &p, "e1", LeaveReason::Failed, Now::at(2)),
        vec![enter("e2", 2)]
    );
}

#[test]
fn queued_fifo_admits_in_arrival_order() {
    let p = queued(QueueOrder::Fifo, 1);
    let mut lock = StageLock::default();
    for n in 1..=3 {
        arrive_n(&mut lock, &p, n, 0);
    }
    assert_eq!(
        leave(&mut lock, &p, "e1", LeaveReason::Failed, Now::at(1)),
        vec![enter("e2", 2)]
    );
    assert_eq!(
        leave(&mut lock, &p, "e2", LeaveReason::Succeeded, Now::at(2)),
        vec![enter("e3", 3)]
    );
}

#[test]
fn queued_capacity_lets_that_many_in_at_once() {
    let p = queued(QueueOrder::Fifo, 2);
    let mut lock = StageLock::default();
    assert_eq!(arrive_n(&mut lock, &p, 1, 0), vec![enter("e1", 1)]);
    assert_eq!(arrive_n(&mut lock, &p, 2, 0), vec![enter("e2", 2)]);
    assert_eq!(arrive_n(&mut lock, &p, 3, 0), vec![wait("e3")]);
    assert_eq!(
        why_waiting(&lock, &p, 0, Now::at(0)),
        WaitWhy::LockHeld {
            execution_ids: vec!["e1".into(), "e2".into()]
        }
    );
    assert_eq!(
        leave(&mut lock, &p, "e2", LeaveReason::Succeeded, Now::at(1)),
        vec![enter("e3", 3)]
    );
}

#[test]
fn newest_first_orders_take_the_newest_waiter() {
    for order in [QueueOrder::NewestFirst, QueueOrder::NewestReadyFirst] {
        let p = queued(order, 1);
        let mut lock = StageLock::default();
        for n in 1..=4 {
            arrive_n(&mut lock, &p, n, 0);
        }
        assert_eq!(
            why_waiting(&lock, &p, 0, Now::at(0)),
            WaitWhy::QueuedBehind {
                execution_id: "e3".into()
            },
            "{order:?}: e2 is behind e3, the next newest"
        );
        assert_eq!(
            leave(&mut lock, &p, "e1", LeaveReason::Succeeded, Now::at(1)),
            vec![enter("e4", 2)]
        );
        assert_eq!(
            leave(&mut lock, &p, "e4", LeaveReason::Succeeded, Now::at(2)),
            vec![enter("e3", 3)]
        );
    }
}

#[test]
fn newest_first_holds_for_a_newer_execution_upstream_and_newest_ready_first_does_not() {
    let upstream = Now {
        ms: 1,
        newest_upstream: Some(9),
    };
    let p = queued(QueueOrder::NewestFirst, 1);
    let mut lock = StageLock::default();
    arrive_n(&mut lock, &p, 1, 0);
    arrive_n(&mut lock, &p, 2, 0);
    assert!(leave(&mut lock, &p, "e1", LeaveReason::Succeeded, upstream).is_empty());
    assert_eq!(
        why_waiting(&lock, &p, 0, upstream),
        WaitWhy::HoldingForNewer { number: 9 }
    );
    assert_eq!(tick(&mut lock, &p, Now::at(2)), vec![enter("e2", 2)]);

    let p = queued(QueueOrder::NewestReadyFirst, 1);
    let mut lock = StageLock::default();
    arrive_n(&mut lock, &p, 1, 0);
    arrive_n(&mut lock, &p, 2, 0);
    assert_eq!(
        leave(&mut lock, &p, "e1", LeaveReason::Succeeded, upstream),
        vec![enter("e2", 2)]
    );
}

#[test]
fn parallel_stage_lets_everyone_in() {
    let p = StagePolicy::of_mode(Mode::Parallel);
    let mut lock = StageLock::default();
    arrive_n(&mut lock, &p, 1, 0);
    assert_eq!(arrive_n(&mut lock, &p, 2, 0), vec![enter("e2", 2)]);
    assert_eq!(lock.holders.len(), 2);
}

#[test]
fn withdrawn_waiter_never_enters() {
    let p = superseded();
    let mut lock = StageLock::default();
    arrive_n(&mut lock, &p, 1, 0);
    arrive_n(&mut lock, &p, 2, 0);
    withdraw(&mut lock, &p, "e2", Now::at(0));
    assert!(leave(&mut lock, &p, "e1", LeaveReason::Stopped, Now::at(1)).is_empty());
    assert!(lock.holders.is_empty());
}

#[test]
fn disabled_transition_holds_arrivals_and_the_latest_enters_when_enabled() {
    let p = superseded();
    let mut lock = StageLock::default();
    assert!(set_transition(&mut lock, &p, disabled(), Now::at(0)).is_empty());
    // Even a free stage is not entered while the transition is disabled.
    assert_eq!(arrive_n(&mut lock, &p, 1, 1), vec![wait("e1")]);
    assert_eq!(
        why_waiting(&lock, &p, 0, Now::at(1)),
        WaitWhy::TransitionDisabled {
            by: "alice".into(),
            reason: "freeze".into()
        }
    );
    // The waiting execution can still be superseded.
    assert_eq!(
        arrive_n(&mut lock, &p, 2, 2),
        vec![supersede("e1", "e2"), wait("e2")]
    );
    assert_eq!(
        set_transition(&mut lock, &p, Transition::Enabled, Now::at(3)),
        vec![enter("e2", 1)]
    );
}

#[test]
fn stopped_inbound_execution_never_enters_even_after_the_transition_reopens() {
    let p = superseded();
    let mut lock = StageLock::default();
    set_transition(&mut lock, &p, disabled(), Now::at(0));
    arrive_n(&mut lock, &p, 1, 1);
    withdraw(&mut lock, &p, "e1", Now::at(2));
    assert!(set_transition(&mut lock, &p, Transition::Enabled, Now::at(3)).is_empty());
    assert!(lock.holders.is_empty() && lock.waiting.is_empty());
}

#[test]
fn when_busy_pause_pauses_the_newer_until_resumed() {
    let p = busy(WhenBusy::Pause);
    let mut lock = StageLock::default();
    arrive_n(&mut lock, &p, 1, 0);
    assert_eq!(
        arrive_n(&mut lock, &p, 2, 1),
        vec![Effect::Pause {
            execution_id: "e2".into()
        }]
    );
    // The previous runs to the end; the paused one stays paused.
    assert!(leave(&mut lock, &p, "e1", LeaveReason::Succeeded, Now::at(2)).is_empty());
    assert_eq!(why_waiting(&lock, &p, 0, Now::at(2)), WaitWhy::Paused);
    assert!(resume(&mut lock, &p, "e1", Now::at(3)).is_err());
    assert_eq!(
        resume(&mut lock, &p, "e2", Now::at(3)),
        Ok(vec![enter("e2", 2)])
    );
    assert!(resume(&mut lock, &p, "e2", Now::at(3)).is_err());
}

#[test]
fn when_busy_pause_resumed_execution_waits_for_the_holder() {
    let p = busy(WhenBusy::Pause);
    let mut lock = StageLock::default();
    arrive_n(&mut lock, &p, 1, 0);
    arrive_n(&mut lock, &p, 2, 1);
    assert_eq!(
        resume(&mut lock, &p, "e2", Now::at(2)),
        Ok(vec![wait("e2")])
    );
    assert_eq!(
        leave(&mut lock, &p, "e1", LeaveReason::Succeeded, Now::at(3)),
        vec![enter("e2", 2)]
    );
}

#[test]
fn when_busy_cancel_running_stops_the_holder_once_then_enters_after_it() {
    let p = busy(WhenBusy::CancelRunning);
    let mut lock = StageLock::default();
    arrive_n(&mut lock, &p, 1, 0);
    assert_eq!(
        arrive_n(&mut lock, &p, 2, 1),
        vec![
            wait("e2"),
            Effect::CancelHolder {
                execution_id: "e1".into(),
                by: "e2".into()
            }
        ]
    );
    // A third supersedes the second; the holder is already being stopped.
    assert_eq!(
        arrive_n(&mut lock, &p, 3, 2),
        vec![supersede("e2", "e3"), wait("e3")]
    );
    assert_eq!(
        why_waiting(&lock, &p, 0, Now::at(2)),
        WaitWhy::Cancelling {
            execution_id: "e1".into()
        }
    );
    assert_eq!(
        leave(&mut lock, &p, "e1", LeaveReason::Cancelled, Now::at(3)),
        vec![enter("e3", 2)]
    );
}

#[test]
fn settle_lets_only_the_last_of_a_burst_in_after_the_window() {
    let p = settling(100, 1_000);
    let mut lock = StageLock::default();
    assert_eq!(
        arrive_n(&mut lock, &p, 1, 0),
        vec![wait("e1"), Effect::WakeAt { at_ms: 100 }]
    );
    assert_eq!(
        arrive_n(&mut lock, &p, 2, 50),
        vec![
            supersede("e1", "e2"),
            wait("e2"),
            Effect::WakeAt { at_ms: 150 }
        ]
    );
    // The first timer fires but e2 is younger than the window.
    assert_eq!(
        tick(&mut lock, &p, Now::at(100)),
        vec![Effect::WakeAt { at_ms: 150 }]
    );
    assert_eq!(
        why_waiting(&lock, &p, 0, Now::at(100)),
        WaitWhy::Settling { until_ms: 150 }
    );
    assert_eq!(tick(&mut lock, &p, Now::at(150)), vec![enter("e2", 1)]);
    assert_eq!(lock.burst_since_ms, None);
}

#[test]
fn settle_cannot_starve_the_stage_past_max_wait() {
    let p = settling(100, 250);
    let mut lock = StageLock::default();
    // A steady stream, one arrival every 80 ms, never leaves a 100 ms gap.
    for (n, t) in [(1, 0), (2, 80), (3, 160)] {
        arrive_n(&mut lock, &p, n, t);
    }
    let effects = arrive_n(&mut lock, &p, 4, 240);
    assert_eq!(effects.last(), Some(&Effect::WakeAt { at_ms: 250 }));
    assert_eq!(tick(&mut lock, &p, Now::at(250)), vec![enter("e4", 1)]);
}

#[test]
fn settle_with_a_held_stage_waits_for_the_holder_without_a_timer() {
    let p = settling(100, 1_000);
    let mut lock = StageLock::default();
    arrive_n(&mut lock, &p, 1, 0);
    tick(&mut lock, &p, Now::at(100));
    assert!(lock.holds("e1"));
    assert_eq!(arrive_n(&mut lock, &p, 2, 110), vec![wait("e2")]);
    // The holder leaves before e2 has settled: a timer, then entry.
    assert_eq!(
        leave(&mut lock, &p, "e1", LeaveReason::Succeeded, Now::at(150)),
        vec![Effect::WakeAt { at_ms: 210 }]
    );
    assert_eq!(tick(&mut lock, &p, Now::at(210)), vec![enter("e2", 2)]);
}
