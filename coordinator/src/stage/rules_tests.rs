//! Unit and property tests of the stage rules.

use super::*;

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

#[test]
fn first_arrival_enters_a_free_stage() {
    let mut lock = StageLock::default();
    assert_eq!(
        arrive(&mut lock, Mode::Superseded, "e1", 0),
        vec![enter("e1", 1)]
    );
    assert!(lock.holds("e1"));
}

#[test]
fn newer_arrival_supersedes_the_waiting_execution() {
    let mut lock = StageLock::default();
    arrive(&mut lock, Mode::Superseded, "e1", 0);
    assert_eq!(
        arrive(&mut lock, Mode::Superseded, "e2", 1),
        vec![wait("e2")]
    );
    assert_eq!(
        arrive(&mut lock, Mode::Superseded, "e3", 2),
        vec![
            Effect::Supersede {
                execution_id: "e2".into(),
                by: "e3".into()
            },
            wait("e3")
        ]
    );
    // The holder is never superseded: superseding happens only between stages.
    assert!(lock.holds("e1"));
    assert_eq!(
        leave(&mut lock, Mode::Superseded, "e1", LeaveReason::Succeeded, 3),
        vec![enter("e3", 2)]
    );
    assert_eq!(
        lock.last_outcome.as_ref().map(|o| o.result),
        Some(LeaveReason::Succeeded)
    );
}

#[test]
fn queued_stage_admits_in_arrival_order() {
    let mut lock = StageLock::default();
    for id in ["e1", "e2", "e3"] {
        arrive(&mut lock, Mode::Queued, id, 0);
    }
    assert_eq!(
        leave(&mut lock, Mode::Queued, "e1", LeaveReason::Failed, 1),
        vec![enter("e2", 2)]
    );
    assert_eq!(
        leave(&mut lock, Mode::Queued, "e2", LeaveReason::Succeeded, 2),
        vec![enter("e3", 3)]
    );
}

#[test]
fn parallel_stage_lets_everyone_in() {
    let mut lock = StageLock::default();
    arrive(&mut lock, Mode::Parallel, "e1", 0);
    assert_eq!(
        arrive(&mut lock, Mode::Parallel, "e2", 0),
        vec![enter("e2", 2)]
    );
    assert_eq!(lock.holders.len(), 2);
}

#[test]
fn withdrawn_waiter_never_enters() {
    let mut lock = StageLock::default();
    arrive(&mut lock, Mode::Superseded, "e1", 0);
    arrive(&mut lock, Mode::Superseded, "e2", 0);
    assert!(withdraw(&mut lock, "e2"));
    assert!(leave(&mut lock, Mode::Superseded, "e1", LeaveReason::Stopped, 1).is_empty());
    assert!(lock.holders.is_empty());
}

/// Drives a stage with a random mix of arrivals and leaves and checks the invariants users
/// rely on: at most one holder, at most one waiter in SUPERSEDED, fence tokens only grow,
/// and whoever waits is the newest arrival that has not entered.
#[test]
fn superseded_invariants_hold_under_random_traffic() {
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _round in 0..200 {
        let mut lock = StageLock::default();
        let mut last_fence = 0;
        let mut arrived = 0u32;
        for step in 0..50 {
            if next() % 3 != 0 {
                arrived += 1;
                arrive(&mut lock, Mode::Superseded, &format!("e{arrived}"), step);
                let waiting: Vec<_> = lock
                    .waiting
                    .iter()
                    .map(|w| w.execution_id.clone())
                    .collect();
                if !waiting.is_empty() {
                    assert_eq!(waiting, vec![format!("e{arrived}")], "the newest waits");
                }
            } else if let Some(h) = lock.holders.first().cloned() {
                leave(
                    &mut lock,
                    Mode::Superseded,
                    &h.execution_id,
                    LeaveReason::Succeeded,
                    step,
                );
            }
            assert!(lock.holders.len() <= 1);
            assert!(lock.waiting.len() <= 1);
            assert!(lock.fence_token >= last_fence);
            last_fence = lock.fence_token;
            if lock.holders.is_empty() {
                assert!(lock.waiting.is_empty(), "a free stage has nobody waiting");
            }
        }
    }
}
