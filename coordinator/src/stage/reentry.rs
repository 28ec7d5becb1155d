//! Entering a stage outside the arrival line: a failed or stopped execution that is retried
//! re-takes the lock it left ([`reenter`]), and a pending `follow_latest` approval hands the
//! lock to the newest execution waiting in front ([`hand_over_to_newest`]). Pure functions
//! over the stage's lock, asked through the stage actor (`Ask::Reenter`, `Ask::HandOver`).

use super::rules::{Effect, Holder, LeaveReason, Outcome, StageLock};
use crate::pipeline::Mode;

fn enter(lock: &mut StageLock, execution_id: &str, now_ms: i64) -> Effect {
    lock.fence_token += 1;
    lock.holders.push(Holder {
        execution_id: execution_id.to_string(),
        since_ms: now_ms,
        fence_token: lock.fence_token,
        cancelled_by: None,
    });
    Effect::Enter {
        execution_id: execution_id.to_string(),
        fence_token: lock.fence_token,
    }
}

/// Why a retried execution may not re-enter the stage now, in words; `None` when it may.
///
/// `fence_token` is the token it held in the stage. In a locking stage (not PARALLEL) it
/// may re-enter only while no other execution has entered since (the stage's fence token is
/// still its own) and nobody holds or waits for the stage.
pub fn refusal(lock: &StageLock, mode: Mode, fence_token: u64) -> Option<String> {
    if mode == Mode::Parallel {
        return None;
    }
    if lock.fence_token != fence_token {
        return Some(format!(
            "another execution has entered the stage since (fence token {} is now {}); it can \
             no longer be retried, start a new execution instead",
            fence_token, lock.fence_token
        ));
    }
    if let Some(h) = lock.holders.first() {
        return Some(format!("the stage is busy: {} holds it", h.execution_id));
    }
    if let Some(w) = lock.waiting.front() {
        return Some(format!(
            "the stage is busy: {} waits in front of it",
            w.execution_id
        ));
    }
    None
}

/// A retried execution re-takes the stage it left with `fence_token`; refused (no effect,
/// nothing changed) when [`refusal`] says so.
pub fn reenter(
    lock: &mut StageLock,
    mode: Mode,
    execution_id: &str,
    fence_token: u64,
    now_ms: i64,
) -> Result<Effect, String> {
    if let Some(why) = refusal(lock, mode, fence_token) {
        return Err(why);
    }
    Ok(enter(lock, execution_id, now_ms))
}

/// The holder `holder` (whose pending approval follows the latest revision) gives the stage
/// to the newest waiter: the holder leaves, every older waiter is superseded by the newest,
/// and the newest enters. Nothing happens when nobody waits or `holder` does not hold it.
pub fn hand_over_to_newest(lock: &mut StageLock, holder: &str, now_ms: i64) -> Vec<Effect> {
    if !lock.holds(holder) {
        return Vec::new();
    }
    let Some(newest) = lock.waiting.pop_back() else {
        return Vec::new();
    };
    lock.holders.retain(|h| h.execution_id != holder);
    lock.last_outcome = Some(Outcome {
        execution_id: holder.to_string(),
        result: LeaveReason::Stopped,
        at_ms: now_ms,
    });
    let mut effects: Vec<Effect> = lock
        .waiting
        .drain(..)
        .map(|older| Effect::Supersede {
            execution_id: older.execution_id,
            by: newest.execution_id.clone(),
        })
        .collect();
    effects.push(enter(lock, &newest.execution_id, now_ms));
    effects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::policy::StagePolicy;
    use crate::stage::rules::{self, Now, Waiter};

    fn failed_in(mode: Mode) -> (StageLock, u64) {
        let mut lock = StageLock::default();
        rules::arrive(&mut lock, &StagePolicy::of_mode(mode), "e1", 1, Now::at(0));
        let fence = lock.fence_token;
        rules::leave(
            &mut lock,
            &StagePolicy::of_mode(mode),
            "e1",
            LeaveReason::Failed,
            Now::at(1),
        );
        (lock, fence)
    }

    #[test]
    fn a_failed_execution_re_enters_with_a_new_fence_token() {
        let (mut lock, fence) = failed_in(Mode::Superseded);
        let effect = reenter(&mut lock, Mode::Superseded, "e1", fence, 2).expect("allowed");
        assert_eq!(
            effect,
            Effect::Enter {
                execution_id: "e1".into(),
                fence_token: fence + 1
            }
        );
        assert!(lock.holds("e1"));
    }

    #[test]
    fn retry_is_refused_once_another_execution_entered() {
        let (mut lock, fence) = failed_in(Mode::Queued);
        rules::arrive(
            &mut lock,
            &StagePolicy::of_mode(Mode::Queued),
            "e2",
            2,
            Now::at(3),
        );
        let why = reenter(&mut lock, Mode::Queued, "e1", fence, 4).expect_err("refused");
        assert!(why.contains("another execution has entered"), "{why}");
        rules::leave(
            &mut lock,
            &StagePolicy::of_mode(Mode::Queued),
            "e2",
            LeaveReason::Succeeded,
            Now::at(5),
        );
        assert!(reenter(&mut lock, Mode::Queued, "e1", fence, 6).is_err());
        assert!(!lock.holds("e1"));
    }

    #[test]
    fn retry_is_refused_while_someone_waits() {
        let (mut lock, fence) = failed_in(Mode::Superseded);
        lock.waiting.push_back(Waiter {
            execution_id: "e2".into(),
            since_ms: 3,
            number: 2,
            paused: false,
        });
        let why = reenter(&mut lock, Mode::Superseded, "e1", fence, 4).expect_err("busy");
        assert!(why.contains("busy"), "{why}");
    }

    #[test]
    fn hand_over_supersedes_older_waiters_and_admits_the_newest() {
        let mut lock = StageLock::default();
        rules::arrive(
            &mut lock,
            &StagePolicy::of_mode(Mode::Queued),
            "e1",
            3,
            Now::at(0),
        );
        rules::arrive(
            &mut lock,
            &StagePolicy::of_mode(Mode::Queued),
            "e2",
            4,
            Now::at(1),
        );
        rules::arrive(
            &mut lock,
            &StagePolicy::of_mode(Mode::Queued),
            "e3",
            5,
            Now::at(2),
        );
        let effects = hand_over_to_newest(&mut lock, "e1", 3);
        assert_eq!(
            effects,
            [
                Effect::Supersede {
                    execution_id: "e2".into(),
                    by: "e3".into()
                },
                Effect::Enter {
                    execution_id: "e3".into(),
                    fence_token: 2
                }
            ]
        );
        assert!(lock.holds("e3") && !lock.holds("e1") && lock.waiting.is_empty());
        assert!(hand_over_to_newest(&mut lock, "e3", 4).is_empty());
    }
}
