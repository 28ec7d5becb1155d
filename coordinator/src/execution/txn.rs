//! One unit of change of a pipeline actor: what to persist, then what to announce and send
//! once it is durable.

use std::collections::{BTreeSet, VecDeque};

use super::lanes::LaneKey;
use crate::dispatcher::JobSignal;
use crate::events::Event;
use crate::stage::actor::Ask;
use crate::stage::rules::LeaveReason;
use crate::store::StoreError;

/// A question for one stage (of one lane), answered before the transaction commits.
#[derive(Debug, Clone)]
pub struct Work {
    /// Stage name.
    pub stage: String,
    /// The lane ("" for the pipeline's single lane or a shared stage).
    pub lane: String,
    /// The question.
    pub ask: Ask,
}

impl Work {
    /// The execution (number `number`) arrives in front of `stage` in `lane`.
    pub fn arrive(execution_id: &str, number: u64, stage: &str, lane: &str) -> Self {
        Self::new(
            stage,
            lane,
            Ask::Arrive {
                execution_id: execution_id.to_string(),
                number,
            },
        )
    }

    /// The execution leaves `stage` in `lane`, which it holds.
    pub fn leave(execution_id: &str, stage: &str, lane: &str, reason: LeaveReason) -> Self {
        Self::new(
            stage,
            lane,
            Ask::Leave {
                execution_id: execution_id.to_string(),
                reason,
            },
        )
    }

    /// A question `ask` for `stage` in `lane`.
    pub fn new(stage: &str, lane: &str, ask: Ask) -> Self {
        Self {
            stage: stage.to_string(),
            lane: lane.to_string(),
            ask,
        }
    }

    /// The stage and lane the work is for.
    pub fn key(&self) -> LaneKey {
        (self.stage.clone(), self.lane.clone())
    }
}

/// Called with the commit's result.
pub type Reply = Box<dyn FnOnce(&super::PipelineActor, Result<(), StoreError>) + Send>;

/// Everything one message changes.
#[derive(Default)]
pub struct Txn {
    /// Executions to write.
    pub executions: BTreeSet<String>,
    /// Jobs to write.
    pub jobs: BTreeSet<String>,
    /// Stages (of lanes) to write.
    pub stages: BTreeSet<LaneKey>,
    /// Events to publish after the commit.
    pub events: Vec<Event>,
    /// Jobs to hand to the dispatcher after the commit.
    pub enqueue: Vec<String>,
    /// Jobs to take back from the dispatcher after the commit.
    pub cancel: Vec<String>,
    /// Signals to send after the commit.
    pub signals: Vec<(String, JobSignal)>,
    /// Stage questions still to ask.
    pub work: VecDeque<Work>,
    /// Timers to arm after the commit: ask the stage again at this time (Unix ms).
    pub timers: Vec<(LaneKey, i64)>,
    /// Answers to send after the commit.
    pub replies: Vec<Reply>,
    /// Retried executions that run again only the actions that did not succeed, by id.
    pub retry_failed_only: BTreeSet<String>,
    /// Other records to write in the same batch (client request tokens).
    pub writes: Vec<crate::store::Op>,
    /// Client request tokens this batch stores (pending until it lands).
    pub tokens: Vec<String>,
    /// Executions this batch writes as ended: they leave memory once it lands.
    pub ended: Vec<String>,
}
