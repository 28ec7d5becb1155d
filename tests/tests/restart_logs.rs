//! A coordinator restarted while a job runs: the worker re-sends every report the coordinator
//! had not confirmed (the confirmed sequence numbers lived in the old process's memory), and
//! the log still has every line exactly once: chunks carry their offset in the job's log, and
//! the coordinator, which continues the log from what it stored, drops what it already has.

use std::time::Duration;

use baton_proto::v1 as pb;
use baton_tests::{TestCluster, assert_counted_lines, job_in};

/// Heartbeats (and with them the coordinator's confirmations) seldom enough that everything
/// the job reported before the restart is still unconfirmed, and re-sent, after it.
fn rare_heartbeats(config: &mut baton_coordinator::CoordinatorConfig) {
    config.heartbeat_interval = Duration::from_secs(3);
    config.lease = Duration::from_secs(10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_sent_again_after_a_coordinator_restart_add_no_duplicate_log_lines() {
    let mut cluster = TestCluster::start_with(1, rare_heartbeats).await;
    let gate = cluster.gate("r1");
    cluster
        .apply(&format!(
            r#"
name: chatty
stages:
  - name: build
    actions:
      - name: talk
        run: [ "i=0; until [ -f {} ]; do i=$((i+1)); echo line-$i; sleep 0.003; done; echo last-$i" ]
"#,
            gate.display()
        ))
        .await;
    let exec = cluster.start_execution("chatty", "main", "r1").await;
    let job = cluster.wait_job_running("chatty", &exec, "build").await;
    cluster.wait_for_log(&job, "line-50\n").await;

    cluster.restart_coordinator().await;
    cluster.wait_for_workers(1).await;
    cluster.open_gate("r1");
    let done = cluster
        .wait_status("chatty", &exec, pb::ExecutionStatus::Succeeded)
        .await;
    assert_eq!(job_in(&done, "build").map(|j| j.attempt), Some(1));

    let text = cluster.stored_log(&job).await;
    assert_counted_lines(&text);
    assert_eq!(text.matches("==> step 1/1").count(), 1, "{text}");
    cluster.shutdown().await;
}
