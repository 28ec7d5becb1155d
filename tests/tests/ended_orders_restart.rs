//! What ended executions decide survives a restart without reading the history: an older
//! revision that arrives after a newer one succeeded is still refused after the coordinator
//! restarts (the ended revision orders are stored with the batch that ends an execution).

use baton_proto::v1 as pb;
use baton_tests::TestCluster;

async fn start(cluster: &TestCluster, commit: &str, order: u64) -> String {
    cluster
        .client()
        .await
        .start_pipeline_execution(pb::StartPipelineExecutionRequest {
            pipeline: "web".into(),
            revision: Some(pb::SourceRevision {
                branch: "main".into(),
                commit: commit.into(),
                revision_order: order,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner()
        .execution_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_revision_after_a_restart_is_still_outranked_by_an_ended_newer_one() {
    let mut cluster = TestCluster::start(1).await;
    cluster.apply(&cluster.gated_pipeline("web")).await;
    cluster.open_gate("r5");
    let r5 = start(&cluster, "r5", 5).await;
    cluster
        .wait_status("web", &r5, pb::ExecutionStatus::Succeeded)
        .await;

    cluster.restart_coordinator().await;

    let r3 = start(&cluster, "r3", 3).await;
    let r3 = cluster
        .wait_status("web", &r3, pb::ExecutionStatus::Superseded)
        .await;
    assert!(r3.status_reason.contains("5 > 3"), "{}", r3.status_reason);
    assert!(!cluster.ran("r3"));
    cluster.shutdown().await;
}
