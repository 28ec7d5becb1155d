//! Lanes and QUEUED capacity through the gRPC API with real workers: `lanes: branch` gives each
//! branch its own stage locks and fence tokens while a `lane: shared` stage (a shared dev
//! server) is one lock across branches; `capacity: 2` lets two executions share a QUEUED stage,
//! the third waiting its turn in arrival order; `order: newest_first` keeps a QUEUED stage free
//! for a newer execution still in an earlier stage.

use baton_proto::v1 as pb;
use baton_tests::{TestCluster, stage_is, stage_lane};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_lanes_lock_per_branch_and_a_shared_stage_once_for_all() {
    let cluster = TestCluster::start(3).await;
    let dir = cluster.scratch.path().display();
    cluster
        .apply(&format!(
            r#"
name: pr
lanes: branch
stages:
  - name: test
    actions:
      - name: unit
        run: [ "until [ -f {dir}/gate-test-$BATON_COMMIT ]; do sleep 0.02; done" ]
  - name: dev
    lane: shared
    actions:
      - name: deploy
        run: [ "until [ -f {dir}/gate-dev-$BATON_COMMIT ]; do sleep 0.02; done" ]
"#
        ))
        .await;
    // Two branches test at the same time, each in its own lane.
    let a1 = cluster.start_execution("pr", "feature-a", "a1").await;
    let b1 = cluster.start_execution("pr", "feature-b", "b1").await;
    cluster.wait_job_running("pr", &a1, "test").await;
    cluster.wait_job_running("pr", &b1, "test").await;
    // A second push to feature-a waits behind a1 only.
    let a2 = cluster.start_execution("pr", "feature-a", "a2").await;
    cluster
        .wait_until("pr", &a2, "a2 waiting in its lane", |e| {
            stage_is(e, "test", pb::StageStatus::Waiting)
        })
        .await;
    let state = cluster.state("pr").await;
    let lane_a = stage_lane(&state, "test", "feature-a");
    let lane_b = stage_lane(&state, "test", "feature-b");
    assert_eq!(lane_a.lock.as_ref().map(|h| h.number), Some(1));
    assert_eq!(lane_a.waiting[0].reason, "lock held by #1 (a1)");
    assert_eq!(lane_b.lock.as_ref().map(|h| h.number), Some(2));
    assert!(lane_b.waiting.is_empty());
    // Fence tokens count per stage and lane.
    assert_eq!((lane_a.fence_token, lane_b.fence_token), (1, 1));
    let a2 = cluster.stop(&a2, pb::StopMode::Abandon).await;
    assert_eq!(a2.status, pb::ExecutionStatus::Stopped as i32);

    // Both go on to the shared dev server: one holds it, the other waits, across branches.
    cluster.open_gate("test-a1");
    cluster.wait_job_running("pr", &a1, "dev").await;
    cluster.open_gate("test-b1");
    cluster
        .wait_until("pr", &b1, "b1 waiting for the shared stage", |e| {
            stage_is(e, "dev", pb::StageStatus::Waiting)
        })
        .await;
    let state = cluster.state("pr").await;
    let dev = stage_lane(&state, "dev", "");
    assert_eq!(dev.lock.as_ref().map(|h| h.number), Some(1));
    assert_eq!(dev.waiting[0].number, 2);
    assert!(
        !state
            .stages
            .iter()
            .any(|s| s.stage == "dev" && !s.lane.is_empty()),
        "a shared stage has no per-branch lanes"
    );
    cluster.open_gate("dev-a1");
    cluster.open_gate("dev-b1");
    cluster
        .wait_status("pr", &a1, pb::ExecutionStatus::Succeeded)
        .await;
    let b1 = cluster
        .wait_status("pr", &b1, pb::ExecutionStatus::Succeeded)
        .await;
    assert_eq!(
        b1.stages[1].fence_token, 2,
        "the shared stage counts across lanes"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_capacity_two_runs_two_at_once_and_the_third_waits_its_turn() {
    let cluster = TestCluster::start(3).await;
    let dir = cluster.scratch.path().display();
    cluster
        .apply(&format!(
            r#"
name: perf
stages:
  - name: bench
    mode: queued
    capacity: 2
    actions:
      - name: run
        run: [ "until [ -f {dir}/gate-$BATON_COMMIT ]; do sleep 0.02; done" ]
"#
        ))
        .await;
    let e1 = cluster.start_execution("perf", "main", "c1").await;
    let e2 = cluster.start_execution("perf", "main", "c2").await;
    let e3 = cluster.start_execution("perf", "main", "c3").await;
    cluster.wait_job_running("perf", &e1, "bench").await;
    cluster.wait_job_running("perf", &e2, "bench").await;
    let state = cluster.state("perf").await;
    let bench = stage_lane(&state, "bench", "");
    assert_eq!(bench.capacity, 2);
    assert_eq!(bench.holders.len(), 2);
    assert_eq!(bench.waiting[0].number, 3);
    assert_eq!(bench.waiting[0].reason, "lock held by #1 (c1), #2 (c2)");
    // Whichever holder leaves first, the third enters next; nothing was superseded.
    cluster.open_gate("c2");
    cluster.wait_job_running("perf", &e3, "bench").await;
    for (id, commit) in [(&e1, "c1"), (&e3, "c3")] {
        cluster.open_gate(commit);
        cluster
            .wait_status("perf", id, pb::ExecutionStatus::Succeeded)
            .await;
    }
    let state = cluster.state("perf").await;
    assert_eq!(stage_lane(&state, "bench", "").fence_token, 3);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_first_keeps_the_stage_for_a_newer_execution_still_building() {
    let cluster = TestCluster::start(3).await;
    let dir = cluster.scratch.path().display();
    cluster
        .apply(&format!(
            r#"
name: rel
stages:
  - name: build
    mode: parallel
    actions:
      - name: compile
        run: [ "until [ -f {dir}/gate-build-$BATON_COMMIT ]; do sleep 0.02; done" ]
  - name: deploy
    mode: queued
    order: newest_first
    actions:
      - name: ship
        run: [ "until [ -f {dir}/gate-deploy-$BATON_COMMIT ]; do sleep 0.02; done" ]
"#
        ))
        .await;
    let e1 = cluster.start_execution("rel", "main", "c1").await;
    cluster.open_gate("build-c1");
    cluster.wait_job_running("rel", &e1, "deploy").await;
    let e2 = cluster.start_execution("rel", "main", "c2").await;
    let e3 = cluster.start_execution("rel", "main", "c3").await;
    cluster.wait_job_running("rel", &e3, "build").await;
    cluster.open_gate("build-c2");
    cluster
        .wait_until("rel", &e2, "c2 waiting at deploy", |e| {
            stage_is(e, "deploy", pb::StageStatus::Waiting)
        })
        .await;

    // c1 leaves; c2 is ready but c3, newer, is still building: the stage waits for it.
    cluster.open_gate("deploy-c1");
    cluster
        .wait_status("rel", &e1, pb::ExecutionStatus::Succeeded)
        .await;
    let state = cluster.state("rel").await;
    let deploy = stage_lane(&state, "deploy", "");
    assert!(deploy.lock.is_none(), "{deploy:#?}");
    assert_eq!(
        deploy.waiting[0].reason,
        "held for #3, a newer execution still in an earlier stage"
    );
    cluster.open_gate("build-c3");
    cluster.wait_job_running("rel", &e3, "deploy").await;
    let state = cluster.state("rel").await;
    assert_eq!(
        stage_lane(&state, "deploy", "").waiting[0].reason,
        "lock held by #3 (c3)"
    );
    // QUEUED: the older one is not skipped; it deploys after the newest.
    cluster.open_gate("deploy-c3");
    cluster.open_gate("deploy-c2");
    let e3 = cluster
        .wait_status("rel", &e3, pb::ExecutionStatus::Succeeded)
        .await;
    let e2 = cluster
        .wait_status("rel", &e2, pb::ExecutionStatus::Succeeded)
        .await;
    assert_eq!((e3.stages[1].fence_token, e2.stages[1].fence_token), (2, 3));
    cluster.shutdown().await;
}
