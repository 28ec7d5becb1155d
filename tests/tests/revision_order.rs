//! Newest means the highest revision order, not the latest arrival (issue 9): triggers that
//! arrive out of order never let an older revision displace or overtake a newer one.

use baton_proto::v1 as pb;
use baton_tests::{TestCluster, stage_is};

/// Two stages: `build` waits on a gate per commit, `deploy` waits on a `deploy-COMMIT` gate.
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
          - touch "{gates}/ran-$BATON_COMMIT"
          - until [ -f "{gates}/gate-$BATON_COMMIT" ]; do sleep 0.02; done
  - name: deploy
    actions:
      - name: ship
        run:
          - until [ -f "{gates}/gate-deploy-$BATON_COMMIT" ]; do sleep 0.02; done
"#
    )
}

async fn start(cluster: &TestCluster, commit: &str, order: u64) -> String {
    cluster
        .client()
        .await
        .start_pipeline_execution(pb::StartPipelineExecutionRequest {
            pipeline: "web".into(),
            revision: Some(pb::SourceRevision {
                branch: "main".into(),
                commit: commit.into(),
                trigger: "webhook".into(),
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

/// Starts r1, r2, r4, r3, r5 (in that arrival order) while r1 holds `build`, with revision
/// orders 1..5 when `ordered`, else none; returns the ids by revision (index 0 = r1).
async fn out_of_order_pushes(cluster: &TestCluster, ordered: bool) -> Vec<String> {
    let order = |n: u64| if ordered { n } else { 0 };
    let r1 = start(cluster, "r1", order(1)).await;
    cluster.wait_job_running("web", &r1, "build").await;
    let r2 = start(cluster, "r2", order(2)).await;
    let r4 = start(cluster, "r4", order(4)).await;
    cluster
        .wait_status("web", &r2, pb::ExecutionStatus::Superseded)
        .await;
    let r3 = start(cluster, "r3", order(3)).await;
    vec![r1, r2, r3, r4]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_revision_arriving_late_never_displaces_a_newer_one() {
    let cluster = TestCluster::start(2).await;
    cluster.apply(&pipeline(&cluster)).await;
    let mut ids = out_of_order_pushes(&cluster, true).await;

    // r3 came after r4 but is older: Superseded at once, naming r4; r4 keeps its place.
    let r3 = cluster
        .wait_status("web", &ids[2], pb::ExecutionStatus::Superseded)
        .await;
    assert!(
        r3.status_reason.contains("#3 (r4)") && r3.status_reason.contains("4 > 3"),
        "{}",
        r3.status_reason
    );
    assert_eq!(r3.revision.as_ref().map(|r| r.revision_order), Some(3));
    let r4 = cluster.execution(&ids[3]).await;
    assert!(stage_is(&r4, "build", pb::StageStatus::Waiting), "{r4:?}");

    // r5 is newest: it takes the inbound slot from r4, and the stage ends at r5.
    ids.push(start(&cluster, "r5", 5).await);
    let r4 = cluster
        .wait_status("web", &ids[3], pb::ExecutionStatus::Superseded)
        .await;
    assert!(r4.status_reason.contains("#5 (r5)"), "{}", r4.status_reason);
    cluster.open_gate("r1");
    cluster.open_gate("deploy-r1");
    cluster.open_gate("r5");
    cluster.open_gate("deploy-r5");
    cluster
        .wait_status("web", &ids[4], pb::ExecutionStatus::Succeeded)
        .await;
    assert!(!cluster.ran("r3"), "r3 must never run");
    assert!(!cluster.ran("r4"), "r4 was superseded in front of build");
    let state = cluster.state("web").await;
    let deploy = state
        .stages
        .iter()
        .find(|s| s.stage == "deploy")
        .expect("deploy");
    let last = deploy.last_outcome.as_ref().expect("outcome");
    assert_eq!(last.execution_id, ids[4], "deploy ends at r5");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_revision_orders_arrival_order_decides() {
    let cluster = TestCluster::start(2).await;
    cluster.apply(&pipeline(&cluster)).await;
    let ids = out_of_order_pushes(&cluster, false).await;
    // r3 arrived last, so it displaces r4 from the inbound slot.
    let r4 = cluster
        .wait_status("web", &ids[3], pb::ExecutionStatus::Superseded)
        .await;
    assert!(r4.status_reason.contains("#4 (r3)"), "{}", r4.status_reason);
    cluster.open_gate("r1");
    cluster.open_gate("deploy-r1");
    cluster.open_gate("r3");
    cluster.open_gate("deploy-r3");
    cluster
        .wait_status("web", &ids[2], pb::ExecutionStatus::Succeeded)
        .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_revision_is_superseded_at_once_when_a_newer_one_holds_a_later_stage() {
    let cluster = TestCluster::start(2).await;
    cluster.apply(&pipeline(&cluster)).await;
    let r5 = start(&cluster, "r5", 5).await;
    cluster.open_gate("r5");
    cluster.wait_job_running("web", &r5, "deploy").await;

    let r3 = start(&cluster, "r3", 3).await;
    let ended = cluster
        .wait_status("web", &r3, pb::ExecutionStatus::Superseded)
        .await;
    assert!(
        ended.status_reason.contains("#1 (r5)") && ended.status_reason.contains("build"),
        "{}",
        ended.status_reason
    );
    assert!(stage_is(&ended, "build", pb::StageStatus::Superseded));
    assert!(!cluster.ran("r3"));

    // Once r5 has gone all the way through, an older revision is still refused...
    cluster.open_gate("deploy-r5");
    cluster
        .wait_status("web", &r5, pb::ExecutionStatus::Succeeded)
        .await;
    let r4 = start(&cluster, "r4", 4).await;
    let ended = cluster
        .wait_status("web", &r4, pb::ExecutionStatus::Superseded)
        .await;
    assert!(
        ended.status_reason.contains("5 > 4"),
        "{}",
        ended.status_reason
    );
    // ...and a newer one runs.
    let r6 = start(&cluster, "r6", 6).await;
    cluster.open_gate("r6");
    cluster.open_gate("deploy-r6");
    cluster
        .wait_status("web", &r6, pb::ExecutionStatus::Succeeded)
        .await;
    cluster.shutdown().await;
}
