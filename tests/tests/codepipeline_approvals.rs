//! Approval actions (codepipeline-executions.txt, "Managing Pipeline Flow"): the stage stays
//! locked until a person approves or rejects, or the approval times out (a failure); with
//! `follow_latest` a pending approval moves to the newest waiting revision.

use baton_coordinator::clock::{Clock, ManualClock, SystemClock};
use baton_proto::v1 as pb;
use baton_tests::{TestCluster, stage_is};

fn pipeline(cluster: &TestCluster, approval: &str) -> String {
    let dir = cluster.scratch.path().display();
    format!(
        r#"
name: release
stages:
  - name: build
    actions:
      - name: compile
        run: [ "true" ]
  - name: prod
    actions:
      - name: sign-off
        approval: {approval}
      - name: ship
        run_order: 2
        run: [ "touch {dir}/shipped-$BATON_COMMIT" ]
"#
    )
}

fn approval_of<'a>(exec: &'a pb::PipelineExecution, action: &str) -> Option<&'a pb::Job> {
    exec.stages
        .iter()
        .find(|s| s.stage == "prod")?
        .jobs
        .iter()
        .rfind(|j| j.action == action && j.approval.is_some())
}

fn pending(exec: &pb::PipelineExecution) -> bool {
    approval_of(exec, "sign-off").is_some_and(|j| {
        j.status == pb::JobStatus::Queued as i32
            && j.approval.as_ref().is_some_and(|a| a.decision == 0)
    })
}

async fn decide(
    cluster: &TestCluster,
    id: &str,
    decision: pb::ApprovalDecision,
    by: &str,
    comment: &str,
) -> Result<pb::PipelineExecution, tonic::Status> {
    cluster
        .client()
        .await
        .put_approval_result(pb::PutApprovalResultRequest {
            execution_id: id.into(),
            stage: "prod".into(),
            action: "sign-off".into(),
            decision: decision as i32,
            comment: comment.into(),
            by: by.into(),
        })
        .await
        .map(|r| r.into_inner().execution.expect("execution"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_lets_the_stage_go_on_and_reject_fails_it() {
    let cluster = TestCluster::start(1).await;
    cluster.apply(&pipeline(&cluster, "{ timeout: 2d }")).await;
    let first = cluster.start_execution("release", "main", "c1").await;
    let waiting_for_approval = cluster
        .wait_until("release", &first, "approval pending", pending)
        .await;
    let approval = approval_of(&waiting_for_approval, "sign-off")
        .and_then(|j| j.approval.clone())
        .expect("approval");
    assert_eq!(
        approval.times_out_at_ms - approval.pending_since_ms,
        2 * 24 * 3600 * 1000
    );
    // The stage stays locked meanwhile; a newer execution waits and says why.
    let second = cluster.start_execution("release", "main", "c2").await;
    cluster
        .wait_until("release", &second, "c2 waits for prod", |e| {
            stage_is(e, "prod", pb::StageStatus::Waiting)
        })
        .await;
    let state = cluster.state("release").await;
    let prod = &state.stages[1];
    assert_eq!(
        prod.lock.as_ref().map(|l| l.execution_id.as_str()),
        Some(first.as_str())
    );
    let reason = &prod.waiting[0].reason;
    assert!(
        reason.contains("approval `sign-off` pending since") && reason.contains("times out at"),
        "{reason}"
    );

    let approved = decide(
        &cluster,
        &first,
        pb::ApprovalDecision::Approve,
        "alice",
        "ship it",
    )
    .await
    .expect("approve");
    let job = approval_of(&approved, "sign-off").expect("approval job");
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32);
    let state = job.approval.clone().expect("state");
    assert_eq!(
        (state.by.as_str(), state.comment.as_str()),
        ("alice", "ship it")
    );
    cluster
        .wait_status("release", &first, pb::ExecutionStatus::Succeeded)
        .await;
    assert!(cluster.scratch.path().join("shipped-c1").exists());

    cluster
        .wait_until("release", &second, "c2's approval pending", pending)
        .await;
    decide(
        &cluster,
        &second,
        pb::ApprovalDecision::Reject,
        "bob",
        "not on a Friday",
    )
    .await
    .expect("reject");
    let rejected = cluster
        .wait_status("release", &second, pb::ExecutionStatus::Failed)
        .await;
    assert!(
        rejected
            .status_reason
            .contains("rejected by bob: not on a Friday"),
        "{}",
        rejected.status_reason
    );
    assert!(!cluster.scratch.path().join("shipped-c2").exists());
    let again = decide(&cluster, &second, pb::ApprovalDecision::Approve, "bob", "")
        .await
        .expect_err("decided already");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert!(
        cluster.state("release").await.stages[1].lock.is_none(),
        "a rejection releases the lock"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_nobody_decides_times_out_and_fails() {
    let clock = ManualClock::new(SystemClock.now_ms());
    let cluster = TestCluster::start_with_test_clock(1, clock.clone()).await;
    cluster.apply(&pipeline(&cluster, "{}")).await;
    let id = cluster.start_execution("release", "main", "c1").await;
    let exec = cluster
        .wait_until("release", &id, "approval pending", pending)
        .await;
    let approval = approval_of(&exec, "sign-off")
        .and_then(|j| j.approval.clone())
        .expect("approval");
    assert_eq!(
        approval.times_out_at_ms - approval.pending_since_ms,
        7 * 24 * 3600 * 1000,
        "the default timeout is 7 days"
    );
    clock.advance(7 * 24 * 3600 * 1000);
    let failed = cluster
        .wait_status("release", &id, pb::ExecutionStatus::Failed)
        .await;
    assert!(
        failed.status_reason.contains("approval timed out"),
        "{}",
        failed.status_reason
    );
    assert!(stage_is(&failed, "prod", pb::StageStatus::Failed));
    assert!(!cluster.scratch.path().join("shipped-c1").exists());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_latest_moves_a_pending_approval_to_the_newest_revision() {
    let cluster = TestCluster::start(1).await;
    cluster
        .apply(&pipeline(&cluster, "{ follow_latest: true }"))
        .await;
    let first = cluster.start_execution("release", "main", "c1").await;
    cluster
        .wait_until("release", &first, "c1's approval pending", pending)
        .await;
    let second = cluster.start_execution("release", "main", "c2").await;
    let superseded = cluster
        .wait_status("release", &first, pb::ExecutionStatus::Superseded)
        .await;
    assert!(
        superseded.status_reason.contains("#2")
            && superseded.status_reason.contains("follow_latest"),
        "{}",
        superseded.status_reason
    );
    cluster
        .wait_until("release", &second, "c2's approval pending", pending)
        .await;
    let state = cluster.state("release").await;
    assert_eq!(
        state.stages[1]
            .lock
            .as_ref()
            .map(|l| l.execution_id.as_str()),
        Some(second.as_str()),
        "the newest revision holds prod"
    );
    let stale = decide(&cluster, &first, pb::ApprovalDecision::Approve, "alice", "")
        .await
        .expect_err("the old approval moved");
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition);
    decide(
        &cluster,
        &second,
        pb::ApprovalDecision::Approve,
        "alice",
        "",
    )
    .await
    .expect("approve the latest");
    cluster
        .wait_status("release", &second, pb::ExecutionStatus::Succeeded)
        .await;
    assert!(cluster.scratch.path().join("shipped-c2").exists());
    assert!(!cluster.scratch.path().join("shipped-c1").exists());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_approval_survives_a_coordinator_restart() {
    let mut cluster = TestCluster::start(1).await;
    cluster.apply(&pipeline(&cluster, "{ timeout: 1h }")).await;
    let id = cluster.start_execution("release", "main", "c1").await;
    cluster
        .wait_until("release", &id, "approval pending", pending)
        .await;
    cluster.restart_coordinator().await;
    let after = cluster.execution(&id).await;
    assert!(pending(&after), "{after:#?}");
    assert_eq!(
        cluster.state("release").await.stages[1]
            .lock
            .as_ref()
            .map(|l| l.execution_id.clone()),
        Some(id.clone()),
        "the stage is still locked"
    );
    decide(&cluster, &id, pb::ApprovalDecision::Approve, "dana", "")
        .await
        .expect("approve after the restart");
    cluster
        .wait_status("release", &id, pb::ExecutionStatus::Succeeded)
        .await;
    assert!(cluster.scratch.path().join("shipped-c1").exists());
    cluster.shutdown().await;
}
