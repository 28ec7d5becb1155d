//! The dispatcher's messages: what pipelines, worker sessions and the API ask of it, and the
//! job reports it routes back to pipelines.

use std::collections::BTreeMap;

use actix::prelude::*;
use baton_proto::v1::{self as pb, worker_message::Msg as FromWorker};
use tokio::sync::mpsc::UnboundedSender;

use crate::store::records::JobStatus;

/// A change of a job that its pipeline must hear about.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct JobEvent {
    /// The job.
    pub job_id: String,
    /// What happened.
    pub kind: JobEventKind,
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEventKind {
    /// A worker accepted it.
    Accepted {
        /// The worker.
        worker: String,
    },
    /// A step finished.
    StepFinished {
        /// Steps finished so far.
        steps_done: u32,
    },
    /// It is still queued; `message` says why no worker takes it ("" once one could).
    Waiting {
        /// Why it waits, in words.
        message: String,
    },
    /// It ended.
    Finished {
        /// Succeeded, Failed, Abandoned, Stopped or Lost.
        status: JobStatus,
        /// The last exit code.
        exit_code: i32,
        /// Steps finished.
        steps_done: u32,
        /// What happened, in words.
        message: String,
    },
}

/// A job ready to run.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Enqueue {
    /// What the worker runs.
    pub spec: pb::JobSpec,
    /// Labels a worker must offer.
    pub labels: BTreeMap<String, String>,
    /// Where reports go.
    pub route: Recipient<JobEvent>,
}

/// A job that was running when the coordinator stopped: wait one lease for its worker.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Adopt {
    /// The job.
    pub job_id: String,
    /// The worker that ran it.
    pub worker: String,
    /// Where reports go.
    pub route: Recipient<JobEvent>,
}

/// Takes a job back: a queued one leaves the queue, an offered one is withdrawn, and one that
/// was accepted meanwhile is abandoned.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Cancel(pub String);

/// A cancellation signal for a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobSignal {
    /// Terminate now: SIGTERM to the group, grace, SIGKILL.
    Abandon {
        /// Grace between SIGTERM and SIGKILL.
        grace_ms: u64,
    },
    /// Finish the running step, skip the rest.
    Drain,
}

/// Sends a signal to the worker running a job.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Signal {
    /// The job.
    pub job_id: String,
    /// Which signal.
    pub signal: JobSignal,
}

/// A worker registered on a new session. The dispatcher sends `registered` (with the
/// worker's resume point filled in) before anything else on `tx`.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct Connected {
    /// The worker's registration.
    pub register: pb::Register,
    /// The answer to send first.
    pub registered: pb::Registered,
    /// Its outbound stream.
    pub tx: UnboundedSender<pb::CoordinatorMessage>,
}

/// A message from a worker's session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromSession {
    /// The worker.
    pub worker: String,
    /// The session it came on.
    pub session: u64,
    /// Its sequence number (0: not sequenced).
    pub seq: u64,
    /// The message.
    pub msg: FromWorker,
}

/// A worker's session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnected {
    /// The worker.
    pub worker: String,
    /// The session that ended.
    pub session: u64,
}

/// A worker as `ListWorkers` shows it.
#[derive(Debug, Clone)]
pub struct WorkerView {
    /// Name.
    pub name: String,
    /// Labels it offers.
    pub labels: BTreeMap<String, String>,
    /// Job slots.
    pub slots: u32,
    /// Slots taken by running jobs and unanswered offers.
    pub slots_in_use: u32,
    /// Jobs it runs.
    pub running_jobs: Vec<String>,
    /// Connected, draining, disconnected (within its lease) or lost.
    pub state: pb::WorkerState,
    /// Last message (Unix ms).
    pub last_seen_ms: i64,
}

/// Lists workers.
#[derive(Message)]
#[rtype(result = "Vec<WorkerView>")]
pub struct ListWorkers;

/// Drains a worker: it takes no new job, finishes its running ones, says goodbye and leaves.
#[derive(Message)]
#[rtype(result = "Option<WorkerView>")]
pub struct DrainWorkerNamed(pub String);
