//! Re-attach: a worker whose stream breaks reconnects within its lease; its running job goes
//! on (same attempt, same worker) and its log is complete, in order, without gaps or
//! duplicates (reports lost with the broken stream are re-sent and applied once).

use std::collections::BTreeMap;
use std::time::Duration;

use baton_proto::v1 as pb;
use baton_tests::{CutProxy, TestCluster, assert_counted_lines, job_in};

fn long_lease(config: &mut baton_coordinator::CoordinatorConfig) {
    config.heartbeat_interval = Duration::from_millis(100);
    config.lease = Duration::from_secs(5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reconnecting_within_its_lease_keeps_its_job_and_a_complete_log() {
    let cluster = TestCluster::start_with(0, long_lease).await;
    let proxy = CutProxy::start(&cluster.addr).await;
    let config = baton_worker::WorkerConfig {
        coordinator: proxy.addr.clone(),
        name: "near".into(),
        labels: BTreeMap::from([("os".to_string(), "linux".to_string())]),
        slots: 1,
        token: String::new(),
        work_dir: cluster.scratch.path().join("near"),
        reconnect_backoff: Duration::from_millis(50),
        ..Default::default()
    };
    let shutdown = baton_worker::Shutdown::new();
    let worker = tokio::spawn(baton_worker::run(config, shutdown.clone()));
    cluster
        .wait_worker("near", pb::WorkerState::Connected)
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
        run: [ "i=0; until [ -f {} ]; do i=$((i+1)); echo line-$i; sleep 0.002; done; echo last-$i" ]
"#,
            gate.display()
        ))
        .await;
    let exec = cluster.start_execution("chatty", "main", "r1").await;
    let job = cluster.wait_job_running("chatty", &exec, "build").await;
    cluster.wait_for_log(&job, "line-50\n").await;

    proxy.cut();
    cluster
        .wait_worker("near", pb::WorkerState::Disconnected)
        .await;
    proxy.repair();
    cluster
        .wait_worker("near", pb::WorkerState::Connected)
        .await;
    cluster.open_gate("r1");
    let done = cluster
        .wait_status("chatty", &exec, pb::ExecutionStatus::Succeeded)
        .await;
    let record = job_in(&done, "build").expect("job");
    assert_eq!((record.attempt, record.worker.as_str()), (1, "near"));

    let text = cluster.stored_log(&job).await;
    let last = assert_counted_lines(&text);
    assert!(last > 50, "{text}");
    shutdown.drain.cancel();
    let _ = tokio::time::timeout(baton_tests::DEADLINE, worker).await;
    cluster.shutdown().await;
}
