//! The stage actor: owns one stage's lock state and answers with the rules' decisions.
//!
//! The pipeline actor asks; the stage actor decides (through [`super::rules`]) and returns the
//! effects together with its new state, which the pipeline actor persists in the same batch as
//! the executions the effects change. It never does I/O itself.

use actix::prelude::*;

use super::rules::{self, Effect, LeaveReason, StageLock};
use crate::pipeline::Mode;

/// One stage (of one lane) of one pipeline.
pub struct StageActor {
    mode: Mode,
    lock: StageLock,
}

impl StageActor {
    /// A stage in `mode` starting from `lock` (as stored).
    pub fn new(mode: Mode, lock: StageLock) -> Self {
        Self { mode, lock }
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

/// Asks the stage what happens to an execution that arrives in front of it.
#[derive(Message)]
#[rtype(result = "Decision")]
pub struct Arrive {
    /// The execution.
    pub execution_id: String,
    /// Now (Unix ms).
    pub now_ms: i64,
}

/// Tells the stage its holder leaves.
#[derive(Message)]
#[rtype(result = "Decision")]
pub struct Leave {
    /// The execution.
    pub execution_id: String,
    /// Why.
    pub reason: LeaveReason,
    /// Now (Unix ms).
    pub now_ms: i64,
}

/// Takes a waiting execution out of the line (it was stopped while inbound).
#[derive(Message)]
#[rtype(result = "Decision")]
pub struct Withdraw {
    /// The execution.
    pub execution_id: String,
}

/// Changes the stage's mode (a new pipeline version).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetMode(pub Mode);

impl Handler<Arrive> for StageActor {
    type Result = MessageResult<Arrive>;
    fn handle(&mut self, msg: Arrive, _: &mut Context<Self>) -> Self::Result {
        let effects = rules::arrive(&mut self.lock, self.mode, &msg.execution_id, msg.now_ms);
        MessageResult(self.decision(effects))
    }
}

impl Handler<Leave> for StageActor {
    type Result = MessageResult<Leave>;
    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) -> Self::Result {
        let effects = rules::leave(
            &mut self.lock,
            self.mode,
            &msg.execution_id,
            msg.reason,
            msg.now_ms,
        );
        MessageResult(self.decision(effects))
    }
}

impl Handler<Withdraw> for StageActor {
    type Result = MessageResult<Withdraw>;
    fn handle(&mut self, msg: Withdraw, _: &mut Context<Self>) -> Self::Result {
        rules::withdraw(&mut self.lock, &msg.execution_id);
        MessageResult(self.decision(Vec::new()))
    }
}

impl Handler<SetMode> for StageActor {
    type Result = ();
    fn handle(&mut self, msg: SetMode, _: &mut Context<Self>) {
        self.mode = msg.0;
    }
}

impl StageActor {
    fn decision(&self, effects: Vec<Effect>) -> Decision {
        Decision {
            effects,
            lock: self.lock.clone(),
        }
    }
}

impl StageActor {
    /// The stage's mode and lock, for the decisions kept outside [`rules`] (see
    /// [`super::reentry`]).
    pub(super) fn parts(&mut self) -> (Mode, &mut StageLock) {
        (self.mode, &mut self.lock)
    }
}
