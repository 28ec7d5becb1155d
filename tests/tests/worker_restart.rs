//! A `baton-worker` process killed with SIGKILL and started again: its jobs run on under their
//! supervisors. Within the lease, the new process re-attaches the running job (same attempt)
//! and its log is complete, with what the job printed while no worker was there. Past the
//! lease, the job is Lost and nothing of it is left running.

use std::path::Path;
use std::time::Duration;

use baton_proto::v1 as pb;
use baton_tests::{
    DEADLINE, TestCluster, WorkerProcess, assert_counted_lines, job_in, short_leases,
};

const LINUX: &[(&str, &str)] = &[("os", "linux")];

fn long_lease(config: &mut baton_coordinator::CoordinatorConfig) {
    config.heartbeat_interval = Duration::from_millis(100);
    config.lease = Duration::from_secs(5);
}

/// Polls (there is no event for it) until `check` holds, or fails the test at the deadline.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Job directories under the work dir (not the one a standby makes ahead, `.standby-<pid>`).
fn spools(work_dir: &Path) -> usize {
    std::fs::read_dir(work_dir.join(baton_worker::JOBS_DIR))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with(".standby-"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_and_started_again_within_its_lease_reattaches_its_job_with_a_complete_log()
{
    let cluster = TestCluster::start_with(0, long_lease).await;
    let mut worker = WorkerProcess::spawn(&cluster, "phoenix", LINUX);
    cluster
        .wait_worker("phoenix", pb::WorkerState::Connected)
        .await;
    let gate = cluster.gate("r1");
    cluster
        .apply(&format!(
            r#"
name: chatty
stages:
  - name: build
    actions:
      - name: talk
        run:
          - "i=0; until [ -f {} ]; do i=$((i+1)); echo line-$i; sleep 0.003; done; echo last-$i"
          - "echo second step"
"#,
            gate.display()
        ))
        .await;
    let exec = cluster.start_execution("chatty", "main", "r1").await;
    let job = cluster.wait_job_running("chatty", &exec, "build").await;
    cluster.wait_for_log(&job, "line-50\n").await;

    // The worker dies mid-job; the job goes on printing under its supervisor.
    worker.kill();
    worker.wait().await;
    let again = WorkerProcess::spawn(&cluster, "phoenix", LINUX);
    let info = cluster
        .wait_worker("phoenix", pb::WorkerState::Connected)
        .await;
    assert_eq!(info.running_jobs, vec![job.clone()], "re-attached");
    cluster.open_gate("r1");
    let done = cluster
        .wait_status("chatty", &exec, pb::ExecutionStatus::Succeeded)
        .await;
    let record = job_in(&done, "build").expect("job");
    assert_eq!((record.attempt, record.worker.as_str()), (1, "phoenix"));
    assert_eq!(record.steps_done, 2);

    let text = cluster.stored_log(&job).await;
    assert_counted_lines(&text);
    for once in [
        "==> step 1/2",
        "<== step 1 exited 0",
        "==> step 2/2",
        "\nsecond step\n",
    ] {
        assert_eq!(text.matches(once).count(), 1, "{once:?} once in:\n{text}");
    }
    assert!(
        text.find("last-").expect("last") < text.find("==> step 2/2").expect("step 2"),
        "in order"
    );

    // Once the coordinator has applied the job's end, its spool is gone.
    let work_dir = again.log.parent().expect("dir").join("work");
    eventually("the ended job's spool is removed", || {
        spools(&work_dir) == 0
    })
    .await;
    drop(again);
    cluster.shutdown().await;
}

/// Applies pipeline `name`, whose one step writes its pid and sleeps, starts it and waits until
/// the step runs; returns the execution, the job and the step's pid.
async fn start_sleeping_step(cluster: &TestCluster, name: &str) -> (String, String, i32) {
    let pid_file = cluster.scratch.path().join("step-pid");
    cluster
        .apply(&format!(
            r#"
name: {name}
stages:
  - name: build
    actions:
      - name: wait
        run: [ "echo $$ > {}; echo 'star''ted'; exec sleep 1000" ]
"#,
            pid_file.display()
        ))
        .await;
    let exec = cluster.start_execution(name, "main", "r1").await;
    let job = cluster.wait_job_running(name, &exec, "build").await;
    cluster.wait_for_log(&job, "started").await;
    let pid = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    (exec, job, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_gone_past_its_lease_comes_back_to_find_its_job_lost_and_its_processes_gone() {
    let cluster = TestCluster::start_with(0, short_leases).await;
    let mut worker = WorkerProcess::spawn(&cluster, "late", LINUX);
    cluster
        .wait_worker("late", pb::WorkerState::Connected)
        .await;
    let (exec, _job, pid) = start_sleeping_step(&cluster, "stuck").await;
    assert!(baton_worker::process_alive(pid));

    worker.kill();
    worker.wait().await;
    let failed = cluster
        .wait_status("stuck", &exec, pb::ExecutionStatus::Failed)
        .await;
    let lost = job_in(&failed, "build").expect("job");
    assert_eq!(lost.status, pb::JobStatus::Lost as i32);
    // The supervisor abandoned the job itself once its worker had been gone for the lease:
    // the step (its process group's leader) dies even before any worker comes back.
    eventually("the step dies without its worker", || {
        !baton_worker::process_alive(pid)
    })
    .await;
    assert!(
        !baton_worker::proc_group::is_alive(pid),
        "its group is gone"
    );

    // The worker comes back: it has nothing running, and the coordinator keeps the job Lost.
    let again = WorkerProcess::spawn(&cluster, "late", LINUX);
    let work_dir = again.log.parent().expect("dir").join("work");
    eventually("the lost job's spool is removed", || spools(&work_dir) == 0).await;
    let info = cluster
        .wait_worker("late", pb::WorkerState::Connected)
        .await;
    assert!(info.running_jobs.is_empty(), "{:?}", info.running_jobs);
    let exec = cluster.execution(&exec).await;
    assert_eq!(
        job_in(&exec, "build").map(|j| j.status),
        Some(pb::JobStatus::Lost as i32)
    );
    drop(again);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_supervisor_is_killed_fails_and_its_steps_are_killed_first() {
    let cluster = TestCluster::start_with(0, long_lease).await;
    let worker = WorkerProcess::spawn(&cluster, "orphaner", LINUX);
    cluster
        .wait_worker("orphaner", pb::WorkerState::Connected)
        .await;
    let (exec, job, step) = start_sleeping_step(&cluster, "headless").await;
    let work_dir = worker.log.parent().expect("dir").join("work");
    let job_dir = work_dir.join(baton_worker::JOBS_DIR).join(&job);
    let supervisor: i32 = std::fs::read_to_string(job_dir.join("pid"))
        .expect("supervisor pid file")
        .trim()
        .parse()
        .expect("pid");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the supervisor");
    let failed = cluster
        .wait_status("headless", &exec, pb::ExecutionStatus::Failed)
        .await;
    let record = job_in(&failed, "build").expect("job");
    assert_eq!(record.status, pb::JobStatus::Failed as i32);
    assert!(
        record.message.contains("supervisor ended"),
        "{}",
        record.message
    );
    assert!(
        !baton_worker::process_alive(step),
        "the step outlived its job's report"
    );
    drop(worker);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ends_while_its_worker_is_down_is_reported_with_its_outcome_on_return() {
    let cluster = TestCluster::start_with(0, long_lease).await;
    let mut worker = WorkerProcess::spawn(&cluster, "napper", LINUX);
    cluster
        .wait_worker("napper", pb::WorkerState::Connected)
        .await;
    let gate = cluster.gate("r1");
    cluster
        .apply(&format!(
            r#"
name: quick
stages:
  - name: build
    actions:
      - name: finish
        run: [ "echo 'be''fore'; until [ -f {} ]; do sleep 0.01; done; echo after; exit 3" ]
"#,
            gate.display()
        ))
        .await;
    let exec = cluster.start_execution("quick", "main", "r1").await;
    let job = cluster.wait_job_running("quick", &exec, "build").await;
    cluster.wait_for_log(&job, "before").await;

    worker.kill();
    worker.wait().await;
    cluster.open_gate("r1");
    // No worker is there to tell anyone: the supervisor's status file is the only witness.
    let status = worker
        .log
        .parent()
        .expect("dir")
        .join("work")
        .join(baton_worker::JOBS_DIR)
        .join(&job)
        .join("status");
    eventually("the job ends under its supervisor", || {
        std::fs::read_to_string(&status).is_ok_and(|s| s.contains("end JOB_OUTCOME_FAILED 3"))
    })
    .await;

    let again = WorkerProcess::spawn(&cluster, "napper", LINUX);
    let failed = cluster
        .wait_status("quick", &exec, pb::ExecutionStatus::Failed)
        .await;
    let record = job_in(&failed, "build").expect("job");
    assert_eq!(
        (record.status, record.exit_code, record.attempt),
        (pb::JobStatus::Failed as i32, 3, 1),
        "{record:?}"
    );
    let text = cluster.stored_log(&job).await;
    assert_eq!(text.matches("before\n").count(), 1, "{text}");
    assert_eq!(text.matches("\nafter\n").count(), 1, "{text}");
    assert!(text.contains("<== step 1 exited 3"), "{text}");
    drop(again);
    cluster.shutdown().await;
}
