//! Follows a pipeline's WatchPipeline stream and remembers when each execution ended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use baton_proto::v1::{self as pb, pipeline_event::Change};
use tokio::sync::Notify;
use tokio_stream::StreamExt;

use crate::cluster::Cluster;

/// When an execution reached a final status, and which.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    /// The final status.
    pub status: pb::ExecutionStatus,
    /// When the bench saw it.
    pub at: Instant,
}

#[derive(Default)]
struct Seen {
    ended: HashMap<String, Ended>,
    job_changes: u64,
}

/// A live WatchPipeline subscription.
pub struct Watcher {
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// True for statuses an execution never leaves.
pub fn is_final(status: pb::ExecutionStatus) -> bool {
    use pb::ExecutionStatus as S;
    matches!(
        status,
        S::Stopped | S::Succeeded | S::Failed | S::Superseded | S::Cancelled
    )
}

impl Watcher {
    /// Subscribes before anything is started, so no event is missed.
    #[allow(clippy::needless_update)] // `since` arrives with watch replay
    pub async fn start(cluster: &Cluster, pipeline: &str) -> anyhow::Result<Watcher> {
        let mut stream = cluster
            .client()
            .await?
            .watch_pipeline(pb::WatchPipelineRequest {
                pipeline: pipeline.to_string(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let changed = Arc::new(Notify::new());
        let (s, c) = (seen.clone(), changed.clone());
        let task = tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                let at = Instant::now();
                let Ok(mut seen) = s.lock() else { return };
                match event.change {
                    Some(Change::ExecutionStatus(status)) => {
                        if let Ok(status) = pb::ExecutionStatus::try_from(status)
                            && is_final(status)
                        {
                            seen.ended
                                .entry(event.execution_id)
                                .or_insert(Ended { status, at });
                        }
                    }
                    Some(Change::JobStatus(_)) => seen.job_changes += 1,
                    _ => {}
                }
                drop(seen);
                c.notify_waiters();
            }
        });
        Ok(Watcher {
            seen,
            changed,
            task,
        })
    }

    /// Job status changes seen so far.
    pub fn job_changes(&self) -> u64 {
        self.seen.lock().map(|s| s.job_changes).unwrap_or(0)
    }

    /// Waits until every execution in `ids` has ended; returns when each did.
    pub async fn wait_ended(
        &self,
        ids: &[String],
        deadline: Duration,
    ) -> anyhow::Result<HashMap<String, Ended>> {
        let until = Instant::now() + deadline;
        loop {
            let notified = self.changed.notified();
            {
                let seen = self
                    .seen
                    .lock()
                    .map_err(|_| anyhow::anyhow!("watcher poisoned"))?;
                if ids.iter().all(|id| seen.ended.contains_key(id)) {
                    return Ok(ids
                        .iter()
                        .filter_map(|id| seen.ended.get(id).map(|e| (id.clone(), *e)))
                        .collect());
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("executions did not end within {deadline:?}");
            }
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
