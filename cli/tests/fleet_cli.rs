//! `baton fence check` (inside a deploy step and outside), `baton worker drain` and
//! `baton workers`, with the real binary against a real coordinator.

use std::process::{Command, Output};

use baton_proto::v1 as pb;
use baton_tests::{TestCluster, job_in};

fn baton(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .env("BATON_ADDR", addr)
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .expect("run baton")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_step_checks_its_fence_and_a_stale_token_is_refused() {
    let cluster = TestCluster::start(1).await;
    let addr = cluster.addr.clone();
    cluster
        .apply(&format!(
            r#"
name: guarded
stages:
  - name: deploy
    actions:
      - name: ship
        env: {{ CLI_BIN: "{}" }}
        run: [ "\"$CLI_BIN\" fence check && echo DEPLOYING $BATON_FENCE_TOKEN" ]
"#,
            env!("CARGO_BIN_EXE_baton")
        ))
        .await;
    let first = cluster.start_execution("guarded", "main", "c1").await;
    let done = cluster
        .wait_status("guarded", &first, pb::ExecutionStatus::Succeeded)
        .await;
    let job = job_in(&done, "deploy").expect("job").job_id.clone();
    let log = cluster.wait_for_log(&job, "DEPLOYING 1").await;
    assert!(log.contains("fence token 1 holds guarded/deploy"), "{log}");

    let second = cluster.start_execution("guarded", "main", "c2").await;
    cluster
        .wait_status("guarded", &second, pb::ExecutionStatus::Succeeded)
        .await;
    // Token 1 is stale now (and the stage is free): a script holding it must not deploy.
    let out = baton(
        &addr,
        &[
            "fence",
            "check",
            "--pipeline",
            "guarded",
            "--stage",
            "deploy",
            "--fence-token",
            "1",
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("fence token 1 no longer holds guarded/deploy"),
        "{}",
        text(&out)
    );

    let out = baton(&addr, &["worker", "drain", "nobody"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no worker named nobody"),
        "{}",
        text(&out)
    );
    let out = baton(&addr, &["workers"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("SLOTS USED") && text(&out).contains("0/1"),
        "{}",
        text(&out)
    );
    let out = baton(&addr, &["worker", "drain", "w1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("worker w1 is draining"),
        "{}",
        text(&out)
    );
    cluster.shutdown().await;
}
