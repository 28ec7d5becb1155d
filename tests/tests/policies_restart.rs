//! Stage policies survive a coordinator restart: a disabled transition stays disabled with its
//! reason, and a settle window that was running is armed again and ends on time.

use baton_coordinator::clock::ManualClock;
use baton_proto::v1 as pb;
use baton_tests::{TestCluster, stage_is, stage_lane};

const MINUTE: i64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_and_settle_windows_survive_a_restart() {
    let clock = ManualClock::new(1_800_000_000_000);
    let mut cluster = TestCluster::start_with_clock(1, clock.clone()).await;
    cluster
        .apply(
            "name: web\nstages:\n  - name: build\n    actions:\n      - name: compile\n        run: [\"true\"]\n  - name: deploy\n    settle: 5m\n    actions:\n      - name: ship\n        run: [\"true\"]\n  - name: prod\n    actions:\n      - name: ship\n        run: [\"true\"]\n",
        )
        .await;
    cluster
        .disable_transition("web", "prod", "carol", "change freeze")
        .await;
    let id = cluster.start_execution("web", "main", "c1").await;
    cluster
        .wait_until("web", &id, "settling in front of deploy", |e| {
            stage_is(e, "deploy", pb::StageStatus::Waiting)
        })
        .await;

    cluster.restart_coordinator().await;
    cluster.wait_for_workers(1).await;
    let state = cluster.state("web").await;
    let deploy = stage_lane(&state, "deploy", "");
    assert!(
        deploy.waiting[0].reason.starts_with("settling until "),
        "{deploy:#?}"
    );
    let prod = stage_lane(&state, "prod", "")
        .transition
        .clone()
        .expect("transition");
    assert!(!prod.enabled);
    assert_eq!(prod.reason, "change freeze");

    // The window still ends five minutes after the arrival; then the freeze holds it at prod.
    clock.advance(5 * MINUTE);
    cluster
        .wait_until("web", &id, "held in front of prod", |e| {
            stage_is(e, "prod", pb::StageStatus::Waiting)
        })
        .await;
    let state = cluster.state("web").await;
    assert_eq!(
        stage_lane(&state, "prod", "").waiting[0].reason,
        "transition disabled by carol: change freeze"
    );
    cluster.enable_transition("web", "prod").await;
    cluster
        .wait_status("web", &id, pb::ExecutionStatus::Succeeded)
        .await;
    cluster.shutdown().await;
}
