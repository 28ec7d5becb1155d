//! State-change events for watchers: numbered per pipeline and stored in the same batch as the
//! change they describe, published only after that batch is durable, replayed from the store
//! for a watcher that comes back with `since`.

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError, Tree, key_num, key_num_suffix, prefix};

use crate::store::records::{ExecutionStatus, JobStatus, StageStatus};

/// What changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// An execution's status.
    Execution(ExecutionStatus),
    /// An execution's status in one stage.
    Stage(StageStatus),
    /// A job's status.
    Job(JobStatus),
}

/// One state change of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Increases by one per event of the pipeline, from 1; stored with the change it
    /// describes, so it survives restarts and has no gaps.
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

/// Fans events out to every watcher, after they are stored.
pub struct EventHub {
    tx: broadcast::Sender<Event>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(4096).0,
        }
    }
}

impl EventHub {
    /// Publishes an event that is already stored (numbered by its pipeline's commit).
    pub fn publish(&self, event: Event) {
        // No watcher is not an error.
        let _ = self.tx.send(event);
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// The stored events of `pipeline` numbered after `after`, at most `limit`, in order.
pub fn stored_after(
    store: &Store,
    pipeline: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    store
        .scan_from(
            Tree::Events,
            &prefix(pipeline),
            &key_num(pipeline, after.saturating_add(1)),
            limit,
        )?
        .iter()
        .map(|(_, v)| {
            serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
                tree: Tree::Events.name(),
                message: e.to_string(),
            })
        })
        .collect()
}

/// The number of the last stored event of `pipeline` (0 if none).
pub fn last_seq(store: &Store, pipeline: &str) -> Result<u64, StoreError> {
    Ok(store
        .scan_last(Tree::Events, &prefix(pipeline), 1)?
        .first()
        .and_then(|(k, _)| key_num_suffix(k))
        .unwrap_or(0))
}

/// The number of the oldest stored event of `pipeline` (0 if none).
pub fn first_seq(store: &Store, pipeline: &str) -> Result<u64, StoreError> {
    Ok(store
        .scan_from(Tree::Events, &prefix(pipeline), &prefix(pipeline), 1)?
        .first()
        .and_then(|(k, _)| key_num_suffix(k))
        .unwrap_or(0))
}

/// Events replayed from the store per read.
const REPLAY_PAGE: usize = 512;

/// Streams `pipeline`'s events numbered after `after`: first those already stored, then live
/// ones, each exactly once and in order.
///
/// It subscribes before it reads the store, and events are published only after they are
/// stored, so every event is either read or received (or both: then the number drops the
/// second copy). A watcher that falls behind the live channel reads the missed events from
/// the store again instead of failing. Ends when the receiver is dropped or on `shutdown`.
pub fn watch(
    store: Store,
    hub: &EventHub,
    pipeline: String,
    after: u64,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Result<Event, StoreError>> {
    let (tx, rx) = mpsc::channel(256);
    let mut live = hub.subscribe();
    tokio::spawn(async move {
        let mut last = after;
        let mut replay = true;
        loop {
            while replay {
                let page = match stored_after(&store, &pipeline, last, REPLAY_PAGE) {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                replay = page.len() == REPLAY_PAGE;
                for event in page {
                    last = event.seq;
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
            let next = tokio::select! {
                next = live.recv() => next,
                _ = tx.closed() => return,
                _ = shutdown.cancelled() => return,
            };
            match next {
                Ok(event) if event.pipeline == pipeline && event.seq > last => {
                    last = event.seq;
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => replay = true,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    rx
}
