//! `baton transition disable|enable` and `baton resume`, the real binary against a real
//! coordinator on loopback.

use std::process::{Command, Output};

use baton_proto::v1 as pb;
use baton_tests::{TestCluster, stage_is};

fn baton(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .env("BATON_ADDR", addr)
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .expect("run baton")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_transition_holds_the_execution_and_baton_state_says_why() {
    let cluster = TestCluster::start(1).await;
    let addr = cluster.addr.clone();
    cluster
        .apply("name: web\nstages:\n  - name: build\n    actions:\n      - name: compile\n        run: [\"true\"]\n  - name: deploy\n    actions:\n      - name: ship\n        run: [\"true\"]\n")
        .await;

    let out = baton(
        &addr,
        &[
            "transition",
            "disable",
            "web",
            "deploy",
            "--reason",
            "freeze",
            "--by",
            "alice",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "transition into deploy: disabled by alice: freeze\n"
    );

    let id = cluster.start_execution("web", "main", "abc1234").await;
    cluster
        .wait_until("web", &id, "waiting in front of deploy", |e| {
            stage_is(e, "deploy", pb::StageStatus::Waiting)
        })
        .await;
    let (stdout, _) = text(&baton(&addr, &["state", "web"]));
    assert!(
        stdout.contains("    transition disabled by alice: freeze\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("— transition disabled by alice: freeze"),
        "the waiter says why: {stdout}"
    );

    let out = baton(&addr, &["resume", &id]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("only a paused execution can be resumed"),
        "{stderr}"
    );

    let out = baton(&addr, &["transition", "enable", "web", "deploy"]);
    assert!(out.status.success(), "{}", text(&out).1);
    cluster
        .wait_status("web", &id, pb::ExecutionStatus::Succeeded)
        .await;

    let out = baton(&addr, &["transition", "disable", "web", "nosuch"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("pipeline 'web' has no stage 'nosuch'; its stages are build, deploy"),
        "{stderr}"
    );
    cluster.shutdown().await;
}
