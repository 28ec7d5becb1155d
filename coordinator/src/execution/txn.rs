//! One unit of change of a pipeline actor: what to persist, then what to announce and send
//! once it is durable.

use std::collections::{BTreeSet, VecDeque};

use crate::dispatcher::JobSignal;
use crate::events::Event;
use crate::stage::rules::LeaveReason;
use crate::store::StoreError;

/// A question for a stage actor, answered before the transaction commits.
#[derive(Debug, Clone)]
pub enum Work {
    /// The execution arrives in front of stage `stage`.
    Arrive {
        /// The execution.
        execution_id: String,
        /// Stage name.
        stage: String,
    },
    /// The execution leaves stage `stage`, which it holds.
    Leave {
        /// The execution.
        execution_id: String,
        /// Stage name.
        stage: String,
        /// Why.
        reason: LeaveReason,
    },
    /// The execution, stopped while waiting, leaves the line in front of `stage`.
    Withdraw {
        /// The execution.
        execution_id: String,
        /// Stage name.
        stage: String,
    },
}

impl Work {
    /// The stage the work is for.
    pub fn stage(&self) -> &str {
        match self {
            Work::Arrive { stage, .. }
            | Work::Leave { stage, .. }
            | Work::Withdraw { stage, .. } => stage,
        }
    }
}

/// Called with the commit's result.
pub type Reply = Box<dyn FnOnce(&super::PipelineActor, Result<(), StoreError>)>;

/// Everything one message changes.
#[derive(Default)]
pub struct Txn {
    /// Executions to write.
    pub executions: BTreeSet<String>,
    /// Jobs to write.
    pub jobs: BTreeSet<String>,
    /// Stages to write.
    pub stages: BTreeSet<String>,
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
    /// Answers to send after the commit.
    pub replies: Vec<Reply>,
    /// Other records to write in the same batch (client request tokens).
    pub writes: Vec<crate::store::Op>,
}
