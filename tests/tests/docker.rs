//! The compose cluster in real containers: labelled routing, a killed worker, a cut network and
//! a crashed coordinator. Skipped unless `BATON_DOCKER_TESTS=1` (`.ci/run` sets it after building
//! the image with `deploy/build-images.sh --debug`). Every container, network and volume a test
//! creates is removed when it ends, failed or not.

use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use baton_tests::docker::{ComposeCluster, docker, enabled, repo_root};
use baton_tests::job_in;

const LEASE: Duration = Duration::from_secs(3);

fn job_is(stage: &'static str, status: pb::JobStatus) -> impl Fn(&pb::PipelineExecution) -> bool {
    move |e| job_in(e, stage).is_some_and(|j| j.status == status as i32)
}

fn one_stage(name: &str, pool: &str, run: &str) -> String {
    format!(
        "name: {name}\nstages:\n  - name: build\n    actions:\n      - name: job\n        labels: {{ pool: {pool} }}\n        run:\n          - {run:?}\n"
    )
}

#[tokio::test]
async fn compose_cluster_runs_a_pipeline_across_three_labelled_workers() {
    if !enabled("compose_cluster_runs_a_pipeline_across_three_labelled_workers") {
        return;
    }
    let cluster = ComposeCluster::up(LEASE).await;
    let fleet = std::fs::read_to_string(repo_root().join("deploy/examples/fleet.yaml"))
        .expect("fleet example");
    cluster.apply(&fleet).await;
    let id = cluster.start("fleet", "c1").await;
    let exec = cluster
        .wait_until("fleet", &id, "Succeeded", |e| {
            e.status == pb::ExecutionStatus::Succeeded as i32
        })
        .await;
    for (stage, worker) in [
        ("build", "worker-build"),
        ("test", "worker-test"),
        ("deploy", "worker-deploy"),
    ] {
        let job = job_in(&exec, stage).expect("job");
        assert_eq!(job.worker, worker, "stage {stage} ran on the wrong worker");
    }
}

#[tokio::test]
async fn a_killed_worker_s_job_becomes_lost_after_the_lease_and_runs_again_elsewhere() {
    if !enabled("a_killed_worker_s_job_becomes_lost_after_the_lease_and_runs_again_elsewhere") {
        return;
    }
    let cluster = ComposeCluster::up(LEASE).await;
    // Any of the three workers can run it (they all offer os=linux); the first attempt hangs.
    let run = r#"if [ "$BATON_ATTEMPT" = 1 ]; then sleep 600; fi; echo attempt-$BATON_ATTEMPT"#;
    cluster
        .apply(&format!(
            "name: hold\nstages:\n  - name: build\n    actions:\n      - name: job\n        labels: {{ os: linux }}\n        retry: {{ lost: 1 }}\n        run:\n          - {run:?}\n"
        ))
        .await;
    let id = cluster.start("hold", "c1").await;
    let exec = cluster
        .wait_until(
            "hold",
            &id,
            "the job running",
            job_is("build", pb::JobStatus::Running),
        )
        .await;
    let first = job_in(&exec, "build").expect("job").worker.clone();

    docker(&["kill", &cluster.container(&first)]);
    let killed = Instant::now();
    let exec = cluster
        .wait_until("hold", &id, "a second attempt running", |e| {
            e.stages
                .iter()
                .flat_map(|s| &s.jobs)
                .any(|j| j.attempt == 2 && j.status >= pb::JobStatus::Running as i32)
        })
        .await;
    eprintln!(
        "the job ran again {:?} after {first} was killed",
        killed.elapsed()
    );
    // The worker's last heartbeat may be up to one interval (lease / 6) before the kill; the
    // stage stays held (no second attempt) until the lease has run out.
    let earliest = LEASE - LEASE / 6 - Duration::from_millis(200);
    assert!(
        killed.elapsed() >= earliest,
        "the job ran again {:?} after the kill, before the lease ran out",
        killed.elapsed()
    );
    let jobs: Vec<&pb::Job> = exec.stages.iter().flat_map(|s| &s.jobs).collect();
    let lost = jobs.iter().find(|j| j.attempt == 1).expect("attempt 1");
    let again = jobs.iter().find(|j| j.attempt == 2).expect("attempt 2");
    assert_eq!(lost.status, pb::JobStatus::Lost as i32, "{lost:?}");
    assert_ne!(again.worker, first, "the retry went to the dead worker");
    let exec = cluster
        .wait_until("hold", &id, "Succeeded", |e| {
            e.status == pb::ExecutionStatus::Succeeded as i32
        })
        .await;
    assert_eq!(exec.status, pb::ExecutionStatus::Succeeded as i32);
}

#[tokio::test]
async fn a_cut_off_worker_fences_itself_and_comes_back_for_new_work() {
    if !enabled("a_cut_off_worker_fences_itself_and_comes_back_for_new_work") {
        return;
    }
    let cluster = ComposeCluster::up(LEASE).await;
    let run = r#"if [ "$BATON_COMMIT" = c1 ]; then sleep 600; fi; echo ran-$BATON_COMMIT"#;
    cluster.apply(&one_stage("fenced", "test", run)).await;
    let first = cluster.start("fenced", "c1").await;
    let exec = cluster
        .wait_until(
            "fenced",
            &first,
            "the job running",
            job_is("build", pb::JobStatus::Running),
        )
        .await;
    let lost_job = job_in(&exec, "build").expect("job").job_id.clone();

    let worker = cluster.container("worker-test");
    docker(&["network", "disconnect", &cluster.network(), &worker]);
    let cut = Instant::now();
    cluster
        .wait_for("the cut-off worker to kill its job", || async {
            !docker(&["top", &worker]).contains("sleep 600")
        })
        .await;
    eprintln!(
        "the cut-off worker killed its job {:?} after the cut",
        cut.elapsed()
    );
    // It counts its lease from the coordinator's last answer (heartbeats are answered), so the
    // job dies within the lease of the cut; the rest is for `docker top` to see it.
    let bound = LEASE + Duration::from_millis(1500);
    assert!(
        cut.elapsed() <= bound,
        "the job outlived the cut by {:?} (bound {bound:?})",
        cut.elapsed()
    );
    cluster
        .wait_until(
            "fenced",
            &first,
            "the job Lost",
            job_is("build", pb::JobStatus::Lost),
        )
        .await;

    docker(&["network", "connect", &cluster.network(), &worker]);
    cluster
        .wait_for("worker-test to register again", || async {
            cluster.connected().await.iter().any(|w| w == "worker-test")
        })
        .await;
    let second = cluster.start("fenced", "c2").await;
    let exec = cluster
        .wait_until("fenced", &second, "Succeeded", |e| {
            e.status == pb::ExecutionStatus::Succeeded as i32
        })
        .await;
    assert_eq!(job_in(&exec, "build").expect("job").worker, "worker-test");
    // The worker's late report about the fenced job changed nothing.
    let old = cluster.execution(&first).await;
    let job = job_in(&old, "build").expect("job");
    assert_eq!(
        (job.job_id.as_str(), job.status),
        (lost_job.as_str(), pb::JobStatus::Lost as i32)
    );
}

#[tokio::test]
async fn a_crashed_coordinator_loses_nothing_and_workers_reattach() {
    if !enabled("a_crashed_coordinator_loses_nothing_and_workers_reattach") {
        return;
    }
    let mut cluster = ComposeCluster::up(LEASE).await;
    cluster
        .apply(&one_stage(
            "slow",
            "build",
            "sleep 4; echo finished-$BATON_COMMIT",
        ))
        .await;
    let first = cluster.start("slow", "c1").await;
    cluster
        .wait_until(
            "slow",
            &first,
            "the job running",
            job_is("build", pb::JobStatus::Running),
        )
        .await;
    // Acknowledged while the first holds the stage: it waits in front of it.
    let second = cluster.start("slow", "c2").await;

    let coordinator = cluster.container("coordinator");
    docker(&["kill", &coordinator]);
    docker(&["start", &coordinator]);
    cluster.refresh_addr();
    cluster.wait_for_workers(3).await;

    for (id, commit) in [(&first, "c1"), (&second, "c2")] {
        let exec = cluster
            .wait_until("slow", id, &format!("{commit} Succeeded"), |e| {
                e.status == pb::ExecutionStatus::Succeeded as i32
            })
            .await;
        let job = job_in(&exec, "build").expect("job");
        assert_eq!(job.worker, "worker-build");
        assert_eq!(
            job.attempt, 1,
            "{commit}'s job ran again instead of re-attaching"
        );
    }
}
