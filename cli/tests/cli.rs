//! The real `baton` binary against a real coordinator on loopback.

use std::process::{Command, Output};

use baton_proto::v1 as pb;
use baton_tests::TestCluster;

fn baton(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .env("BATON_ADDR", addr)
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .expect("run baton")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn validate_points_at_the_mistake_without_a_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "name: web\nstages:\n  - name: build\n    mdoe: queued\n",
    )
    .expect("write");
    let out = baton(
        "http://127.0.0.1:1",
        &["pipeline", "validate", &file.display().to_string()],
    );
    assert!(!out.status.success());
    let err = stderr(&out) + &stdout(&out);
    assert!(err.contains("bad.yaml:4:5"), "{err}");
    assert!(err.contains("mdoe"), "{err}");

    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/three-stage.yaml");
    let out = baton("http://127.0.0.1:1", &["pipeline", "validate", good]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_start_and_inspect_through_the_cli() {
    let cluster = TestCluster::start(1).await;
    let addr = cluster.addr.clone();
    let file = cluster.scratch.path().join("quick.yaml");
    std::fs::write(
        &file,
        "name: quick\nstages:\n  - name: build\n    actions:\n      - name: compile\n        run: [\"echo built $BATON_COMMIT\"]\n",
    )
    .expect("write");
    let path = file.display().to_string();

    let out = baton(&addr, &["pipeline", "apply", &path, "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\"changed\":true") || stdout(&out).contains("\"changed\": true"),
        "{}",
        stdout(&out)
    );

    let out = baton(
        &addr,
        &[
            "start", "quick", "--branch", "main", "--commit", "abc1234", "--output", "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let started: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let id = started["execution_id"]
        .as_str()
        .expect("execution_id")
        .to_string();
    cluster
        .wait_status("quick", &id, pb::ExecutionStatus::Succeeded)
        .await;

    let out = baton(&addr, &["execution", &id, "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let exec: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(exec["status"], "Succeeded", "{exec}");

    let out = baton(&addr, &["executions", "quick"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("Succeeded"), "{}", stdout(&out));

    let out = baton(&addr, &["pipeline", "get", "nosuch"]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).trim(), "error: pipeline 'nosuch' not found");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_until_the_job_ends_and_says_how_it_ended() {
    let cluster = TestCluster::start(1).await;
    let addr = cluster.addr.clone();
    let gates = cluster.scratch.path().display().to_string();
    cluster
        .apply(&format!(
            r#"
name: tail
stages:
  - name: build
    actions:
      - name: compile
        run:
          - echo "first-"line
          - until [ -f {gates}/gate-$BATON_COMMIT ]; do sleep 0.02; done; echo "second-"line; exit $EXIT
        env: {{ EXIT: "0" }}
"#
        ))
        .await;
    let id = cluster.start_execution("tail", "main", "ok1").await;
    let job = cluster.wait_job_running("tail", &id, "build").await;
    cluster.wait_for_log(&job, "first-line").await;
    // Follow from another process while the job still runs; it returns when the job ends.
    let follower = {
        let (addr, job) = (addr.clone(), job.clone());
        tokio::task::spawn_blocking(move || baton(&addr, &["logs", &job, "--follow"]))
    };
    cluster.open_gate("ok1");
    let out = follower.await.expect("baton logs ran");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let first = text.find("first-line").expect("first line");
    let second = text.find("second-line").expect("second line");
    let end = text
        .find("==> job Succeeded: 2/2 steps, exit 0")
        .unwrap_or_else(|| panic!("no end line: {text}"));
    assert!(first < second && second < end, "{text}");
    assert!(text.trim_end().ends_with("exit 0"), "{text}");
    assert!(!text.contains("\x1b["), "no colours when piped");

    // A job that already failed: the plain tail ends with how it failed, JSON too.
    cluster
        .apply(&format!(
            r#"
name: tail
stages:
  - name: build
    actions:
      - name: compile
        run:
          - echo "first-"line
          - until [ -f {gates}/gate-$BATON_COMMIT ]; do sleep 0.02; done; exit $EXIT
        env: {{ EXIT: "3" }}
"#
        ))
        .await;
    cluster.open_gate("bad2");
    let failed = cluster.start_execution("tail", "main", "bad2").await;
    let done = cluster
        .wait_status("tail", &failed, pb::ExecutionStatus::Failed)
        .await;
    let job = baton_tests::job_in(&done, "build")
        .expect("job")
        .job_id
        .clone();
    let out = baton(&addr, &["logs", &job]);
    assert!(
        stdout(&out).contains("==> job Failed: 2/2 steps, exit 3 (step 2 exited 3)"),
        "{}",
        stdout(&out)
    );
    let out = baton(&addr, &["logs", &job, "--output", "json"]);
    let last: serde_json::Value = stdout(&out)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("a JSON end line");
    assert_eq!(
        (last["end"].as_str(), last["exit_code"].as_i64()),
        (Some("Failed"), Some(3)),
        "{last}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_wait_follows_the_execution_and_exits_with_its_outcome() {
    let cluster = TestCluster::start(1).await;
    let addr = cluster.addr.clone();
    let gates = cluster.scratch.path().display().to_string();
    cluster
        .apply(&format!(
            r#"
name: waited
stages:
  - name: build
    actions:
      - name: compile
        run: [ "until [ -f {gates}/gate-$BATON_COMMIT ]; do sleep 0.02; done" ]
  - name: check
    actions:
      - name: verify
        run: [ "test $BATON_COMMIT != bad" ]
"#
        ))
        .await;
    // The gate opens once the job runs, so the CLI sees it in build first.
    let waiting = {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            baton(
                &addr,
                &[
                    "start", "waited", "--branch", "main", "--commit", "good", "--wait",
                ],
            )
        })
    };
    let ran = cluster.wait_for_execution_number("waited", 1).await;
    cluster.wait_job_running("waited", &ran, "build").await;
    cluster.open_gate("good");
    let out = waiting.await.expect("baton ran");
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines, vec![ran.clone(), "#1 Succeeded".to_string()]);
    // Piped, each new place is one plain line on stderr.
    let progress = stderr(&out);
    assert!(
        progress.contains("#1 in build: compile Running"),
        "{progress}"
    );
    assert!(!progress.contains("\x1b["), "{progress}");

    cluster.open_gate("bad");
    let out = baton(
        &addr,
        &[
            "start", "waited", "--branch", "main", "--commit", "bad", "--wait", "--output", "json",
        ],
    );
    assert!(!out.status.success());
    let end: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON object");
    assert_eq!(end["status"], "Failed", "{end}");
    assert!(
        end["status_reason"]
            .as_str()
            .unwrap_or("")
            .contains("check"),
        "{end}"
    );
    assert_eq!(stderr(&out), "", "JSON output shows no progress");
    cluster.shutdown().await;
}

#[test]
fn unreachable_coordinator_is_one_clear_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let out = baton(&format!("http://127.0.0.1:{port}"), &["workers"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot reach the coordinator"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn demo_supersedes_the_burst_and_reports_savings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .current_dir(dir.path())
        .args([
            "up",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join(".baton"))
        .args(["--examples", examples])
        .output()
        .expect("run baton up --demo");
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("Superseded"), "{text}");
    assert!(text.contains("Worker time saved by superseding"), "{text}");
    assert!(!text.contains("\x1b["), "no terminal codes when piped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_approve_through_the_cli() {
    let cluster = TestCluster::start(1).await;
    let addr = cluster.addr.clone();
    let fixed = cluster.scratch.path().join("fixed");
    cluster
        .apply(&format!(
            "name: gate\nstages:\n  - name: build\n    actions:\n      - name: check\n        run: [\"test -f {}\"]\n  - name: prod\n    actions:\n      - name: sign-off\n        approval: {{ timeout: 1h }}\n",
            fixed.display()
        ))
        .await;
    let out = baton(
        &addr,
        &[
            "start", "gate", "--branch", "main", "--commit", "c1", "--tag", "v1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    let failed = cluster
        .wait_status("gate", &id, pb::ExecutionStatus::Failed)
        .await;
    assert_eq!(failed.revision.map(|r| r.tag), Some("v1".to_string()));

    let out = baton(&addr, &["retry", &id, "prod"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("ended in stage `build`, not `prod`"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&fixed, b"").expect("fix");
    let out = baton(&addr, &["retry", &id, "build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("retried in build"),
        "{}",
        stdout(&out)
    );

    cluster
        .wait_until("gate", &id, "approval pending", |e| {
            baton_tests::stage_is(e, "prod", pb::StageStatus::InProgress)
        })
        .await;
    let out = baton(
        &addr,
        &[
            "approve",
            &id,
            "prod",
            "sign-off",
            "--comment",
            "ok",
            "--by",
            "carol",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("approved sign-off in prod"),
        "{}",
        stdout(&out)
    );
    let done = cluster
        .wait_status("gate", &id, pb::ExecutionStatus::Succeeded)
        .await;
    let approval = done.stages[1].jobs[0].approval.clone().expect("approval");
    assert_eq!(
        (approval.by.as_str(), approval.comment.as_str()),
        ("carol", "ok")
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn tls_and_tokens_are_refused_with_clear_errors() {
    use baton_tests::secure::{RunningCoordinator, TestPki};
    let (pki, other) = (TestPki::new("cli"), TestPki::new("other"));
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = baton_tests::test_config(data.path());
    config.tls_cert_file = Some(pki.server_cert.clone());
    config.tls_key_file = Some(pki.server_key.clone());
    config.api_token = "cli-token-1234".into();
    let coordinator = RunningCoordinator::start(config).await;
    let addr = format!("https://localhost:{}", coordinator.local.port());
    let run = |args: Vec<String>| {
        let addr = addr.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                baton(&addr, &args)
            })
            .await
            .expect("baton ran")
        }
    };
    let (good_ca, bad_ca) = (pki.ca.display().to_string(), other.ca.display().to_string());
    let list = |ca: &str, token: Option<&str>| {
        let mut args = vec!["--ca-file".to_string(), ca.to_string()];
        if let Some(t) = token {
            args.extend(["--token".to_string(), t.to_string()]);
        }
        args.extend(["pipeline".to_string(), "list".to_string()]);
        args
    };

    let wrong_ca = run(list(&bad_ca, Some("cli-token-1234"))).await;
    assert!(!wrong_ca.status.success());
    assert!(
        stderr(&wrong_ca).contains("UnknownIssuer"),
        "{}",
        stderr(&wrong_ca)
    );
    let no_token = run(list(&good_ca, None)).await;
    assert!(!no_token.status.success());
    assert!(
        stderr(&no_token).contains("not allowed: this coordinator requires an API token"),
        "{}",
        stderr(&no_token)
    );
    let wrong_token = run(list(&good_ca, Some("nope"))).await;
    assert!(
        stderr(&wrong_token).contains("was not accepted"),
        "{}",
        stderr(&wrong_token)
    );
    let ok = run(list(&good_ca, Some("cli-token-1234"))).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    coordinator.stop().await;
}
