//! `/metrics` on the coordinator's HTTP port: it parses as Prometheus text and its numbers
//! follow what happens to a pipeline.

use baton_proto::v1 as pb;
use baton_tests::observe::{sample, scrape, wait_for_sample};
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
          - until [ -f "{gates}/gate-$BATON_COMMIT" ]; do sleep 0.02; done
  - name: deploy
    actions:
      - name: ship
        run: [ "echo deploying $BATON_COMMIT" ]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_superseding() {
    let cluster = TestCluster::start(2).await;
    cluster.apply(&pipeline(&cluster)).await;
    let before = scrape(&cluster).await;
    assert_eq!(
        sample(&before, "baton_workers", &[("state", "Connected")]),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &before,
            "baton_stage_queue_depth",
            &[("pipeline", "web"), ("stage", "build")]
        ),
        Some(0.0)
    );
    let start = "/baton.v1.PipelineService/StartPipelineExecution";
    let starts_before =
        sample(&before, "baton_grpc_requests_total", &[("method", start)]).unwrap_or(0.0);

    // #1 runs to the end, so build and deploy have a measured cost.
    let first = cluster.start_execution("web", "main", "c1").await;
    cluster.wait_job_running("web", &first, "build").await;
    cluster.open_gate("c1");
    cluster
        .wait_status("web", &first, pb::ExecutionStatus::Succeeded)
        .await;

    // #2 holds build, #3 waits in front of it, #4 supersedes #3.
    let second = cluster.start_execution("web", "main", "c2").await;
    cluster.wait_job_running("web", &second, "build").await;
    let third = cluster.start_execution("web", "main", "c3").await;
    cluster
        .wait_until("web", &third, "c3 waiting in front of build", |e| {
            stage_is(e, "build", pb::StageStatus::Waiting)
        })
        .await;
    let during = scrape(&cluster).await;
    assert_eq!(
        sample(
            &during,
            "baton_stage_queue_depth",
            &[("pipeline", "web"), ("stage", "build")]
        ),
        Some(1.0),
        "one execution waits in front of build"
    );
    assert_eq!(
        sample(&during, "baton_jobs", &[("status", "Running")]),
        Some(1.0)
    );
    let fourth = cluster.start_execution("web", "main", "c4").await;
    cluster
        .wait_status("web", &third, pb::ExecutionStatus::Superseded)
        .await;

    wait_for_sample(
        &cluster,
        "baton_executions_ended_total",
        &[("pipeline", "web"), ("status", "Superseded")],
        "1",
        |v| v == 1.0,
    )
    .await;
    let saved = wait_for_sample(
        &cluster,
        "baton_worker_seconds_saved_total",
        &[("pipeline", "web"), ("reason", "superseded")],
        "positive",
        |v| v > 0.0,
    )
    .await;

    cluster.open_gate("c2");
    cluster.open_gate("c4");
    cluster
        .wait_status("web", &second, pb::ExecutionStatus::Succeeded)
        .await;
    cluster
        .wait_status("web", &fourth, pb::ExecutionStatus::Succeeded)
        .await;
    // The follower sees events in order: once it counted #4's success, it has seen every
    // earlier event too.
    wait_for_sample(
        &cluster,
        "baton_executions_ended_total",
        &[("pipeline", "web"), ("status", "Succeeded")],
        "3",
        |v| v == 3.0,
    )
    .await;
    let after = scrape(&cluster).await;
    // #1, #2 and #4 entered build (#4 after waiting for its lock); #3 never did.
    assert_eq!(
        sample(
            &after,
            "baton_stage_lock_wait_seconds_count",
            &[("pipeline", "web"), ("stage", "build")]
        ),
        Some(3.0)
    );
    assert!(
        sample(
            &after,
            "baton_stage_lock_wait_seconds_sum",
            &[("stage", "build")]
        )
        .unwrap_or(0.0)
            > 0.0,
        "a wait behind a held lock takes time"
    );
    assert_eq!(
        sample(&after, "baton_jobs", &[("status", "Succeeded")]),
        Some(6.0)
    );
    assert_eq!(
        sample(&after, "baton_jobs_ended_total", &[("status", "Succeeded")]),
        Some(6.0)
    );
    assert_eq!(
        sample(
            &after,
            "baton_worker_seconds_saved_total",
            &[("reason", "superseded")]
        ),
        Some(saved),
        "nothing more was saved"
    );
    let starts = sample(
        &after,
        "baton_grpc_requests_total",
        &[("method", start), ("code", "0")],
    );
    assert_eq!(
        starts,
        Some(starts_before + 4.0),
        "four StartPipelineExecution calls"
    );
    assert!(
        sample(
            &after,
            "baton_grpc_request_duration_seconds_count",
            &[("method", start)]
        ) >= Some(4.0)
    );
    assert!(sample(&after, "baton_store_batch_ops_count", &[]) > Some(0.0));
    assert!(sample(&after, "baton_store_flush_seconds_sum", &[]) > Some(0.0));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_seconds_saved_uses_runs_from_before_a_restart() {
    let mut cluster = TestCluster::start(1).await;
    cluster.apply(&pipeline(&cluster)).await;
    let first = cluster.start_execution("web", "main", "c1").await;
    cluster.wait_job_running("web", &first, "build").await;
    cluster.open_gate("c1");
    cluster
        .wait_status("web", &first, pb::ExecutionStatus::Succeeded)
        .await;

    cluster.restart_coordinator().await;
    cluster.wait_for_workers(1).await;
    let second = cluster.start_execution("web", "main", "c2").await;
    cluster.wait_job_running("web", &second, "build").await;
    let third = cluster.start_execution("web", "main", "c3").await;
    cluster
        .wait_until("web", &third, "c3 waiting in front of build", |e| {
            stage_is(e, "build", pb::StageStatus::Waiting)
        })
        .await;
    let fourth = cluster.start_execution("web", "main", "c4").await;
    cluster
        .wait_status("web", &third, pb::ExecutionStatus::Superseded)
        .await;
    // Build's cost was measured on #1, before the restart.
    wait_for_sample(
        &cluster,
        "baton_worker_seconds_saved_total",
        &[("pipeline", "web"), ("reason", "superseded")],
        "positive",
        |v| v > 0.0,
    )
    .await;
    cluster.open_gate("c2");
    cluster.open_gate("c4");
    cluster
        .wait_status("web", &fourth, pb::ExecutionStatus::Succeeded)
        .await;
    cluster.shutdown().await;
}
