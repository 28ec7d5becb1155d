//! Semaphore's auto-cancel walk-through (semaphore-auto-cancel.txt), end to end with a real
//! worker: commit A runs, B and C wait, D is pushed. `queued` cancels B and C and lets A
//! finish; `running` also stops A; `when: branch != 'master'` spares master. And a deploy
//! stage marked `interruptible: false` is never abandoned by auto-cancel.

use baton_proto::v1 as pb;
use baton_tests::{TestCluster, job_in, stage_is};

/// A QUEUED pipeline whose one job waits for the gate named after its commit, with the
/// `auto_cancel` block given ("" for none).
fn pipeline(cluster: &TestCluster, auto_cancel: &str) -> String {
    let gates = cluster.scratch.path().display();
    format!(
        r#"
name: tests
mode: queued
{auto_cancel}
stages:
  - name: unit-tests
    actions:
      - name: unit-tests
        grace: 1s
        run: [ "touch {gates}/ran-$BATON_COMMIT; until [ -f {gates}/gate-$BATON_COMMIT ]; do sleep 0.02; done" ]
"#
    )
}

/// Pushes A, B, C on `branch` without auto-cancel: A runs, B and C wait. Then, as in the
/// text, the pipeline file gains `auto_cancel` (with D's push). Returns their ids.
async fn a_runs_b_and_c_wait(
    cluster: &TestCluster,
    branch: &str,
    auto_cancel: &str,
) -> [String; 3] {
    cluster.apply(&pipeline(cluster, "")).await;
    let a = cluster.start_execution("tests", branch, "A").await;
    cluster.wait_job_running("tests", &a, "unit-tests").await;
    let b = cluster.start_execution("tests", branch, "B").await;
    let c = cluster.start_execution("tests", branch, "C").await;
    for id in [&b, &c] {
        cluster
            .wait_until("tests", id, "waiting", |e| {
                stage_is(e, "unit-tests", pb::StageStatus::Waiting)
            })
            .await;
    }
    cluster.apply(&pipeline(cluster, auto_cancel)).await;
    [a, b, c]
}

fn cancelled_by(exec: &pb::PipelineExecution, number: u64, id: &str) -> bool {
    exec.status == pb::ExecutionStatus::Cancelled as i32
        && exec.status_reason.contains(&format!("#{number}"))
        && exec.status_reason.contains(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_cancels_b_and_c_and_lets_a_finish() {
    let cluster = TestCluster::start(1).await;
    let rule = "auto_cancel:\n  queued:\n    when: \"true\"";
    let [a, b, c] = a_runs_b_and_c_wait(&cluster, "main", rule).await;
    let d = cluster.start_execution("tests", "main", "D").await;
    for id in [&b, &c] {
        let exec = cluster.execution(id).await;
        assert!(cancelled_by(&exec, 4, &d), "{exec:#?}");
        assert!(stage_is(&exec, "unit-tests", pb::StageStatus::Cancelled));
    }
    let state = cluster.state("tests").await;
    let waiting: Vec<&str> = state.stages[0]
        .waiting
        .iter()
        .map(|w| w.execution_id.as_str())
        .collect();
    assert_eq!(waiting, [d.as_str()], "D waits for A, alone");
    assert_eq!(
        cluster.execution(&a).await.status,
        pb::ExecutionStatus::InProgress as i32,
        "A is allowed to finish"
    );
    cluster.open_gate("A");
    cluster
        .wait_status("tests", &a, pb::ExecutionStatus::Succeeded)
        .await;
    cluster.wait_job_running("tests", &d, "unit-tests").await;
    cluster.open_gate("D");
    cluster
        .wait_status("tests", &d, pb::ExecutionStatus::Succeeded)
        .await;
    assert!(!cluster.ran("B") && !cluster.ran("C"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_stops_a_cancels_b_and_c_and_runs_d() {
    let cluster = TestCluster::start(1).await;
    let rule = "auto_cancel:\n  running:\n    when: \"true\"";
    let [a, b, c] = a_runs_b_and_c_wait(&cluster, "main", rule).await;
    let d = cluster.start_execution("tests", "main", "D").await;
    let stopped = cluster
        .wait_status("tests", &a, pb::ExecutionStatus::Cancelled)
        .await;
    assert!(cancelled_by(&stopped, 4, &d), "{stopped:#?}");
    assert_eq!(
        job_in(&stopped, "unit-tests").map(|j| j.status),
        Some(pb::JobStatus::Abandoned as i32),
        "A's job was abandoned (on_cancel defaults to abandon)"
    );
    for id in [&b, &c] {
        assert!(cancelled_by(&cluster.execution(id).await, 4, &d));
    }
    cluster.wait_job_running("tests", &d, "unit-tests").await;
    cluster.open_gate("D");
    cluster
        .wait_status("tests", &d, pb::ExecutionStatus::Succeeded)
        .await;
    assert!(!cluster.ran("B") && !cluster.ran("C"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_when_branch_is_not_master_spares_master() {
    let cluster = TestCluster::start(1).await;
    cluster
        .apply(&pipeline(
            &cluster,
            "auto_cancel:\n  running:\n    when: \"branch != 'master'\"",
        ))
        .await;
    let m1 = cluster.start_execution("tests", "master", "M1").await;
    cluster.wait_job_running("tests", &m1, "unit-tests").await;
    let m2 = cluster.start_execution("tests", "master", "M2").await;
    let f1 = cluster.start_execution("tests", "feature", "F1").await;
    let f2 = cluster.start_execution("tests", "feature", "F2").await;
    // Master pushes cancel nothing; the second feature push cancels the first (same branch).
    let f1_exec = cluster.execution(&f1).await;
    assert!(cancelled_by(&f1_exec, 4, &f2), "{f1_exec:#?}");
    for id in [&m1, &m2, &f2] {
        assert_eq!(
            cluster.execution(id).await.status,
            pb::ExecutionStatus::InProgress as i32
        );
    }
    for commit in ["M1", "M2", "F2"] {
        cluster.open_gate(commit);
    }
    for id in [&m1, &m2, &f2] {
        cluster
            .wait_status("tests", id, pb::ExecutionStatus::Succeeded)
            .await;
    }
    assert!(!cluster.ran("F1"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_interruptible_deploy_finishes_and_is_cancelled_at_the_boundary() {
    let cluster = TestCluster::start(2).await;
    let gates = cluster.scratch.path().display();
    cluster
        .apply(&format!(
            r#"
name: release
auto_cancel:
  running: {{}}
stages:
  - name: build
    actions:
      - name: compile
        run: [ "true" ]
  - name: deploy
    interruptible: false
    actions:
      - name: ship
        run: [ "until [ -f {gates}/gate-$BATON_COMMIT ]; do sleep 0.02; done; touch {gates}/deployed-$BATON_COMMIT" ]
  - name: verify
    actions:
      - name: smoke
        run: [ "touch {gates}/verified-$BATON_COMMIT" ]
"#
        ))
        .await;
    let a = cluster.start_execution("release", "main", "A").await;
    cluster.wait_job_running("release", &a, "deploy").await;
    let d = cluster.start_execution("release", "main", "D").await;
    cluster
        .wait_until("release", &d, "D waits in front of deploy", |e| {
            stage_is(e, "deploy", pb::StageStatus::Waiting)
        })
        .await;
    let reason = cluster.state("release").await.stages[1].waiting[0]
        .reason
        .clone();
    assert!(
        reason.contains("finishing a non-interruptible stage, then cancelled by #2"),
        "{reason}"
    );
    let a_now = cluster.execution(&a).await;
    assert_eq!(a_now.status, pb::ExecutionStatus::InProgress as i32);
    assert_eq!(
        job_in(&a_now, "deploy").map(|j| j.status),
        Some(pb::JobStatus::Running as i32),
        "the deploy is not abandoned"
    );
    cluster.open_gate("A");
    let a_done = cluster
        .wait_status("release", &a, pb::ExecutionStatus::Cancelled)
        .await;
    assert!(cancelled_by(&a_done, 2, &d), "{a_done:#?}");
    assert!(stage_is(&a_done, "deploy", pb::StageStatus::Succeeded));
    assert!(cluster.scratch.path().join("deployed-A").exists());
    assert!(!cluster.scratch.path().join("verified-A").exists());
    cluster.open_gate("D");
    cluster
        .wait_status("release", &d, pb::ExecutionStatus::Succeeded)
        .await;
    assert!(cluster.scratch.path().join("verified-D").exists());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cancel_drain_lets_the_running_step_finish_then_cancels() {
    let cluster = TestCluster::start(1).await;
    let gates = cluster.scratch.path().display();
    cluster
        .apply(&format!(
            r#"
name: drained
auto_cancel:
  running: {{}}
stages:
  - name: build
    on_cancel: drain
    actions:
      - name: compile
        run:
          - echo "start"ed; until [ -f {gates}/gate-$BATON_COMMIT ]; do sleep 0.02; done; echo "step-one"-done
          - touch {gates}/second-step-$BATON_COMMIT
"#
        ))
        .await;
    let a = cluster.start_execution("drained", "main", "A").await;
    let job = cluster.wait_job_running("drained", &a, "build").await;
    cluster.wait_for_log(&job, "started").await;
    let d = cluster.start_execution("drained", "main", "D").await;
    cluster
        .wait_status("drained", &a, pb::ExecutionStatus::Stopping)
        .await;
    cluster.open_gate("A");
    let cancelled = cluster
        .wait_status("drained", &a, pb::ExecutionStatus::Cancelled)
        .await;
    assert!(cancelled_by(&cancelled, 2, &d), "{cancelled:#?}");
    let job = job_in(&cancelled, "build").expect("job");
    assert_eq!(
        job.status,
        pb::JobStatus::Stopped as i32,
        "drained, not abandoned"
    );
    assert_eq!(job.steps_done, 1);
    assert!(!cluster.scratch.path().join("second-step-A").exists());
    cluster.open_gate("D");
    cluster
        .wait_status("drained", &d, pb::ExecutionStatus::Succeeded)
        .await;
    cluster.shutdown().await;
}

/// Found by the auto-cancel property (coordinator `execution::auto_cancel_props`): A holds the
/// stage with its job not yet taken by a worker, B waits, D arrives with `running`. A's stop
/// releases the stage at once; B, which D cancels in the same breath, must not slip in (it
/// used to enter, Cancelled, and hold the stage for good, so D never ran).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_with_no_worker_yet_never_lets_a_cancelled_waiter_in() {
    let mut cluster = TestCluster::start(0).await;
    // With `running` from the start, B would cancel A: A and B are pushed before the rule
    // exists, as in the walk-through.
    cluster.apply(&pipeline(&cluster, "")).await;
    let a = cluster.start_execution("tests", "main", "A").await;
    cluster
        .wait_until("tests", &a, "A holds the stage", |e| {
            stage_is(e, "unit-tests", pb::StageStatus::InProgress)
        })
        .await;
    let b = cluster.start_execution("tests", "main", "B").await;
    cluster
        .wait_until("tests", &b, "B waits", |e| {
            stage_is(e, "unit-tests", pb::StageStatus::Waiting)
        })
        .await;
    cluster
        .apply(&pipeline(
            &cluster,
            "auto_cancel:\n  running:\n    when: \"true\"",
        ))
        .await;
    let d = cluster.start_execution("tests", "main", "D").await;
    for id in [&a, &b] {
        let exec = cluster
            .wait_status("tests", id, pb::ExecutionStatus::Cancelled)
            .await;
        assert!(cancelled_by(&exec, 3, &d), "{exec:#?}");
    }
    let b_exec = cluster.execution(&b).await;
    assert!(
        stage_is(&b_exec, "unit-tests", pb::StageStatus::Cancelled)
            && b_exec.stages[0].jobs.is_empty(),
        "B never entered: {b_exec:#?}"
    );
    let state = cluster.state("tests").await;
    let holder = state.stages[0]
        .lock
        .as_ref()
        .map(|h| h.execution_id.as_str());
    assert_eq!(holder, Some(d.as_str()), "D holds the stage");
    cluster.add_worker("w1").await;
    cluster.wait_job_running("tests", &d, "unit-tests").await;
    cluster.open_gate("D");
    cluster
        .wait_status("tests", &d, pb::ExecutionStatus::Succeeded)
        .await;
    assert!(!cluster.ran("A") && !cluster.ran("B"));
    cluster.shutdown().await;
}
