//! The stage actor: owns one stage's (one lane's) lock state and answers with the rules'
//! decisions.
//!
//! The pipeline actor asks; the stage actor decides (through [`super::rules`]) and returns the
//! effects together with its new state, which the pipeline actor persists in the same batch as
//! the executions the effects change. It never does I/O itself, and never reads a clock: the
//! time comes with every question.

use actix::prelude::*;

use super::policy::StagePolicy;
use super::reentry;
use super::rules::{self, Effect, LeaveReason, Now, StageLock, Transition};

/// One stage (of one lane) of one pipeline.
pub struct StageActor {
    policy: StagePolicy,
    lock: StageLock,
}

impl StageActor {
    /// A stage with `policy` starting from `lock` (as stored).
    pub fn new(policy: StagePolicy, lock: StageLock) -> Self {
        Self { policy, lock }
    }
}

impl Actor for StageActor {
    type Context = Context<Self>;
}

/// What the stage decided, with its state after the decision.
#[derive(Debug, Clone)]
pub struct Decision {
    /// What happens, in order.
    pub effects: Vec<Effect>,
    /// The stage's state to persist.
    pub lock: StageLock,
}

/// A question for the stage; every one is answered with a [`Decision`].
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Decision, String>")]
pub enum Ask {
    /// An execution arrives in front of the stage.
    Arrive {
        /// The execution.
        execution_id: String,
        /// Its number (higher is newer).
        number: u64,
    },
    /// The holder leaves.
    Leave {
        /// The execution.
        execution_id: String,
        /// Why.
        reason: LeaveReason,
    },
    /// A waiting execution leaves the line (it was stopped while inbound).
    Withdraw {
        /// The execution.
        execution_id: String,
    },
    /// A person resumes a paused execution; refused (in words) when it is not paused here.
    Resume {
        /// The execution.
        execution_id: String,
    },
    /// The transition into the stage is enabled or disabled.
    SetTransition(Transition),
    /// A timer fired, or something upstream changed: let in whoever may enter.
    Tick,
    /// A retried execution re-takes the stage it left with `fence_token`; refused (in
    /// words) once another execution has entered since or while the stage is busy.
    Reenter {
        /// The execution.
        execution_id: String,
        /// The fence token it held there.
        fence_token: u64,
    },
    /// The holder's pending `follow_latest` approval moves to the newest waiter.
    HandOver {
        /// The holder.
        execution_id: String,
    },
}

/// [`Ask`] with the moment it is asked.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Decision, String>")]
pub struct AskAt {
    /// The question.
    pub ask: Ask,
    /// The time and what is upstream.
    pub now: Now,
}

/// Changes the stage's policy (a new pipeline version).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetPolicy(pub StagePolicy);

/// The rules' answer to `ask` for a stage with `policy` whose state is `lock` (changed in
/// place): the stage actor's decision without the actor, so that models of the pipeline (the
/// property tests) ask exactly what the actor asks.
pub fn answer(
    lock: &mut StageLock,
    policy: &StagePolicy,
    ask: Ask,
    now: Now,
) -> Result<Vec<Effect>, String> {
    let p = policy;
    match ask {
        Ask::Arrive {
            execution_id,
            number,
        } => Ok(rules::arrive(lock, p, &execution_id, number, now)),
        Ask::Leave {
            execution_id,
            reason,
        } => Ok(rules::leave(lock, p, &execution_id, reason, now)),
        Ask::Withdraw { execution_id } => Ok(rules::withdraw(lock, p, &execution_id, now)),
        Ask::Resume { execution_id } => rules::resume(lock, p, &execution_id, now),
        Ask::SetTransition(t) => Ok(rules::set_transition(lock, p, t, now)),
        Ask::Tick => Ok(rules::tick(lock, p, now)),
        Ask::Reenter {
            execution_id,
            fence_token,
        } => reentry::reenter(lock, p.mode, &execution_id, fence_token, now.ms).map(|e| vec![e]),
        Ask::HandOver { execution_id } => {
            Ok(reentry::hand_over_to_newest(lock, &execution_id, now.ms))
        }
    }
}

impl Handler<AskAt> for StageActor {
    type Result = MessageResult<AskAt>;
    fn handle(&mut self, msg: AskAt, _: &mut Context<Self>) -> Self::Result {
        let effects = answer(&mut self.lock, &self.policy, msg.ask, msg.now);
        MessageResult(effects.map(|effects| Decision {
            effects,
            lock: self.lock.clone(),
        }))
    }
}

impl Handler<SetPolicy> for StageActor {
    type Result = ();
    fn handle(&mut self, msg: SetPolicy, _: &mut Context<Self>) {
        self.policy = msg.0;
    }
}
