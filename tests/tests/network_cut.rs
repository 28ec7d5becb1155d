//! A network cut between a worker and the coordinator (a proxy the test controls): the worker
//! kills its own job within its lease, before the coordinator gives the job up and frees the
//! stage; after the repair the worker registers again, and what it still had to say about the
//! old job (with the old fence token) is not accepted.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_proto::v1 as pb;
use baton_tests::{CutProxy, TestCluster, job_in};

fn cut_leases(config: &mut baton_coordinator::CoordinatorConfig) {
    config.heartbeat_interval = Duration::from_millis(100);
    config.lease = Duration::from_millis(800);
    config.lost_margin = Duration::from_millis(1500);
}

fn alive(pid: i32) -> bool {
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
async fn a_cut_off_worker_kills_its_job_before_the_stage_is_freed_and_its_old_reports_are_dropped()
{
    let cluster = TestCluster::start_with(0, cut_leases).await;
    let proxy = CutProxy::start(&cluster.addr).await;
    let config = baton_worker::WorkerConfig {
        coordinator: proxy.addr.clone(),
        name: "far".into(),
        labels: BTreeMap::from([("via".to_string(), "proxy".to_string())]),
        slots: 1,
        token: String::new(),
        work_dir: cluster.scratch.path().join("far"),
        reconnect_backoff: Duration::from_millis(100),
        ..Default::default()
    };
    let shutdown = baton_worker::Shutdown::new();
    let worker = tokio::spawn(baton_worker::run(config, shutdown.clone()));
    cluster.wait_worker("far", pb::WorkerState::Connected).await;
    let scratch = cluster.scratch.path().display().to_string();
    cluster
        .apply(&format!(
            r#"
name: netcut
stages:
  - name: deploy
    actions:
      - name: ship
        labels: {{ via: proxy }}
        grace: 100ms
        run: [ "echo $$ > {scratch}/pid-$BATON_COMMIT; echo \"rea\"dy $BATON_FENCE_TOKEN; until [ -f {scratch}/gate-$BATON_COMMIT ]; do sleep 0.02; done" ]
"#
        ))
        .await;
    let a = cluster.start_execution("netcut", "main", "a1").await;
    let job_a = cluster.wait_job_running("netcut", &a, "deploy").await;
    cluster.wait_for_log(&job_a, "ready 1").await;
    let pid: i32 = std::fs::read_to_string(cluster.scratch.path().join("pid-a1"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(alive(pid));

    proxy.cut();
    let b = cluster.start_execution("netcut", "main", "b2").await;
    let failed = cluster
        .wait_status("netcut", &a, pb::ExecutionStatus::Failed)
        .await;
    // The stage is free now; the worker must have killed the job already.
    assert!(
        !alive(pid),
        "the cut-off worker's job outlived lease + margin"
    );
    let lost = job_in(&failed, "deploy").expect("job").clone();
    assert_eq!(lost.status, pb::JobStatus::Lost as i32, "{lost:?}");

    proxy.repair();
    let job_b = cluster.wait_job_running("netcut", &b, "deploy").await;
    cluster.wait_for_log(&job_b, "ready 2").await;
    cluster.open_gate("b2");
    cluster
        .wait_status("netcut", &b, pb::ExecutionStatus::Succeeded)
        .await;
    // The worker sent its buffered report about the old job (Abandoned, fence token 1) right
    // after it registered again, before anything about B: it was dropped.
    let after = cluster.execution(&a).await;
    let job = job_in(&after, "deploy").expect("job");
    assert_eq!(
        (job.status, job.message.as_str(), after.status),
        (
            lost.status,
            lost.message.as_str(),
            pb::ExecutionStatus::Failed as i32
        )
    );
    let log = cluster.wait_for_log(&job_b, "exited 0").await;
    assert!(log.contains("ready 2") && !log.contains("ready 1"), "{log}");

    shutdown.drain.cancel();
    let _ = tokio::time::timeout(baton_tests::DEADLINE, worker).await;
    cluster.shutdown().await;
}

/// A partition nobody reports: the proxy keeps both connections open and drops every byte, and
/// the worker's HTTP/2 keepalive is far too slow to notice (60 s). The coordinator stops
/// answering heartbeats, so the worker counts its lease from the last answer and kills its job
/// before the coordinator gives the job up (lease + margin) and frees the stage. (With the worker
/// counting its lease only from a broken stream, as it did before, this test fails: the job is
/// still alive when the coordinator declares it Lost.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_hears_nothing_for_its_lease_kills_its_job_while_the_connection_looks_open() {
    let cluster = TestCluster::start_with(0, cut_leases).await;
    let proxy = CutProxy::start(&cluster.addr).await;
    let config = baton_worker::WorkerConfig {
        coordinator: proxy.addr.clone(),
        name: "quiet".into(),
        labels: BTreeMap::from([("via".to_string(), "proxy".to_string())]),
        work_dir: cluster.scratch.path().join("quiet"),
        reconnect_backoff: Duration::from_millis(100),
        keepalive_interval: Duration::from_secs(60),
        keepalive_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let shutdown = baton_worker::Shutdown::new();
    let worker = tokio::spawn(baton_worker::run(config, shutdown.clone()));
    cluster
        .wait_worker("quiet", pb::WorkerState::Connected)
        .await;
    let scratch = cluster.scratch.path().display().to_string();
    cluster
        .apply(&format!(
            r#"
name: blackhole
stages:
  - name: deploy
    actions:
      - name: ship
        labels: {{ via: proxy }}
        grace: 100ms
        run: [ "echo $$ > {scratch}/pid-$BATON_COMMIT; echo \"rea\"dy $BATON_FENCE_TOKEN; until [ -f {scratch}/gate-$BATON_COMMIT ]; do sleep 0.02; done" ]
"#
        ))
        .await;
    let a = cluster.start_execution("blackhole", "main", "a1").await;
    let job_a = cluster.wait_job_running("blackhole", &a, "deploy").await;
    cluster.wait_for_log(&job_a, "ready 1").await;
    let pid: i32 = std::fs::read_to_string(cluster.scratch.path().join("pid-a1"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(alive(pid));

    proxy.silence();
    let failed = cluster
        .wait_status("blackhole", &a, pb::ExecutionStatus::Failed)
        .await;
    assert!(
        !alive(pid),
        "the silenced worker's job outlived lease + margin"
    );
    let lost = job_in(&failed, "deploy").expect("job");
    assert_eq!(lost.status, pb::JobStatus::Lost as i32, "{lost:?}");

    // After the repair it registers again and takes new work.
    proxy.repair();
    let b = cluster.start_execution("blackhole", "main", "b2").await;
    let job_b = cluster.wait_job_running("blackhole", &b, "deploy").await;
    cluster.wait_for_log(&job_b, "ready 2").await;
    cluster.open_gate("b2");
    cluster
        .wait_status("blackhole", &b, pb::ExecutionStatus::Succeeded)
        .await;

    shutdown.drain.cancel();
    let _ = tokio::time::timeout(baton_tests::DEADLINE, worker).await;
    cluster.shutdown().await;
}
