//! A coordinator stopped and started again on the same data dir keeps everything.

use baton_proto::v1 as pb;
use baton_tests::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_pipelines_executions_and_statuses() {
    let mut cluster = TestCluster::start(1).await;
    cluster.apply(&cluster.gated_pipeline("web")).await;
    cluster.open_gate("r1");
    let done = cluster.start_execution("web", "main", "r1").await;
    cluster
        .wait_status("web", &done, pb::ExecutionStatus::Succeeded)
        .await;
    let running = cluster.start_execution("web", "main", "r2").await;
    let waiting = cluster.start_execution("web", "main", "r3").await;
    cluster
        .wait_until("web", &waiting, "r3 waiting", |e| {
            baton_tests::stage_is(e, "build", pb::StageStatus::Waiting)
        })
        .await;
    let superseding = cluster.start_execution("web", "main", "r4").await;
    cluster
        .wait_status("web", &waiting, pb::ExecutionStatus::Superseded)
        .await;
    let before: Vec<pb::PipelineExecution> = list(&cluster).await;

    cluster.restart_coordinator().await;

    let after = list(&cluster).await;
    assert_eq!(before.len(), 4);
    assert_eq!(
        before
            .iter()
            .map(|e| (&e.execution_id, e.status, e.number))
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|e| (&e.execution_id, e.status, e.number))
            .collect::<Vec<_>>()
    );
    let pipeline = cluster
        .client()
        .await
        .get_pipeline(pb::GetPipelineRequest { name: "web".into() })
        .await
        .expect("pipeline survives")
        .into_inner();
    assert_eq!(pipeline.version, 1);
    let state = cluster.state("web").await;
    assert_eq!(
        state.stages[0]
            .lock
            .as_ref()
            .map(|l| l.execution_id.as_str()),
        Some(running.as_str())
    );
    assert_eq!(state.stages[0].waiting[0].execution_id, superseding);

    // The worker reconnects and the work carries on where it was.
    cluster.wait_for_workers(1).await;
    cluster.open_gate("r2");
    cluster.open_gate("r4");
    cluster
        .wait_status("web", &running, pb::ExecutionStatus::Succeeded)
        .await;
    cluster
        .wait_status("web", &superseding, pb::ExecutionStatus::Succeeded)
        .await;
    // New executions continue the numbering.
    let next = cluster.start_execution("web", "main", "r5").await;
    assert_eq!(cluster.execution(&next).await.number, 5);
    cluster.shutdown().await;
}

async fn list(cluster: &TestCluster) -> Vec<pb::PipelineExecution> {
    cluster
        .client()
        .await
        .list_pipeline_executions(pb::ListPipelineExecutionsRequest {
            pipeline: "web".into(),
            limit: 0,
        })
        .await
        .expect("list")
        .into_inner()
        .executions
}
