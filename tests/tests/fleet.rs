//! The worker fleet with real `baton-worker` processes: routing by labels, a worker killed
//! mid-job (lost after its lease, retried elsewhere, the stage lock held until lease + margin),
//! draining by SIGTERM and by DrainWorker.

use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use baton_tests::{TestCluster, WorkerProcess, job_in, short_leases};

/// The soonest a lost worker's job may end after the kill: its last heartbeat may be one
/// interval old, then the lease and the margin must both pass.
fn earliest_loss(config_of: fn(&mut baton_coordinator::CoordinatorConfig)) -> Duration {
    let mut c = baton_coordinator::CoordinatorConfig::new(".");
    config_of(&mut c);
    c.lease + c.lost_margin - c.heartbeat_interval - Duration::from_millis(50)
}

fn jobs(exec: &pb::PipelineExecution, stage: &str) -> Vec<pb::Job> {
    exec.stages
        .iter()
        .filter(|s| s.stage == stage)
        .flat_map(|s| s.jobs.clone())
        .collect()
}

fn gated_stage(cluster: &TestCluster, pipeline: &str, mode: &str, extra: &str) -> String {
    let gates = cluster.scratch.path().display();
    format!(
        r#"
name: {pipeline}
mode: {mode}
stages:
  - name: deploy
    actions:
      - name: ship
{extra}
        run: [ "echo attempt $BATON_ATTEMPT on $BATON_WORKER; until [ -f {gates}/gate-$BATON_COMMIT ]; do sleep 0.02; done" ]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_is_lost_after_its_lease_and_the_job_is_retried_elsewhere() {
    let cluster = TestCluster::start_with(0, short_leases).await;
    let procs = [
        WorkerProcess::spawn(&cluster, "p1", &[("os", "linux")]),
        WorkerProcess::spawn(&cluster, "p2", &[("os", "linux")]),
    ];
    cluster.wait_for_workers(2).await;
    cluster
        .apply(&gated_stage(
            &cluster,
            "ship-it",
            "superseded",
            "        retry: { lost: 1 }",
        ))
        .await;
    let exec = cluster.start_execution("ship-it", "main", "c1").await;
    let first = cluster.wait_job_running("ship-it", &exec, "deploy").await;
    cluster.wait_for_log(&first, "attempt 1").await;
    let before = cluster.execution(&exec).await;
    let victim = job_in(&before, "deploy")
        .map(|j| j.worker.clone())
        .unwrap_or_default();
    let fence = cluster.state("ship-it").await.stages[0].fence_token;
    let proc = procs
        .iter()
        .find(|p| p.name == victim)
        .expect("a worker ran it");
    proc.kill();
    let killed = Instant::now();

    let retried = cluster
        .wait_until("ship-it", &exec, "attempt 2 running", |e| {
            jobs(e, "deploy")
                .iter()
                .any(|j| j.attempt == 2 && j.status == pb::JobStatus::Running as i32)
        })
        .await;
    let elapsed = killed.elapsed();
    eprintln!("attempt 2 running {elapsed:?} after the SIGKILL (lease 800 ms + margin 600 ms)");
    assert!(
        elapsed >= earliest_loss(short_leases),
        "the lost job was given up {elapsed:?} after the kill, before lease + margin"
    );
    let all = jobs(&retried, "deploy");
    let lost = all.iter().find(|j| j.attempt == 1).expect("attempt 1");
    let second = all.iter().find(|j| j.attempt == 2).expect("attempt 2");
    assert_eq!(lost.status, pb::JobStatus::Lost as i32, "{lost:?}");
    assert!(lost.message.contains(&victim), "{lost:?}");
    assert_ne!(second.worker, victim, "the retry ran on the lost worker");
    // The execution never left the stage: same holder, same fence token.
    let state = cluster.state("ship-it").await;
    let holder = state.stages[0].lock.as_ref().expect("still locked");
    assert_eq!(
        (holder.execution_id.as_str(), holder.fence_token),
        (exec.as_str(), fence)
    );

    cluster.wait_for_log(&second.job_id, "attempt 2").await;
    cluster.open_gate("c1");
    cluster
        .wait_status("ship-it", &exec, pb::ExecutionStatus::Succeeded)
        .await;
    drop(procs);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_job_without_retry_fails_and_its_stage_is_freed_only_after_lease_and_margin() {
    let cluster = TestCluster::start_with(0, short_leases).await;
    let procs = [
        WorkerProcess::spawn(&cluster, "p1", &[("os", "linux")]),
        WorkerProcess::spawn(&cluster, "p2", &[("os", "linux")]),
    ];
    cluster.wait_for_workers(2).await;
    cluster
        .apply(&gated_stage(&cluster, "deploys", "queued", ""))
        .await;
    let a = cluster.start_execution("deploys", "main", "a1").await;
    let job_a = cluster.wait_job_running("deploys", &a, "deploy").await;
    cluster.wait_for_log(&job_a, "attempt 1").await;
    let b = cluster.start_execution("deploys", "main", "b2").await;
    let victim = job_in(&cluster.execution(&a).await, "deploy")
        .map(|j| j.worker.clone())
        .unwrap_or_default();
    procs
        .iter()
        .find(|p| p.name == victim)
        .expect("a worker ran it")
        .kill();
    let killed = Instant::now();

    // B may enter only once A's stage lock is released.
    cluster.wait_job_running("deploys", &b, "deploy").await;
    let elapsed = killed.elapsed();
    eprintln!(
        "next execution running {elapsed:?} after the SIGKILL (lease 800 ms + margin 600 ms)"
    );
    assert!(
        elapsed >= earliest_loss(short_leases),
        "the stage was released {elapsed:?} after the kill, before lease + margin"
    );
    let a_exec = cluster.execution(&a).await;
    assert_eq!(
        a_exec.status,
        pb::ExecutionStatus::Failed as i32,
        "{a_exec:?}"
    );
    let a_job = job_in(&a_exec, "deploy").expect("job");
    assert_eq!(a_job.status, pb::JobStatus::Lost as i32);
    let b_job = job_in(&cluster.execution(&b).await, "deploy")
        .cloned()
        .expect("job");
    assert_ne!(b_job.worker, victim);
    cluster.open_gate("b2");
    cluster
        .wait_status("deploys", &b, pb::ExecutionStatus::Succeeded)
        .await;
    cluster.open_gate("a1");
    drop(procs);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_go_to_workers_whose_labels_match_and_an_unmatched_job_says_so() {
    let cluster = TestCluster::start_with(0, short_leases).await;
    let mut procs = vec![
        WorkerProcess::spawn(&cluster, "builder", &[("os", "linux"), ("queue", "build")]),
        WorkerProcess::spawn(&cluster, "gpu", &[("os", "linux"), ("gpu", "true")]),
        WorkerProcess::spawn(&cluster, "mac", &[("os", "macos")]),
    ];
    cluster.wait_for_workers(3).await;
    cluster
        .apply(
            r#"
name: routed
stages:
  - name: build
    actions:
      - { name: compile, labels: { queue: build }, run: [ "echo on $BATON_WORKER" ] }
      - { name: train, labels: { gpu: true }, run: [ "echo on $BATON_WORKER" ] }
      - { name: sign, labels: { os: macos }, run: [ "echo on $BATON_WORKER" ] }
"#,
        )
        .await;
    let exec = cluster.start_execution("routed", "main", "r1").await;
    let done = cluster
        .wait_status("routed", &exec, pb::ExecutionStatus::Succeeded)
        .await;
    let ran_on = |action: &str| {
        jobs(&done, "build")
            .into_iter()
            .find(|j| j.action == action)
            .map(|j| j.worker)
            .unwrap_or_default()
    };
    assert_eq!(
        [ran_on("compile"), ran_on("train"), ran_on("sign")],
        ["builder", "gpu", "mac"]
    );

    cluster
        .apply("name: win\nstages:\n  - name: build\n    actions:\n      - { name: msbuild, labels: { os: windows }, run: [ \"echo on $BATON_WORKER\" ] }\n")
        .await;
    let waiting = cluster.start_execution("win", "main", "w1").await;
    let told = cluster
        .wait_until("win", &waiting, "the job to say why it waits", |e| {
            job_in(e, "build").is_some_and(|j| !j.message.is_empty())
        })
        .await;
    let job = job_in(&told, "build").expect("job");
    assert_eq!(job.status, pb::JobStatus::Queued as i32);
    assert_eq!(job.message, "no connected worker offers os=windows");
    // GetPipelineState says it too, on the stage's lock holder.
    let state = cluster.state("win").await;
    let holder = state.stages[0]
        .lock
        .as_ref()
        .expect("the execution holds build");
    assert_eq!(
        holder.note,
        "`msbuild` cannot start: no connected worker offers os=windows"
    );

    procs.push(WorkerProcess::spawn(&cluster, "win", &[("os", "windows")]));
    let done = cluster
        .wait_status("win", &waiting, pb::ExecutionStatus::Succeeded)
        .await;
    let job = job_in(&done, "build").expect("job");
    assert_eq!((job.worker.as_str(), job.message.as_str()), ("win", ""));
    let state = cluster.state("win").await;
    assert!(state.stages[0].lock.is_none(), "{state:?}");
    drop(procs);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_worker_process_its_job_completes_and_it_exits_0() {
    let cluster = TestCluster::start_with(0, short_leases).await;
    let mut proc = WorkerProcess::spawn(&cluster, "p1", &[("os", "linux")]);
    cluster.wait_for_workers(1).await;
    cluster.apply(&cluster.gated_pipeline("drain-me")).await;
    cluster
        .apply(
            &cluster
                .gated_pipeline("later")
                .replace("name: later", "name: later\nmode: parallel"),
        )
        .await;
    let exec = cluster.start_execution("drain-me", "main", "d1").await;
    cluster.wait_job_running("drain-me", &exec, "build").await;

    proc.terminate();
    cluster.wait_worker("p1", pb::WorkerState::Draining).await;
    // A job started now is not offered to the draining worker, and says why it waits.
    let later = cluster.start_execution("later", "main", "l1").await;
    cluster
        .wait_until("later", &later, "the job to say why it waits", |e| {
            job_in(e, "build").is_some_and(|j| j.message.contains("draining"))
        })
        .await;

    cluster.open_gate("d1");
    cluster
        .wait_status("drain-me", &exec, pb::ExecutionStatus::Succeeded)
        .await;
    let status = proc.wait().await;
    assert!(
        status.success(),
        "worker exited with {status}: {}",
        proc.output()
    );
    assert!(!cluster.ran("l1"), "a job ran on the draining worker");
    let later_exec = cluster.execution(&later).await;
    let later_job = job_in(&later_exec, "build").expect("job");
    assert_eq!(later_job.status, pb::JobStatus::Queued as i32);
    assert!(
        proc.output().contains("saying goodbye"),
        "{}",
        proc.output()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_worker_lets_the_running_job_finish_then_the_worker_leaves() {
    let cluster = TestCluster::start_with(0, short_leases).await;
    let mut proc = WorkerProcess::spawn(&cluster, "p1", &[("os", "linux")]);
    cluster.wait_for_workers(1).await;
    cluster.apply(&cluster.gated_pipeline("drained")).await;
    let exec = cluster.start_execution("drained", "main", "k1").await;
    cluster.wait_job_running("drained", &exec, "build").await;

    let answer = cluster
        .client()
        .await
        .drain_worker(pb::DrainWorkerRequest { name: "p1".into() })
        .await
        .expect("drain worker")
        .into_inner()
        .worker
        .expect("worker");
    assert_eq!(answer.state, pb::WorkerState::Draining as i32);
    assert_eq!((answer.slots, answer.slots_in_use), (1, 1));
    let unknown = cluster
        .client()
        .await
        .drain_worker(pb::DrainWorkerRequest {
            name: "nobody".into(),
        })
        .await
        .expect_err("unknown worker");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    cluster.open_gate("k1");
    cluster
        .wait_status("drained", &exec, pb::ExecutionStatus::Succeeded)
        .await;
    let status = proc.wait().await;
    assert!(
        status.success(),
        "worker exited with {status}: {}",
        proc.output()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_abandons_what_the_draining_worker_still_runs() {
    let cluster = TestCluster::start_with(0, short_leases).await;
    let mut proc = WorkerProcess::spawn(&cluster, "p1", &[("os", "linux")]);
    cluster.wait_for_workers(1).await;
    cluster.apply(&cluster.gated_pipeline("twice")).await;
    let exec = cluster.start_execution("twice", "main", "t1").await;
    cluster.wait_job_running("twice", &exec, "build").await;

    proc.terminate();
    cluster.wait_worker("p1", pb::WorkerState::Draining).await;
    proc.terminate();
    // The gate never opens: only the abandon can end the job.
    let failed = cluster
        .wait_status("twice", &exec, pb::ExecutionStatus::Failed)
        .await;
    let job = job_in(&failed, "build").expect("job");
    assert_eq!(job.status, pb::JobStatus::Abandoned as i32, "{job:?}");
    let status = proc.wait().await;
    assert!(
        status.success(),
        "worker exited with {status}: {}",
        proc.output()
    );
    cluster.shutdown().await;
}
