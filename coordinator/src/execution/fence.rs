//! `CheckFence`: whether a fence token still holds its stage, answered from the pipeline
//! actor's mirror of the stage locks (which is only ever updated after the store has the
//! change, so a token this says holds is durable).

use actix::prelude::*;

use super::actor::PipelineActor;
use crate::error::CoordError;

/// Asks whether `token` still holds `stage`.
#[derive(Message)]
#[rtype(result = "Result<FenceAnswer, CoordError>")]
pub struct CheckFence {
    /// Stage name.
    pub stage: String,
    /// The lane (`BATON_BRANCH` with `lanes: branch`; empty for the pipeline's one lane).
    pub lane: String,
    /// The token a job was given (`BATON_FENCE_TOKEN`).
    pub token: u64,
}

/// The answer to [`CheckFence`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceAnswer {
    /// True when an execution holds the stage with `token`.
    pub holds: bool,
    /// The latest token issued for the stage.
    pub current_token: u64,
    /// The execution holding the stage with `token` (when it holds) or with the latest token.
    pub holder_execution_id: String,
    /// Why it does not hold, in words; empty when it holds.
    pub message: String,
}

impl Handler<CheckFence> for PipelineActor {
    type Result = Result<FenceAnswer, CoordError>;
    fn handle(&mut self, msg: CheckFence, _: &mut Context<Self>) -> Self::Result {
        if !self.spec.stages.iter().any(|s| s.name == msg.stage) {
            return Err(CoordError::NotFound(format!(
                "pipeline {} has no stage {}",
                self.name, msg.stage
            )));
        }
        let lock = self
            .locks
            .get(&(msg.stage.clone(), msg.lane.clone()))
            .cloned()
            .unwrap_or_default();
        let holder = lock.holders.iter().find(|h| h.fence_token == msg.token);
        let latest = lock.holders.iter().max_by_key(|h| h.fence_token);
        let message = match (holder, latest) {
            (Some(_), _) => String::new(),
            _ if msg.token > lock.fence_token => format!(
                "fence token {} was never issued for {}/{} (the latest is {})",
                msg.token, self.name, msg.stage, lock.fence_token
            ),
            (None, Some(h)) => format!(
                "fence token {} no longer holds {}/{}: execution {} holds it with token {}",
                msg.token, self.name, msg.stage, h.execution_id, h.fence_token
            ),
            (None, None) => format!(
                "fence token {} no longer holds {}/{}: the stage is free (latest token {})",
                msg.token, self.name, msg.stage, lock.fence_token
            ),
        };
        Ok(FenceAnswer {
            holds: holder.is_some(),
            current_token: lock.fence_token,
            holder_execution_id: holder
                .or(latest)
                .map(|h| h.execution_id.clone())
                .unwrap_or_default(),
            message,
        })
    }
}
