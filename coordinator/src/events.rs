//! State-change events for watchers: numbered, published after the change is durable.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::broadcast;

use crate::store::records::{ExecutionStatus, JobStatus, StageStatus};

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An execution's status.
    Execution(ExecutionStatus),
    /// An execution's status in one stage.
    Stage(StageStatus),
    /// A job's status.
    Job(JobStatus),
}

/// One state change of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Increases by one per event.
    pub seq: u64,
    /// When (Unix ms).
    pub at_ms: i64,
    /// Pipeline name.
    pub pipeline: String,
    /// Execution id.
    pub execution_id: String,
    /// Stage name, when about a stage or job.
    pub stage: String,
    /// Job id, when about a job.
    pub job_id: String,
    /// The new status.
    pub change: Change,
    /// Human words for it.
    pub message: String,
}

/// Fans events out to every watcher.
pub struct EventHub {
    seq: AtomicU64,
    tx: broadcast::Sender<Event>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self {
            seq: AtomicU64::new(0),
            tx: broadcast::channel(4096).0,
        }
    }
}

impl EventHub {
    /// Numbers and publishes `event` (its `seq` is overwritten).
    pub fn publish(&self, mut event: Event) {
        event.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        // No watcher is not an error.
        let _ = self.tx.send(event);
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
