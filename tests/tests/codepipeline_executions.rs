//! Scenarios from codepipeline-executions.txt, through the gRPC API with real workers: rules
//! 1–3 of SUPERSEDED mode, the disabled transition that holds the inbound execution, and an
//! inbound execution that is stopped and never enters, even after the transition reopens.

use baton_proto::v1 as pb;
use baton_tests::{TestCluster, job_in, stage_is, stage_lane};

/// `build` (quick) then `deploy`, whose job marks `deployed-COMMIT` and waits for the gate
/// named after its commit.
fn pipeline(cluster: &TestCluster) -> String {
    let dir = cluster.scratch.path().display();
    format!(
        r#"
name: web
stages:
  - name: build
    actions:
      - name: compile
        run: [ "echo building $BATON_COMMIT" ]
  - name: deploy
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

async fn waiting_in_front_of_deploy(cluster: &TestCluster, id: &str) {
    cluster
        .wait_until("web", id, "waiting in front of deploy", |e| {
            stage_is(e, "deploy", pb::StageStatus::Waiting)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_1_to_3_lock_the_stage_hold_the_next_and_supersede_between_stages() {
    let cluster = TestCluster::start(2).await;
    cluster.apply(&pipeline(&cluster)).await;

    // Rule 1: execution 1 locks deploy.
    let e1 = cluster.start_execution("web", "main", "c1").await;
    cluster.wait_job_running("web", &e1, "deploy").await;
    // Rule 2: execution 2 finishes build and waits in front of the locked stage.
    let e2 = cluster.start_execution("web", "main", "c2").await;
    waiting_in_front_of_deploy(&cluster, &e2).await;
    let state = cluster.state("web").await;
    let deploy = stage_lane(&state, "deploy", "");
    assert_eq!(deploy.lock.as_ref().map(|h| h.number), Some(1));
    assert_eq!(deploy.waiting[0].reason, "lock held by #1 (c1)");
    // Rule 3: execution 3 overtakes the waiting execution 2, which does not continue.
    let e3 = cluster.start_execution("web", "main", "c3").await;
    let superseded = cluster
        .wait_status("web", &e2, pb::ExecutionStatus::Superseded)
        .await;
    assert!(
        superseded
            .status_reason
            .contains("superseded by #3 (c3) in front of deploy"),
        "{}",
        superseded.status_reason
    );
    assert!(
        stage_is(&superseded, "build", pb::StageStatus::Succeeded),
        "superseding happens between stages: its build had finished"
    );
    cluster.open_gate("c1");
    cluster.open_gate("c3");
    cluster
        .wait_status("web", &e1, pb::ExecutionStatus::Succeeded)
        .await;
    let done = cluster
        .wait_status("web", &e3, pb::ExecutionStatus::Succeeded)
        .await;
    assert_eq!(done.stages[1].fence_token, 2, "c1 then c3 entered deploy");
    assert!(!deployed(&cluster, "c2"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_transition_holds_the_inbound_execution_and_the_latest_enters_when_enabled() {
    let cluster = TestCluster::start(1).await;
    cluster.apply(&pipeline(&cluster)).await;
    cluster
        .disable_transition("web", "deploy", "alice", "freeze")
        .await;

    // Deploy is free, but the disabled transition holds execution 1 in front of it.
    let e1 = cluster.start_execution("web", "main", "c1").await;
    waiting_in_front_of_deploy(&cluster, &e1).await;
    let state = cluster.state("web").await;
    let deploy = stage_lane(&state, "deploy", "");
    assert!(deploy.lock.is_none());
    assert_eq!(
        deploy.waiting[0].reason,
        "transition disabled by alice: freeze"
    );
    let transition = deploy.transition.clone().expect("transition");
    assert!(!transition.enabled);
    assert_eq!(
        (transition.disabled_by.as_str(), transition.reason.as_str()),
        ("alice", "freeze")
    );

    // While disabled, the inbound execution can still be superseded.
    let e2 = cluster.start_execution("web", "main", "c2").await;
    cluster
        .wait_status("web", &e1, pb::ExecutionStatus::Superseded)
        .await;
    waiting_in_front_of_deploy(&cluster, &e2).await;

    // Enabled again: the latest execution enters.
    cluster.enable_transition("web", "deploy").await;
    cluster.wait_job_running("web", &e2, "deploy").await;
    cluster.open_gate("c2");
    cluster
        .wait_status("web", &e2, pb::ExecutionStatus::Succeeded)
        .await;
    assert!(!deployed(&cluster, "c1"));
    let state = cluster.state("web").await;
    assert!(
        stage_lane(&state, "deploy", "")
            .transition
            .clone()
            .expect("t")
            .enabled
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_inbound_execution_never_enters_even_after_the_transition_reopens() {
    let cluster = TestCluster::start(1).await;
    cluster.apply(&pipeline(&cluster)).await;
    cluster
        .disable_transition("web", "deploy", "bob", "stop the line")
        .await;
    let e1 = cluster.start_execution("web", "main", "c1").await;
    waiting_in_front_of_deploy(&cluster, &e1).await;

    let stopped = cluster.stop(&e1, pb::StopMode::Wait).await;
    assert_eq!(stopped.status, pb::ExecutionStatus::Stopped as i32);
    cluster.enable_transition("web", "deploy").await;
    let state = cluster.state("web").await;
    let deploy = stage_lane(&state, "deploy", "");
    assert!(
        deploy.lock.is_none() && deploy.waiting.is_empty(),
        "the stopped execution did not continue: {deploy:#?}"
    );
    assert_eq!(deploy.fence_token, 0);

    // The stage works for the next one, which is the first ever to enter it.
    let e2 = cluster.start_execution("web", "main", "c2").await;
    cluster.open_gate("c2");
    let done = cluster
        .wait_status("web", &e2, pb::ExecutionStatus::Succeeded)
        .await;
    assert_eq!(done.stages[1].fence_token, 1);
    let e1 = cluster.execution(&e1).await;
    assert_eq!(e1.status, pb::ExecutionStatus::Stopped as i32);
    assert!(job_in(&e1, "deploy").is_none());
    assert!(!deployed(&cluster, "c1"));
    cluster.shutdown().await;
}
