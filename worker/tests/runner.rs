//! Runner tests with real processes and no coordinator: steps, failures, ABANDON of a process
//! tree, DRAIN, timeouts, leftovers and withdrawal. Waiting is on events, never on sleeps.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_proto::v1::{JobOutcome, JobSpec, LogStream};
use baton_worker::{JobContext, JobControl, JobEnd, JobEvent, Report, run_job};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Failsafe so a broken runner fails the test instead of hanging it.
const TEST_LIMIT: Duration = Duration::from_secs(30);

struct Harness {
    dir: tempfile::TempDir,
    events: mpsc::Receiver<Report>,
    control: mpsc::Sender<JobControl>,
    seen: Vec<JobEvent>,
    task: JoinHandle<Option<JobEnd>>,
}

fn job(id: &str, steps: &[&str]) -> JobSpec {
    JobSpec {
        job_id: id.to_string(),
        steps: steps.iter().map(|s| s.to_string()).collect(),
        env: [("BATON_PIPELINE".to_string(), "demo".to_string())].into(),
        ..JobSpec::default()
    }
}

impl Harness {
    /// Tells the running job to abandon, with `grace` before SIGKILL.
    async fn abandon(&self, grace: Duration) {
        self.control
            .send(JobControl::Abandon { grace: Some(grace) })
            .await
            .expect("send abandon");
    }

    /// Starts `spec`; `before` are signals queued before the job starts.
    fn start(spec: JobSpec, before: &[JobControl]) -> Self {
        Self::start_with_shell(spec, before, Vec::new())
    }

    /// [`Harness::start`] with the worker's `shell` setting split into `shell`.
    fn start_with_shell(spec: JobSpec, before: &[JobControl], shell: Vec<String>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (events_tx, events) = mpsc::channel(64);
        let (control, control_rx) = mpsc::channel(8);
        for c in before {
            control.try_send(c.clone()).expect("queue signal");
        }
        let ctx = JobContext {
            work_dir: dir.path().to_path_buf(),
            worker_name: "test-worker".into(),
            coordinator: "http://127.0.0.1:7411".into(),
            lease: None,
            shell,
        };
        let task = tokio::spawn(run_job(spec, ctx, events_tx, control_rx));
        Self {
            dir,
            events,
            control,
            seen: Vec::new(),
            task,
        }
    }

    fn job_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join(id)
    }

    async fn next(&mut self) -> JobEvent {
        let report = tokio::time::timeout(TEST_LIMIT, self.events.recv())
            .await
            .expect("job made no progress")
            .expect("event channel closed before the job ended");
        self.seen.push(report.event.clone());
        report.event
    }

    /// Waits for a log chunk on `stream` containing `text`.
    async fn wait_log(&mut self, stream: LogStream, text: &str) {
        loop {
            match self.next().await {
                JobEvent::Log {
                    stream: s, data, ..
                } if s == stream && String::from_utf8_lossy(&data).contains(text) => {
                    return;
                }
                JobEvent::Finished(end) => panic!("job ended before {text:?}: {end:?}"),
                _ => {}
            }
        }
    }

    /// Runs to the end; returns the final event.
    async fn finish(&mut self) -> JobEvent {
        loop {
            if let e @ (JobEvent::Finished(_) | JobEvent::Withdrawn) = self.next().await {
                return e;
            }
        }
    }

    async fn end(&mut self) -> JobEnd {
        match self.finish().await {
            JobEvent::Finished(end) => {
                let returned = (&mut self.task).await.expect("runner task");
                assert_eq!(returned.as_ref(), Some(&end));
                end
            }
            other => panic!("expected Finished, got {other:?}"),
        }
    }

    fn output(&self, stream: LogStream) -> String {
        self.seen
            .iter()
            .filter_map(|e| match e {
                JobEvent::Log {
                    stream: s, data, ..
                } if *s == stream => Some(String::from_utf8_lossy(data).into_owned()),
                _ => None,
            })
            .collect()
    }

    fn steps_finished(&self) -> Vec<(u32, i32)> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                JobEvent::StepFinished { step, exit_code } => Some((*step, *exit_code)),
                _ => None,
            })
            .collect()
    }
}

/// Alive = /proc entry exists and the process is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let rest = &stat[stat.rfind(')').expect("stat has a command name") + 1..];
            !matches!(rest.split_whitespace().next(), Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

fn pids(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .expect("pid file")
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect()
}

#[tokio::test]
async fn two_steps_succeed_and_their_output_is_streamed() {
    let spec = job(
        "ok-1",
        &[
            "echo first-out; echo first-err >&2",
            "echo \"second $BATON_STEP $BATON_JOB_ID $BATON_WORKER $BATON_PIPELINE\"; pwd",
        ],
    );
    let mut h = Harness::start(spec, &[]);
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Succeeded);
    assert_eq!((end.exit_code, end.steps_done), (0, 2));
    let out = h.output(LogStream::Stdout);
    assert!(out.contains("first-out"), "{out}");
    assert!(out.contains("second 1 ok-1 test-worker demo"), "{out}");
    let cwd = std::fs::canonicalize(h.job_dir("ok-1")).expect("job dir");
    assert!(out.contains(cwd.to_str().expect("utf-8 path")), "{out}");
    assert!(h.output(LogStream::Stderr).contains("first-err"));
    assert!(!h.output(LogStream::Stderr).contains("first-out"));
    let system = h.output(LogStream::System);
    assert!(system.contains("==> step 1/2: echo first-out"), "{system}");
    assert!(system.contains("<== step 2 exited 0"), "{system}");
    assert_eq!(h.steps_finished(), vec![(0, 0), (1, 0)]);
}

#[tokio::test]
async fn failing_step_ends_the_job_with_its_exit_code_and_skips_the_rest() {
    let spec = job("fail-1", &["echo fine", "echo bad; exit 3", "touch never"]);
    let mut h = Harness::start(spec, &[]);
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Failed);
    assert_eq!((end.exit_code, end.steps_done), (3, 1));
    assert_eq!(h.steps_finished(), vec![(0, 0), (1, 3)]);
    assert!(!h.job_dir("fail-1").join("never").exists());
}

#[tokio::test]
async fn signal_death_is_reported_as_128_plus_signo() {
    let mut h = Harness::start(job("sig-1", &["kill -KILL $$"]), &[]);
    let end = h.end().await;
    assert_eq!((end.outcome, end.exit_code), (JobOutcome::Failed, 137));
}

#[tokio::test]
async fn abandon_kills_the_whole_group_before_reporting() {
    // The leader, two children (one ignores SIGTERM) and a grandchild that ignores SIGTERM.
    let script = r#"
        sleep 1000 & echo $! >> pids
        sh -c 'trap "" TERM; exec sleep 1000' & echo $! >> pids
        sh -c 'trap "" TERM; sleep 1000 & echo $! >> pids; wait' & echo $! >> pids
        echo $$ >> pids
        while [ "$(wc -l < pids)" -lt 5 ]; do sleep 0.01; done
        echo ready
        wait
    "#;
    let mut spec = job("abandon-1", &[script, "touch never"]);
    spec.grace_ms = 60_000; // the signal's grace must win
    let mut h = Harness::start(spec, &[]);
    h.wait_log(LogStream::Stdout, "ready").await;
    let pids = pids(&h.job_dir("abandon-1").join("pids"));
    assert_eq!(pids.len(), 5);
    assert!(pids.iter().all(|p| alive(*p)), "all started");
    h.abandon(Duration::from_millis(200)).await;
    let end = h.end().await;
    let survivors: Vec<_> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(survivors.is_empty(), "still alive: {survivors:?}");
    assert_eq!(end.outcome, JobOutcome::Abandoned);
    assert_eq!(end.steps_done, 0);
    assert_eq!(end.exit_code, 143, "the leader died of SIGTERM");
    assert!(h.output(LogStream::System).contains("sent SIGKILL"));
    assert!(!h.job_dir("abandon-1").join("never").exists());
}

#[tokio::test]
async fn drain_finishes_the_running_step_and_skips_the_rest() {
    let spec = job(
        "drain-1",
        &[
            "while [ ! -e go ]; do sleep 0.01; done; echo step-one-done",
            "touch marker",
        ],
    );
    let mut h = Harness::start(spec, &[]);
    h.wait_log(LogStream::System, "==> step 1/2").await;
    h.control.send(JobControl::Drain).await.expect("send drain");
    h.wait_log(LogStream::System, "drain requested").await;
    std::fs::write(h.job_dir("drain-1").join("go"), b"").expect("create go");
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Stopped);
    assert_eq!((end.exit_code, end.steps_done), (0, 1));
    assert!(h.output(LogStream::Stdout).contains("step-one-done"));
    assert_eq!(h.steps_finished(), vec![(0, 0)]);
    assert!(!h.job_dir("drain-1").join("marker").exists());
}

#[tokio::test]
async fn drain_of_a_failing_step_reports_failed() {
    let spec = job(
        "drain-2",
        &["while [ ! -e go ]; do sleep 0.01; done; exit 4", "true"],
    );
    let mut h = Harness::start(spec, &[]);
    h.wait_log(LogStream::System, "==> step 1/2").await;
    h.control.send(JobControl::Drain).await.expect("send drain");
    h.wait_log(LogStream::System, "drain requested").await;
    std::fs::write(h.job_dir("drain-2").join("go"), b"").expect("create go");
    let end = h.end().await;
    assert_eq!((end.outcome, end.exit_code), (JobOutcome::Failed, 4));
}

#[tokio::test]
async fn timeout_terminates_the_group_and_fails_the_job() {
    let mut spec = job(
        "timeout-1",
        &["sleep 1000 & echo $! > bg; wait", "touch never"],
    );
    spec.timeout_ms = 300;
    spec.grace_ms = 200;
    let mut h = Harness::start(spec, &[]);
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Failed);
    assert!(
        end.message.starts_with("timed out after"),
        "{}",
        end.message
    );
    let bg = pids(&h.job_dir("timeout-1").join("bg"));
    assert!(bg.iter().all(|p| !alive(*p)));
    assert!(!h.job_dir("timeout-1").join("never").exists());
}

#[tokio::test]
async fn background_processes_die_with_their_step() {
    let mut h = Harness::start(job("bg-1", &["sleep 1000 & echo $! > bg"]), &[]);
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Succeeded);
    let bg = pids(&h.job_dir("bg-1").join("bg"));
    assert!(bg.iter().all(|p| !alive(*p)), "background sleep survived");
}

#[tokio::test]
async fn drain_before_the_first_step_runs_nothing() {
    let mut h = Harness::start(job("drain-3", &["touch never"]), &[JobControl::Drain]);
    let end = h.end().await;
    assert_eq!((end.outcome, end.steps_done), (JobOutcome::Stopped, 0));
    assert!(!h.job_dir("drain-3").join("never").exists());
}

#[tokio::test]
async fn withdrawn_before_the_first_step_runs_nothing() {
    let mut h = Harness::start(job("wd-1", &["touch never"]), &[JobControl::Withdraw]);
    assert_eq!(h.finish().await, JobEvent::Withdrawn);
    assert_eq!((&mut h.task).await.expect("runner task"), None);
    assert!(h.seen.len() == 1, "nothing but Withdrawn: {:?}", h.seen);
    assert!(!h.job_dir("wd-1").join("never").exists());
}

#[tokio::test]
async fn large_output_comes_in_chunks_of_at_most_64_kib() {
    let mut h = Harness::start(job("big-1", &["head -c 300000 /dev/zero"]), &[]);
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Succeeded);
    let sizes: Vec<usize> = h
        .seen
        .iter()
        .filter_map(|e| match e {
            JobEvent::Log {
                stream: LogStream::Stdout,
                data,
                ..
            } => Some(data.len()),
            _ => None,
        })
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 300_000);
    assert!(sizes.iter().all(|s| *s <= baton_worker::LOG_CHUNK));
}

#[tokio::test]
async fn abandon_sends_the_actions_cancel_signal_first() {
    let script = r#"
        trap 'echo got INT; exit 7' INT
        trap '' TERM
        echo "rea"dy
        while true; do sleep 0.01; done
    "#;
    let mut spec = job("int-1", &[script]);
    spec.cancel_signal = "INT".into();
    let mut h = Harness::start(spec, &[]);
    h.wait_log(LogStream::Stdout, "ready").await;
    h.abandon(Duration::from_secs(60)).await;
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Abandoned);
    assert_eq!(
        end.exit_code, 7,
        "the step ended itself on SIGINT, well before the grace"
    );
    assert!(h.output(LogStream::Stdout).contains("got INT"));
    assert!(
        h.output(LogStream::System)
            .contains("abandon requested: SIGINT")
    );
    assert!(!h.output(LogStream::System).contains("sent SIGKILL"));
}

#[tokio::test]
async fn abandon_signals_each_process_of_the_step_once() {
    // The leader keeps going for 0.2 s after its first SIGTERM, so a second one (sent to the
    // group and again to each process of the step's cgroup) would run its trap twice. The
    // process that left the group (`setsid`) is reached through the cgroup where there is one.
    let script = r#"
        trap 'echo leader heard TERM; n=1' TERM
        setsid sh -c 'trap "echo away heard TERM; exit 0" TERM; i=0; while [ $i -lt 300 ]; do sleep 0.01; i=$((i+1)); done' &
        echo ready
        k=0
        while [ "$k" -lt 20 ]; do sleep 0.01; [ -n "$n" ] && k=$((k+1)); done
        exit 3
    "#;
    let mut h = Harness::start(job("once-1", &[script]), &[]);
    h.wait_log(LogStream::Stdout, "ready").await;
    h.abandon(Duration::from_secs(60)).await;
    let end = h.end().await;
    assert_eq!((end.outcome, end.exit_code), (JobOutcome::Abandoned, 3));
    let out = h.output(LogStream::Stdout);
    assert_eq!(out.matches("leader heard TERM").count(), 1, "{out}");
    assert!(out.matches("away heard TERM").count() <= 1, "{out}");
}

#[tokio::test]
async fn a_step_starts_in_its_own_cgroup_with_plain_stdio_and_default_signals() {
    let spec = job(
        "plain-1",
        &[
            // The shell's own cgroup (not only its children's), stdin empty, SIGPIPE default
            // (`yes` dies quietly of it instead of complaining of a broken pipe).
            "cat /proc/$$/cgroup; read -r line || echo stdin-empty; yes | head -n 1; echo \"args $0 $#\"",
        ],
    );
    let mut h = Harness::start(spec, &[]);
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Succeeded, "{end:?}");
    let out = h.output(LogStream::Stdout);
    assert!(out.contains("stdin-empty"), "{out}");
    assert!(out.contains("\ny\n"), "{out}");
    assert!(out.contains("args sh 0"), "{out}");
    let err = h.output(LogStream::Stderr);
    assert!(!err.contains("Broken pipe"), "SIGPIPE was ignored: {err}");
    let unified = out.lines().find(|l| l.starts_with("0::")).unwrap_or("");
    if baton_worker::cgroup::available() {
        assert!(
            unified.contains("/baton-") && unified.ends_with("-plain-1-0"),
            "the step's shell is not in its step cgroup: {out}"
        );
    } else {
        eprintln!("no writable cgroup v2 here: the step cgroup is not checked");
    }
}

#[tokio::test]
async fn the_workers_shell_setting_runs_each_step() {
    let spec = job(
        "shell-1",
        &[
            // bash with pipefail: the pipeline fails although its last command succeeds.
            "echo \"in ${BASH_VERSION:+bash}\"; false | true",
        ],
    );
    let shell = baton_worker::config::shell_words("bash -e -o pipefail -c");
    let mut h = Harness::start_with_shell(spec, &[], shell);
    let end = h.end().await;
    assert_eq!(
        (end.outcome, end.exit_code),
        (JobOutcome::Failed, 1),
        "{end:?}"
    );
    assert_eq!(h.output(LogStream::Stdout), "in bash\n");
}

/// Runs `spec` through `launcher` in `work_dir` to its end; returns what it printed.
async fn launched_output(
    launcher: &baton_worker::ProcessLauncher,
    work_dir: &Path,
    spec: JobSpec,
) -> String {
    use baton_worker::JobLauncher;
    let (events_tx, mut events) = mpsc::channel(64);
    let (_control, control_rx) = mpsc::channel(8);
    let ctx = JobContext {
        work_dir: work_dir.to_path_buf(),
        worker_name: "test-worker".into(),
        coordinator: "http://127.0.0.1:7411".into(),
        lease: None,
        shell: Vec::new(),
    };
    let run = tokio::spawn(launcher.launch(spec, ctx, events_tx, control_rx));
    let mut out = String::new();
    loop {
        let report = tokio::time::timeout(TEST_LIMIT, events.recv())
            .await
            .expect("job made no progress")
            .expect("events closed before the end");
        match report.event {
            JobEvent::Log {
                stream: LogStream::Stdout,
                data,
                ..
            } => out.push_str(&String::from_utf8_lossy(&data)),
            JobEvent::Finished(end) => {
                assert_eq!(end.outcome, JobOutcome::Succeeded, "{end:?}");
                break;
            }
            _ => {}
        }
    }
    run.await.expect("launch task");
    out
}

/// Waits (checking every 5 ms) until this process's spare directory is made in `work_dir`
/// (on the blocking pool, after a job ended); returns it.
async fn spare_made(work_dir: &Path) -> PathBuf {
    let spare = work_dir.join(format!(".baton-spare-{}", std::process::id()));
    let deadline = tokio::time::Instant::now() + TEST_LIMIT;
    while !spare.is_dir() {
        assert!(tokio::time::Instant::now() < deadline, "no spare directory");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    spare
}

#[tokio::test]
async fn the_next_job_runs_in_the_directory_made_when_the_last_one_ended() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let launcher = baton_worker::ProcessLauncher::default();
    let first = launched_output(&launcher, dir.path(), job("first", &["pwd"])).await;
    assert_eq!(first, format!("{}\n", dir.path().join("first").display()));
    // Made on the blocking pool once the first job ended.
    let spare = spare_made(dir.path()).await;
    let made_ahead = std::fs::metadata(&spare).expect("spare").ino();
    let second = launched_output(&launcher, dir.path(), job("second", &["pwd"])).await;
    let own = dir.path().join("second");
    assert_eq!(second, format!("{}\n", own.display()));
    assert_eq!(
        std::fs::metadata(&own).expect("own dir").ino(),
        made_ahead,
        "the second job's directory is the one made ahead"
    );
}

#[tokio::test]
async fn a_spare_directory_left_by_a_gone_worker_process_is_removed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gone = {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        pid
    };
    let stale = dir.path().join(format!(".baton-spare-{gone}"));
    std::fs::create_dir(&stale).expect("stale spare");
    let launcher = baton_worker::ProcessLauncher::default();
    launched_output(&launcher, dir.path(), job("one", &["true"])).await;
    // Swept on the blocking pool before this process's own spare is made.
    spare_made(dir.path()).await;
    assert!(!stale.exists(), "the gone process's spare is still there");
}
