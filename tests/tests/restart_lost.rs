//! After a restart the coordinator waits one lease for workers to re-attach their running
//! jobs; a job whose worker never comes back is then Lost and releases its stage.

use baton_proto::v1 as pb;
use baton_tests::{TestCluster, job_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_job_whose_worker_never_returns_is_lost_one_lease_after_restart() {
    let mut cluster = TestCluster::start(1).await;
    cluster.apply(&cluster.gated_pipeline("web")).await;
    let r1 = cluster.start_execution("web", "main", "r1").await;
    let job = cluster.wait_job_running("web", &r1, "build").await;

    // The coordinator goes down, then its only worker dies without a word.
    cluster.stop_coordinator().await;
    cluster.stop_workers().await;
    cluster.restart_coordinator().await;

    // Rebuilt from the store: the job is still Running and still holds the stage...
    let exec = cluster.execution(&r1).await;
    assert_eq!(exec.status, pb::ExecutionStatus::InProgress as i32);
    assert_eq!(
        job_in(&exec, "build").map(|j| j.status),
        Some(pb::JobStatus::Running as i32)
    );
    let state = cluster.state("web").await;
    assert_eq!(
        state.stages[0].lock.as_ref().map(|l| l.fence_token),
        Some(1)
    );

    // ...until the lease runs out: then it is Lost, the execution fails, the stage is free.
    let exec = cluster
        .wait_status("web", &r1, pb::ExecutionStatus::Failed)
        .await;
    let lost = job_in(&exec, "build").expect("job");
    assert_eq!(lost.job_id, job);
    assert_eq!(lost.status, pb::JobStatus::Lost as i32);
    assert!(lost.message.contains("lease"), "{}", lost.message);
    let state = cluster.state("web").await;
    assert!(state.stages[0].lock.is_none());
    assert_eq!(
        state.stages[0].fence_token, 1,
        "fence tokens survive restarts"
    );

    // The next execution takes the stage with the next fence token.
    cluster.add_worker("w2").await;
    cluster.open_gate("r2");
    let r2 = cluster.start_execution("web", "main", "r2").await;
    let done = cluster
        .wait_status("web", &r2, pb::ExecutionStatus::Succeeded)
        .await;
    assert_eq!(done.stages[0].fence_token, 2);
    cluster.shutdown().await;
}
