//! Scenarios from bitbucket-deploy-concurrency-thread.txt: the three options its users list
//! for a deployment that finds another one running, and the wait period, through the gRPC API
//! with real workers.
//!
//! - "Pause the new deployment and run the previous to the end" (then a person resumes it):
//!   `when_busy: pause`.
//! - "Pause the new deployment, run the previous to the end, then run the new deployment":
//!   `when_busy: supersede` (the default; the latest waiting one runs next).
//! - "Stop the previous deployment and run the new deployment": `when_busy: cancel_running`.
//! - "some sort of wait-period": `settle` and `max_wait`, on an injected clock, so a ten-minute
//!   window runs in milliseconds.

use baton_coordinator::clock::ManualClock;
use baton_proto::v1 as pb;
use baton_tests::{TestCluster, job_in, stage_is, stage_lane};

const MINUTE: i64 = 60_000;

/// `build` (quick) then `deploy` with `options`; the deploy job marks `deployed-COMMIT` and
/// waits for the gate named after its commit.
fn pipeline(cluster: &TestCluster, options: &str) -> String {
    let dir = cluster.scratch.path().display();
    format!(
        r#"
name: dev-server
stages:
  - name: build
    actions:
      - name: compile
        run: [ "echo building $BATON_COMMIT" ]
  - name: deploy
{options}
    actions:
      - name: ship
        run: [ "touch {dir}/deployed-$BATON_COMMIT; until [ -f {dir}/gate-$BATON_COMMIT ]; do sleep 0.02; done" ]
"#
    )
}

fn deployed(cluster: &TestCluster, commit: &str) -> bool {
    cluster
        .scratch
        .path()
        .join(format!("deployed-{commit}"))
        .exists()
}

async fn waiting_at_deploy(cluster: &TestCluster, id: &str) -> pb::PipelineExecution {
    cluster
        .wait_until("dev-server", id, "waiting in front of deploy", |e| {
            stage_is(e, "deploy", pb::StageStatus::Waiting)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_the_new_deployment_run_the_previous_to_the_end_then_resume() {
    let cluster = TestCluster::start(2).await;
    cluster
        .apply(&pipeline(&cluster, "    when_busy: pause"))
        .await;
    let e1 = cluster.start_execution("dev-server", "dev", "c1").await;
    cluster.wait_job_running("dev-server", &e1, "deploy").await;
    let e2 = cluster.start_execution("dev-server", "dev", "c2").await;
    let paused = cluster
        .wait_status("dev-server", &e2, pb::ExecutionStatus::Paused)
        .await;
    assert!(stage_is(&paused, "deploy", pb::StageStatus::Waiting));
    let state = cluster.state("dev-server").await;
    let waiter = &stage_lane(&state, "deploy", "").waiting[0];
    assert!(waiter.paused);
    assert!(
        waiter
            .reason
            .starts_with("paused: waiting for a person to resume"),
        "{}",
        waiter.reason
    );
    let refused = cluster.resume(&e1).await.expect_err("e1 is not paused");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    // The previous runs to the end; the paused one stays paused in front of a free stage.
    cluster.open_gate("c1");
    cluster
        .wait_status("dev-server", &e1, pb::ExecutionStatus::Succeeded)
        .await;
    assert_eq!(
        cluster.execution(&e2).await.status,
        pb::ExecutionStatus::Paused as i32
    );
    let state = cluster.state("dev-server").await;
    assert!(stage_lane(&state, "deploy", "").lock.is_none());
    assert!(!deployed(&cluster, "c2"));

    // A person resumes it: it enters and deploys.
    let resumed = cluster.resume(&e2).await.expect("resume");
    assert_eq!(resumed.status, pb::ExecutionStatus::InProgress as i32);
    cluster.wait_job_running("dev-server", &e2, "deploy").await;
    cluster.open_gate("c2");
    cluster
        .wait_status("dev-server", &e2, pb::ExecutionStatus::Succeeded)
        .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_the_previous_to_the_end_then_the_latest() {
    let cluster = TestCluster::start(2).await;
    cluster
        .apply(&pipeline(&cluster, "    when_busy: supersede"))
        .await;
    let e1 = cluster.start_execution("dev-server", "dev", "c1").await;
    cluster.wait_job_running("dev-server", &e1, "deploy").await;
    let e2 = cluster.start_execution("dev-server", "dev", "c2").await;
    waiting_at_deploy(&cluster, &e2).await;
    let e3 = cluster.start_execution("dev-server", "dev", "c3").await;
    cluster
        .wait_status("dev-server", &e2, pb::ExecutionStatus::Superseded)
        .await;
    cluster.open_gate("c1");
    let first = cluster
        .wait_status("dev-server", &e1, pb::ExecutionStatus::Succeeded)
        .await;
    assert_eq!(
        job_in(&first, "deploy").map(|j| j.status),
        Some(pb::JobStatus::Succeeded as i32),
        "the running deployment was not interrupted"
    );
    cluster.wait_job_running("dev-server", &e3, "deploy").await;
    cluster.open_gate("c3");
    cluster
        .wait_status("dev-server", &e3, pb::ExecutionStatus::Succeeded)
        .await;
    assert!(
        !deployed(&cluster, "c2"),
        "the skipped deployment never ran"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_the_previous_deployment_and_run_the_new() {
    let cluster = TestCluster::start(2).await;
    cluster
        .apply(&pipeline(&cluster, "    when_busy: cancel_running"))
        .await;
    let e1 = cluster.start_execution("dev-server", "dev", "c1").await;
    cluster.wait_job_running("dev-server", &e1, "deploy").await;
    // c1's gate is never opened: only a stop ends its deployment.
    let e2 = cluster.start_execution("dev-server", "dev", "c2").await;
    let cancelled = cluster
        .wait_status("dev-server", &e1, pb::ExecutionStatus::Cancelled)
        .await;
    assert!(
        cancelled.status_reason.contains("cancelled by #2 (c2)"),
        "{}",
        cancelled.status_reason
    );
    assert_eq!(
        job_in(&cancelled, "deploy").map(|j| j.status),
        Some(pb::JobStatus::Abandoned as i32)
    );
    assert!(stage_is(&cancelled, "deploy", pb::StageStatus::Cancelled));
    let running = cluster.wait_job_running("dev-server", &e2, "deploy").await;
    assert!(!running.is_empty());
    let state = cluster.state("dev-server").await;
    let deploy = stage_lane(&state, "deploy", "");
    assert_eq!(deploy.lock.as_ref().map(|h| h.fence_token), Some(2));
    assert_eq!(
        deploy.last_outcome.as_ref().map(|o| o.status),
        Some(pb::StageStatus::Cancelled as i32)
    );
    cluster.open_gate("c2");
    cluster
        .wait_status("dev-server", &e2, pb::ExecutionStatus::Succeeded)
        .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_period_deploys_only_the_last_of_a_burst() {
    let clock = ManualClock::new(1_800_000_000_000);
    let cluster = TestCluster::start_with_clock(1, clock.clone()).await;
    cluster
        .apply(&pipeline(&cluster, "    settle: 10m\n    max_wait: 1h"))
        .await;
    // Three merges, two minutes apart.
    let e1 = cluster.start_execution("dev-server", "dev", "c1").await;
    waiting_at_deploy(&cluster, &e1).await;
    let state = cluster.state("dev-server").await;
    let reason = &stage_lane(&state, "deploy", "").waiting[0].reason;
    assert!(reason.starts_with("settling until "), "{reason}");
    clock.advance(2 * MINUTE);
    let e2 = cluster.start_execution("dev-server", "dev", "c2").await;
    cluster
        .wait_status("dev-server", &e1, pb::ExecutionStatus::Superseded)
        .await;
    clock.advance(2 * MINUTE);
    let e3 = cluster.start_execution("dev-server", "dev", "c3").await;
    cluster
        .wait_status("dev-server", &e2, pb::ExecutionStatus::Superseded)
        .await;

    // Nine quiet minutes are not enough.
    clock.advance(9 * MINUTE);
    let state = cluster.state("dev-server").await;
    let deploy = stage_lane(&state, "deploy", "");
    assert!(deploy.lock.is_none(), "{deploy:#?}");
    assert_eq!(deploy.waiting[0].number, 3);
    // The tenth is: the last of the burst deploys, once.
    clock.advance(MINUTE);
    cluster.wait_job_running("dev-server", &e3, "deploy").await;
    cluster.open_gate("c3");
    let done = cluster
        .wait_status("dev-server", &e3, pb::ExecutionStatus::Succeeded)
        .await;
    assert_eq!(
        done.stages[1].fence_token, 1,
        "one deployment for the burst"
    );
    assert!(!deployed(&cluster, "c1") && !deployed(&cluster, "c2"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_period_cannot_starve_a_steady_stream_past_max_wait() {
    let clock = ManualClock::new(1_800_000_000_000);
    let cluster = TestCluster::start_with_clock(1, clock.clone()).await;
    cluster
        .apply(&pipeline(&cluster, "    settle: 10m\n    max_wait: 25m"))
        .await;
    // A merge every eight minutes never leaves ten quiet minutes.
    let mut last = String::new();
    for (i, commit) in ["c1", "c2", "c3", "c4"].iter().enumerate() {
        if i > 0 {
            clock.advance(8 * MINUTE);
        }
        last = cluster.start_execution("dev-server", "dev", commit).await;
        waiting_at_deploy(&cluster, &last).await;
    }
    // 25 minutes after the first merge, the newest (one minute old) deploys anyway.
    clock.advance(MINUTE);
    cluster
        .wait_job_running("dev-server", &last, "deploy")
        .await;
    cluster.open_gate("c4");
    cluster
        .wait_status("dev-server", &last, pb::ExecutionStatus::Succeeded)
        .await;
    for commit in ["c1", "c2", "c3"] {
        assert!(!deployed(&cluster, commit), "{commit} was superseded");
    }
    cluster.shutdown().await;
}
