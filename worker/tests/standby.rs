//! Standby supervisors (`baton-worker supervise --standby`) with the real binary: one that is
//! never handed a job exits once its standard input closes, touching nothing, and a worker
//! process that ends, however it ends, leaves none behind. Waiting is on process exits with
//! deadlines; a process that has no exit to wait on (a grandchild) is looked up in /proc
//! until a deadline.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::Instant;

/// Failsafe so a standby that does not exit fails the test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(20);

const EXE: &str = env!("CARGO_BIN_EXE_baton-worker");

fn standby(cwd: &Path) -> tokio::process::Child {
    Command::new(EXE)
        .args(["supervise", "--standby"])
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn a standby")
}

/// Waits for `child` to exit and returns what it wrote to its stdout and stderr.
async fn exit_and_output(mut child: tokio::process::Child) -> (bool, String) {
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let mut text = Vec::new();
    let finished = async {
        out.read_to_end(&mut text).await.expect("read stdout");
        err.read_to_end(&mut text).await.expect("read stderr");
        child.wait().await.expect("wait for the standby")
    };
    let status = tokio::time::timeout(DEADLINE, finished)
        .await
        .expect("the standby exits once its input closes");
    (
        status.success(),
        String::from_utf8_lossy(&text).into_owned(),
    )
}

fn entries(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(entries(&path));
        }
        found.push(path.display().to_string());
    }
    found
}

#[tokio::test]
async fn a_standby_whose_input_closes_exits_quietly_without_creating_anything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = standby(dir.path());
    drop(child.stdin.take());
    let (success, output) = exit_and_output(child).await;
    assert!(success, "exit status; output: {output}");
    assert_eq!(output, "");
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_standby_cut_off_in_the_middle_of_its_job_directory_does_nothing_with_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let job_dir = dir.path().join(baton_worker::JOBS_DIR).join("j1");
    std::fs::create_dir_all(&job_dir).expect("job dir");
    let mut child = standby(dir.path());
    let mut stdin = child.stdin.take().expect("stdin");
    // The worker died before the newline: the line is not a hand-over.
    let path = job_dir.display().to_string();
    stdin.write_all(path.as_bytes()).await.expect("write");
    drop(stdin);
    let (success, output) = exit_and_output(child).await;
    assert!(success, "exit status; output: {output}");
    assert_eq!(output, "");
    assert_eq!(entries(&job_dir), Vec::<String>::new());
}

/// The pids of `parent`'s children that are `baton-worker supervise --standby`.
fn standbys_of(parent: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command name in parentheses: state, then the parent's pid.
        let Some(rest) = stat.rfind(')').map(|end| &stat[end + 1..]) else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if ppid == Some(parent) && args.get(1..3) == Some(&[&b"supervise"[..], b"--standby"][..]) {
            found.push(pid);
        }
    }
    found
}

/// Starts a worker process (pointed at a coordinator that is not there) and returns it with
/// the pid of its standby, once it has started one.
async fn worker_with_standby(work: &Path) -> (tokio::process::Child, i32) {
    let worker = Command::new(EXE)
        .args(["--coordinator", "http://127.0.0.1:1", "--name", "w-standby"])
        .arg("--work-dir")
        .arg(work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn a worker");
    let pid = worker.id().expect("worker pid") as i32;
    let deadline = Instant::now() + DEADLINE;
    // A grandchild's start has no event to wait on: look until the deadline.
    loop {
        if let [standby] = standbys_of(pid)[..] {
            return (worker, standby);
        }
        assert!(Instant::now() < deadline, "the worker started no standby");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `pid` is gone (it is not our child: nothing to wait on but /proc).
async fn gone(pid: i32) {
    let deadline = Instant::now() + DEADLINE;
    while baton_worker::process_alive(pid) {
        if Instant::now() > deadline {
            // Not left for the next test run to trip over.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            panic!("standby {pid} outlived its worker");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_worker_that_drains_and_exits_leaves_no_standby_running() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut worker, standby) = worker_with_standby(&dir.path().join("work")).await;
    let pid = worker.id().expect("worker pid") as i32;
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::time::timeout(DEADLINE, worker.wait())
        .await
        .expect("the idle worker exits on SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status}");
    gone(standby).await;
}

#[tokio::test]
async fn a_worker_killed_with_sigkill_leaves_no_standby_running() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut worker, standby) = worker_with_standby(&dir.path().join("work")).await;
    worker.start_kill().expect("SIGKILL");
    tokio::time::timeout(DEADLINE, worker.wait())
        .await
        .expect("the worker dies")
        .expect("wait");
    gone(standby).await;
}
