//! SUPERSEDED stages end to end: CodePipeline's rules 1–3 through the real gRPC API.

use baton_proto::v1 as pb;
use baton_tests::{TestCluster, stage_is};

fn pipeline(cluster: &TestCluster) -> String {
    let gates = cluster.scratch.path().display();
    format!(
        r#"
name: web
stages:
  - name: build
    actions:
      - name: compile
        run:
          - echo "building $BATON_COMMIT" && touch "{gates}/ran-$BATON_COMMIT"
          - until [ -f "{gates}/gate-$BATON_COMMIT" ]; do sleep 0.02; done
  - name: deploy
    actions:
      - name: ship
        run:
          - echo "deploying $BATON_COMMIT with fence $BATON_FENCE_TOKEN"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_push_supersedes_waiting_execution() {
    let cluster = TestCluster::start(2).await;
    cluster.apply(&pipeline(&cluster)).await;

    let first = cluster.start_execution("web", "main", "c1").await;
    cluster.wait_job_running("web", &first, "build").await;
    let second = cluster.start_execution("web", "main", "c2").await;
    cluster
        .wait_until("web", &second, "c2 waiting in front of build", |e| {
            stage_is(e, "build", pb::StageStatus::Waiting)
        })
        .await;
    let state = cluster.state("web").await;
    let build = &state.stages[0];
    assert_eq!(
        build.lock.as_ref().map(|l| l.execution_id.as_str()),
        Some(first.as_str())
    );
    assert_eq!(build.waiting.len(), 1);
    assert!(
        build.waiting[0].reason.contains("lock held by #1"),
        "{:?}",
        build.waiting[0]
    );

    let third = cluster.start_execution("web", "main", "c3").await;
    let superseded = cluster
        .wait_status("web", &second, pb::ExecutionStatus::Superseded)
        .await;
    assert!(
        superseded.status_reason.contains("#3"),
        "{}",
        superseded.status_reason
    );
    let state = cluster.state("web").await;
    assert_eq!(state.stages[0].waiting.len(), 1);
    assert_eq!(state.stages[0].waiting[0].execution_id, third);

    cluster.open_gate("c1");
    cluster.open_gate("c3");
    cluster
        .wait_status("web", &first, pb::ExecutionStatus::Succeeded)
        .await;
    let done = cluster
        .wait_status("web", &third, pb::ExecutionStatus::Succeeded)
        .await;
    assert!(
        done.stages
            .iter()
            .all(|s| s.status == pb::StageStatus::Succeeded as i32)
    );

    // No job of the superseded execution ever started.
    let superseded = cluster.execution(&second).await;
    assert!(
        superseded.stages.iter().all(|s| s.jobs.is_empty()),
        "{superseded:#?}"
    );
    assert!(!cluster.ran("c2"));
    assert!(cluster.ran("c3"));

    // Fence tokens grow with every entry: c1 then c3 entered build.
    let state = cluster.state("web").await;
    assert_eq!(state.stages[0].fence_token, 2);
    assert_eq!(done.stages[0].fence_token, 2);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_file_mistake_is_rejected_with_line_and_column() {
    let cluster = TestCluster::start(0).await;
    let err = cluster
        .client()
        .await
        .put_pipeline(pb::PutPipelineRequest {
            definition_yaml: "name: web\nstages:\n  - name: build\n    actoins: []\n".into(),
            source_name: "ci/web.yaml".into(),
        })
        .await
        .expect_err("a misspelt key is rejected");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("ci/web.yaml:4:5"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("actoins"), "{}", err.message());
    let listed = cluster
        .client()
        .await
        .list_pipelines(pb::ListPipelinesRequest {})
        .await
        .expect("list")
        .into_inner();
    assert!(listed.pipelines.is_empty(), "nothing was stored");
    cluster.shutdown().await;
}
