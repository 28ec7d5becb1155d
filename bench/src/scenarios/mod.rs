//! The benchmark scenarios. Each starts its own cluster, prints a table, and returns one JSON
//! object of figures.

pub mod fleet;
pub mod latency;
pub mod rapid_push;
pub mod throughput;

use baton_proto::v1 as pb;

use crate::cluster::Cluster;

/// Starts an execution of `pipeline` on `branch` at `commit`; returns its id.
#[allow(clippy::needless_update)]
pub async fn start(
    cluster: &Cluster,
    pipeline: &str,
    branch: &str,
    commit: &str,
) -> anyhow::Result<String> {
    let reply = cluster
        .client()
        .await?
        .start_pipeline_execution(pb::StartPipelineExecutionRequest {
            pipeline: pipeline.to_string(),
            revision: Some(pb::SourceRevision {
                branch: branch.to_string(),
                commit: commit.to_string(),
                message: String::new(),
                trigger: "bench".to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("start {pipeline}: {}", s.message()))?;
    Ok(reply.into_inner().execution_id)
}

/// Reads one execution with its jobs.
pub async fn execution(cluster: &Cluster, id: &str) -> anyhow::Result<pb::PipelineExecution> {
    Ok(cluster
        .client()
        .await?
        .get_pipeline_execution(pb::GetPipelineExecutionRequest {
            execution_id: id.to_string(),
        })
        .await?
        .into_inner())
}

/// Stops an execution with abandon (to clean up after a scenario).
pub async fn abandon(cluster: &Cluster, id: &str) -> anyhow::Result<()> {
    cluster
        .client()
        .await?
        .stop_pipeline_execution(pb::StopPipelineExecutionRequest {
            execution_id: id.to_string(),
            mode: pb::StopMode::Abandon as i32,
            reason: "bench cleanup".to_string(),
        })
        .await?;
    Ok(())
}

/// A one-stage, one-action pipeline file. `extra` goes at the pipeline level, `stage_extra`
/// at the stage level (both YAML lines, already indented by the caller's need).
pub fn one_stage_pipeline(
    name: &str,
    pipeline_extra: &str,
    stage_extra: &str,
    labels: &str,
    step: &str,
) -> String {
    format!(
        "name: {name}\n{pipeline_extra}stages:\n  - name: run\n{stage_extra}    actions:\n      - name: job\n        labels: {{ {labels} }}\n        grace: 2s\n        run:\n          - {step:?}\n"
    )
}
