//! StopPipelineExecution end to end: abandon kills the whole process group before the stage
//! is released; wait lets the running step finish and skips the rest.

use baton_proto::v1 as pb;
use baton_tests::{TestCluster, job_in};

async fn stop(cluster: &TestCluster, id: &str, mode: pb::StopMode) -> pb::PipelineExecution {
    cluster
        .client()
        .await
        .stop_pipeline_execution(pb::StopPipelineExecutionRequest {
            execution_id: id.into(),
            mode: mode as i32,
            reason: "test".into(),
        })
        .await
        .expect("stop")
        .into_inner()
        .execution
        .expect("execution")
}

fn alive(pid: i32) -> bool {
    // A process is alive while /proc/PID exists and is not a zombie.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z")
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_abandon_kills_the_whole_process_group() {
    let cluster = TestCluster::start(1).await;
    let pids = cluster.scratch.path().join("pids");
    cluster
        .apply(&format!(
            r#"
name: deploy
stages:
  - name: prod
    actions:
      - name: roll-out
        grace: 300ms
        run:
          - |
            trap '' TERM
            (trap '' TERM; sleep 1000) &
            echo $! >> {pids}
            sleep 1000 &
            echo $! >> {pids}
            echo $$ >> {pids}
            echo "pids-""written"  # split: the step header (the whole script) must not match
            wait
          - touch {pids}.never
"#,
            pids = pids.display()
        ))
        .await;
    let id = cluster.start_execution("deploy", "main", "d1").await;
    let job_id = cluster.wait_job_running("deploy", &id, "prod").await;
    cluster.wait_for_log(&job_id, "pids-written").await;
    let recorded: Vec<i32> = std::fs::read_to_string(&pids)
        .expect("pids")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(recorded.len(), 3);
    assert!(recorded.iter().all(|p| alive(*p)));

    let stopping = stop(&cluster, &id, pb::StopMode::Abandon).await;
    assert_eq!(stopping.status, pb::ExecutionStatus::Stopping as i32);
    // Everything traps TERM: the lock is held until SIGKILL and the worker's confirmation.
    let state = cluster.state("deploy").await;
    assert_eq!(
        state.stages[0]
            .lock
            .as_ref()
            .map(|l| l.execution_id.as_str()),
        Some(id.as_str()),
        "the lock is kept until the worker confirms the group is gone"
    );

    let stopped = cluster
        .wait_status("deploy", &id, pb::ExecutionStatus::Stopped)
        .await;
    let job = job_in(&stopped, "prod").expect("job");
    assert_eq!(job.status, pb::JobStatus::Abandoned as i32);
    for pid in &recorded {
        assert!(!alive(*pid), "process {pid} survived the abandon");
    }
    assert!(!pids.with_extension("never").exists());
    let state = cluster.state("deploy").await;
    assert!(
        state.stages[0].lock.is_none(),
        "released after the confirmation"
    );
    assert_eq!(
        state.stages[0].last_outcome.as_ref().map(|o| o.status),
        Some(pb::StageStatus::Stopped as i32)
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_wait_finishes_the_step_and_skips_the_rest() {
    let cluster = TestCluster::start(1).await;
    let gate = cluster.gate("w1");
    let marker = cluster.scratch.path().join("step-2-ran");
    cluster
        .apply(&format!(
            r#"
name: slow
stages:
  - name: build
    actions:
      - name: compile
        run:
          - echo "start"ed; until [ -f {gate} ]; do sleep 0.02; done; echo "step-one"-done
          - touch {marker}
  - name: deploy
    actions:
      - name: ship
        run: [ "touch {marker}.deploy" ]
"#,
            gate = gate.display(),
            marker = marker.display()
        ))
        .await;
    let id = cluster.start_execution("slow", "main", "s1").await;
    let job_id = cluster.wait_job_running("slow", &id, "build").await;
    cluster.wait_for_log(&job_id, "started").await;

    let stopping = stop(&cluster, &id, pb::StopMode::Wait).await;
    assert_eq!(stopping.status, pb::ExecutionStatus::Stopping as i32);
    // Stopping twice with wait is refused; escalation would need abandon.
    let again = cluster
        .client()
        .await
        .stop_pipeline_execution(pb::StopPipelineExecutionRequest {
            execution_id: id.clone(),
            mode: pb::StopMode::Wait as i32,
            reason: String::new(),
        })
        .await
        .expect_err("already stopping");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);

    cluster.open_gate("w1");
    let stopped = cluster
        .wait_status("slow", &id, pb::ExecutionStatus::Stopped)
        .await;
    let job = job_in(&stopped, "build").expect("job");
    assert_eq!(job.status, pb::JobStatus::Stopped as i32);
    assert_eq!(job.steps_done, 1);
    assert!(!marker.exists(), "the second step was skipped");
    assert!(
        !marker.with_extension("deploy").exists(),
        "no later stage ran"
    );
    let log = cluster.wait_for_log(&job_id, "step-one-done").await;
    assert!(log.contains("step-one-done"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_execution_can_be_stopped_and_never_enters() {
    let cluster = TestCluster::start(1).await;
    cluster.apply(&cluster.gated_pipeline("web")).await;
    let first = cluster.start_execution("web", "main", "a1").await;
    cluster.wait_job_running("web", &first, "build").await;
    let second = cluster.start_execution("web", "main", "a2").await;
    cluster
        .wait_until("web", &second, "a2 waiting", |e| {
            baton_tests::stage_is(e, "build", pb::StageStatus::Waiting)
        })
        .await;
    let stopped = stop(&cluster, &second, pb::StopMode::Wait).await;
    assert_eq!(stopped.status, pb::ExecutionStatus::Stopped as i32);
    assert!(cluster.state("web").await.stages[0].waiting.is_empty());
    cluster.open_gate("a1");
    cluster
        .wait_status("web", &first, pb::ExecutionStatus::Succeeded)
        .await;
    let state = cluster.state("web").await;
    assert!(
        state.stages[0].lock.is_none(),
        "the stopped waiter did not enter"
    );
    assert!(!cluster.ran("a2"));
    cluster.shutdown().await;
}
