//! CodePipeline's failure, retry and stop rules (codepipeline-executions.txt), end to end:
//! a failure releases the stage lock; RetryStageExecution resumes the execution in that
//! stage (failed actions or all), unless another execution has entered the stage since; a
//! stopped inbound execution cannot be retried; a Stopping (wait) execution escalates to
//! abandon.

use baton_proto::v1 as pb;
use baton_tests::{TestCluster, job_in, stage_is};

/// `build` runs `lint` (counts its runs) and `test` (fails until `fixed` exists) side by
/// side; `deploy` marks that it ran.
fn pipeline(cluster: &TestCluster) -> String {
    let dir = cluster.scratch.path().display();
    format!(
        r#"
name: svc
stages:
  - name: build
    actions:
      - name: lint
        run: [ "echo $BATON_COMMIT >> {dir}/lint-runs" ]
      - name: test
        run: [ "test -f {dir}/fixed || {{ echo broken; exit 3; }}" ]
  - name: deploy
    actions:
      - name: ship
        run: [ "touch {dir}/deployed-$BATON_COMMIT" ]
"#
    )
}

async fn retry(
    cluster: &TestCluster,
    id: &str,
    stage: &str,
    mode: pb::RetryMode,
) -> Result<pb::PipelineExecution, tonic::Status> {
    cluster
        .client()
        .await
        .retry_stage_execution(pb::RetryStageExecutionRequest {
            execution_id: id.into(),
            stage: stage.into(),
            mode: mode as i32,
        })
        .await
        .map(|r| r.into_inner().execution.expect("execution"))
}

fn lint_runs(cluster: &TestCluster) -> usize {
    std::fs::read_to_string(cluster.scratch.path().join("lint-runs"))
        .unwrap_or_default()
        .lines()
        .count()
}

fn attempts(exec: &pb::PipelineExecution, stage: &str, action: &str) -> Vec<u32> {
    exec.stages
        .iter()
        .filter(|s| s.stage == stage)
        .flat_map(|s| s.jobs.iter())
        .filter(|j| j.action == action)
        .map(|j| j.attempt)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_failure_reruns_the_failed_action_and_goes_on() {
    let cluster = TestCluster::start(2).await;
    cluster.apply(&pipeline(&cluster)).await;
    let id = cluster.start_execution("svc", "main", "c1").await;
    let failed = cluster
        .wait_status("svc", &id, pb::ExecutionStatus::Failed)
        .await;
    assert!(stage_is(&failed, "build", pb::StageStatus::Failed));
    let state = cluster.state("svc").await;
    assert!(
        state.stages[0].lock.is_none(),
        "a failure releases the lock"
    );
    assert_eq!(
        state.stages[0].last_outcome.as_ref().map(|o| o.status),
        Some(pb::StageStatus::Failed as i32)
    );

    std::fs::write(cluster.scratch.path().join("fixed"), b"").expect("fix");
    let resumed = retry(&cluster, &id, "build", pb::RetryMode::FailedActions)
        .await
        .expect("retry accepted");
    assert_ne!(resumed.status, pb::ExecutionStatus::Failed as i32);
    let done = cluster
        .wait_status("svc", &id, pb::ExecutionStatus::Succeeded)
        .await;
    assert_eq!(attempts(&done, "build", "test"), [1, 2]);
    assert_eq!(
        attempts(&done, "build", "lint"),
        [1],
        "lint succeeded: not rerun"
    );
    assert_eq!(lint_runs(&cluster), 1);
    let fence = |e: &pb::PipelineExecution| {
        e.stages
            .iter()
            .find(|s| s.stage == "build")
            .map(|s| s.fence_token)
    };
    assert_eq!(fence(&done), Some(2), "re-entering took a new fence token");
    assert!(cluster.scratch.path().join("deployed-c1").exists());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_all_actions_reruns_every_action_of_the_stage() {
    let cluster = TestCluster::start(2).await;
    cluster.apply(&pipeline(&cluster)).await;
    let id = cluster.start_execution("svc", "main", "c1").await;
    cluster
        .wait_status("svc", &id, pb::ExecutionStatus::Failed)
        .await;
    std::fs::write(cluster.scratch.path().join("fixed"), b"").expect("fix");
    retry(&cluster, &id, "build", pb::RetryMode::AllActions)
        .await
        .expect("retry accepted");
    let done = cluster
        .wait_status("svc", &id, pb::ExecutionStatus::Succeeded)
        .await;
    assert_eq!(attempts(&done, "build", "lint"), [1, 2]);
    assert_eq!(lint_runs(&cluster), 2);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_is_refused_once_a_newer_execution_entered_the_stage() {
    let cluster = TestCluster::start(2).await;
    cluster.apply(&pipeline(&cluster)).await;
    let first = cluster.start_execution("svc", "main", "c1").await;
    cluster
        .wait_status("svc", &first, pb::ExecutionStatus::Failed)
        .await;
    let second = cluster.start_execution("svc", "main", "c2").await;
    cluster
        .wait_status("svc", &second, pb::ExecutionStatus::Failed)
        .await;
    let refused = retry(&cluster, &first, "build", pb::RetryMode::FailedActions)
        .await
        .expect_err("another execution entered build since");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("another execution has entered the stage since"),
        "{}",
        refused.message()
    );
    assert_eq!(
        cluster.execution(&first).await.status,
        pb::ExecutionStatus::Failed as i32
    );
    // The newer one can still be retried.
    std::fs::write(cluster.scratch.path().join("fixed"), b"").expect("fix");
    retry(&cluster, &second, "build", pb::RetryMode::FailedActions)
        .await
        .expect("the latest entrant may retry");
    cluster
        .wait_status("svc", &second, pb::ExecutionStatus::Succeeded)
        .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_inbound_execution_cannot_be_retried() {
    let cluster = TestCluster::start(1).await;
    cluster.apply(&cluster.gated_pipeline("web")).await;
    let first = cluster.start_execution("web", "main", "a1").await;
    cluster.wait_job_running("web", &first, "build").await;
    let second = cluster.start_execution("web", "main", "a2").await;
    cluster
        .wait_until("web", &second, "a2 inbound", |e| {
            stage_is(e, "build", pb::StageStatus::Waiting)
        })
        .await;
    cluster
        .client()
        .await
        .stop_pipeline_execution(pb::StopPipelineExecutionRequest {
            execution_id: second.clone(),
            mode: pb::StopMode::Wait as i32,
            reason: "not this one".into(),
        })
        .await
        .expect("stop inbound");
    let refused = retry(&cluster, &second, "build", pb::RetryMode::FailedActions)
        .await
        .expect_err("inbound executions have nothing to retry");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("inbound"),
        "{}",
        refused.message()
    );
    // Nor can an execution still in progress.
    let busy = retry(&cluster, &first, "build", pb::RetryMode::FailedActions)
        .await
        .expect_err("in progress");
    assert!(busy.message().contains("InProgress"), "{}", busy.message());
    cluster.open_gate("a1");
    cluster
        .wait_status("web", &first, pb::ExecutionStatus::Succeeded)
        .await;
    assert!(!cluster.ran("a2"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_wait_escalates_to_stop_and_abandon() {
    let cluster = TestCluster::start(1).await;
    let gate = cluster.gate("never");
    cluster
        .apply(&format!(
            r#"
name: slow
stages:
  - name: build
    actions:
      - name: compile
        grace: 1s
        run:
          - echo started; until [ -f {gate} ]; do sleep 0.02; done
          - echo second step
"#,
            gate = gate.display()
        ))
        .await;
    let id = cluster.start_execution("slow", "main", "s1").await;
    cluster.wait_job_running("slow", &id, "build").await;
    let c = &cluster;
    let stop = |mode: pb::StopMode| {
        let id = id.clone();
        async move {
            c.client()
                .await
                .stop_pipeline_execution(pb::StopPipelineExecutionRequest {
                    execution_id: id,
                    mode: mode as i32,
                    reason: String::new(),
                })
                .await
                .expect("stop")
                .into_inner()
                .execution
                .expect("execution")
        }
    };
    let stopping = stop(pb::StopMode::Wait).await;
    assert_eq!(stopping.status, pb::ExecutionStatus::Stopping as i32);
    // The step never ends by itself: stop and wait alone would wait forever.
    let escalated = stop(pb::StopMode::Abandon).await;
    assert_eq!(escalated.status, pb::ExecutionStatus::Stopping as i32);
    let stopped = cluster
        .wait_status("slow", &id, pb::ExecutionStatus::Stopped)
        .await;
    assert_eq!(
        job_in(&stopped, "build").map(|j| j.status),
        Some(pb::JobStatus::Abandoned as i32)
    );
    assert!(cluster.state("slow").await.stages[0].lock.is_none());
    cluster.shutdown().await;
}
