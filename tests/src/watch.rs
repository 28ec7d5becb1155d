//! Watching a pipeline from a known event number (`since`), and collecting what arrives.

use baton_proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::Streaming;

use crate::{DEADLINE, TestCluster};

impl TestCluster {
    /// Opens WatchPipeline on `pipeline`, replaying every event after `since` (None: live only).
    pub async fn watch_since(
        &self,
        pipeline: &str,
        since: Option<u64>,
    ) -> Streaming<pb::PipelineEvent> {
        self.client()
            .await
            .watch_pipeline(pb::WatchPipelineRequest {
                pipeline: pipeline.into(),
                since,
            })
            .await
            .expect("watch")
            .into_inner()
    }
}

/// Reads events until one satisfies `last`; returns every event read, that one included.
pub async fn collect_until(
    events: &mut Streaming<pb::PipelineEvent>,
    what: &str,
    last: impl Fn(&pb::PipelineEvent) -> bool,
) -> Vec<pb::PipelineEvent> {
    let mut seen = Vec::new();
    let read = async {
        while let Some(event) = events.next().await {
            let event = event.expect("event");
            let done = last(&event);
            seen.push(event);
            if done {
                return;
            }
        }
        panic!("watch ended before {what}");
    };
    if tokio::time::timeout(DEADLINE, read).await.is_err() {
        panic!("timed out waiting for {what}; saw {seen:#?}");
    }
    seen
}

/// True when `event` says execution `id` reached `status`.
pub fn is_execution_status(
    event: &pb::PipelineEvent,
    id: &str,
    status: pb::ExecutionStatus,
) -> bool {
    event.execution_id == id
        && event.change == Some(pb::pipeline_event::Change::ExecutionStatus(status as i32))
}

/// True when `event` says a job of execution `id` reached `status`.
pub fn is_job_status(event: &pb::PipelineEvent, id: &str, status: pb::JobStatus) -> bool {
    event.execution_id == id
        && event.change == Some(pb::pipeline_event::Change::JobStatus(status as i32))
}
