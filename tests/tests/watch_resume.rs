//! A watcher that goes away and comes back with `since` sees every change exactly once, in
//! order, including changes made across a coordinator restart.

use baton_proto::v1 as pb;
use baton_tests::{TestCluster, collect_until, is_execution_status, is_job_status};

fn seqs(events: &[pb::PipelineEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_resumes_with_since_without_gap_or_duplicate_across_restart() {
    let mut cluster = TestCluster::start(1).await;
    cluster.apply(&cluster.gated_pipeline("web")).await;

    // The first watcher sees r1 start running, then goes away.
    let mut watcher = cluster.watch_since("web", Some(0)).await;
    let r1 = cluster.start_execution("web", "main", "r1").await;
    let mut seen = collect_until(&mut watcher, "r1 running", |e| {
        is_job_status(e, &r1, pb::JobStatus::Running)
    })
    .await;
    drop(watcher);

    // While nobody watches: r1 finishes and r2 starts running; the coordinator restarts; r3
    // arrives and waits behind r2.
    cluster.open_gate("r1");
    cluster
        .wait_status("web", &r1, pb::ExecutionStatus::Succeeded)
        .await;
    let r2 = cluster.start_execution("web", "main", "r2").await;
    cluster.wait_job_running("web", &r2, "build").await;
    cluster.restart_coordinator().await;
    cluster.wait_for_workers(1).await;
    let r3 = cluster.start_execution("web", "main", "r3").await;
    cluster
        .wait_until("web", &r3, "r3 waiting", |e| {
            baton_tests::stage_is(e, "build", pb::StageStatus::Waiting)
        })
        .await;

    // It comes back with the last number it saw and gets the rest, then live events.
    let last = seen.last().map(|e| e.seq).expect("saw events");
    let mut watcher = cluster.watch_since("web", Some(last)).await;
    cluster.open_gate("r2");
    cluster.open_gate("r3");
    seen.extend(
        collect_until(&mut watcher, "r3 succeeded", |e| {
            is_execution_status(e, &r3, pb::ExecutionStatus::Succeeded)
        })
        .await,
    );
    let expected: Vec<u64> = (1..=seen.len() as u64).collect();
    assert_eq!(seqs(&seen), expected, "every number once, in order");

    // What it saw is exactly what the store kept.
    let mut replay = cluster.watch_since("web", Some(0)).await;
    let all = collect_until(&mut replay, "r3 succeeded", |e| {
        is_execution_status(e, &r3, pb::ExecutionStatus::Succeeded)
    })
    .await;
    assert_eq!(all, seen);
    for (id, name) in [(&r1, "r1"), (&r2, "r2"), (&r3, "r3")] {
        let ends = all
            .iter()
            .filter(|e| is_execution_status(e, id, pb::ExecutionStatus::Succeeded))
            .count();
        assert_eq!(ends, 1, "{name} succeeded once");
    }

    // A number past the last event is refused with a hint, not silently accepted.
    let past = cluster
        .client()
        .await
        .watch_pipeline(pb::WatchPipelineRequest {
            pipeline: "web".into(),
            since: Some(last + 10_000),
        })
        .await
        .expect_err("since past the end");
    assert_eq!(past.code(), tonic::Code::OutOfRange);
    cluster.shutdown().await;
}
