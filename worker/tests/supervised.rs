//! The supervised launcher with the real `baton-worker supervise` process and no coordinator:
//! a job reports the same events as in-process, signals reach it through the control file,
//! and its files go once it is forgotten. Waiting is on events, never on sleeps.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use baton_proto::v1::{JobOutcome, JobSpec, LogStream};
use baton_worker::{
    JobContext, JobControl, JobEnd, JobEvent, JobLauncher, Report, SupervisedLauncher,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::mpsc;

/// Failsafe so a broken supervisor fails the test instead of hanging it.
const TEST_LIMIT: Duration = Duration::from_secs(30);

struct Harness {
    dir: tempfile::TempDir,
    launcher: SupervisedLauncher,
    events: mpsc::Receiver<Report>,
    control: mpsc::Sender<JobControl>,
    seen: Vec<JobEvent>,
    /// The worker's `shell` setting, split, for the next launch.
    shell: Vec<String>,
}

fn job(id: &str, steps: &[&str]) -> JobSpec {
    JobSpec {
        job_id: id.to_string(),
        steps: steps.iter().map(|s| s.to_string()).collect(),
        ..JobSpec::default()
    }
}

impl Harness {
    /// A launcher (with its standby started, making its job directory ahead in the work dir,
    /// as `baton-worker` has) and no job yet.
    fn new() -> Self {
        Self::in_dir(tempfile::tempdir().expect("temp dir"), true)
    }

    /// [`Harness::new`] in `dir`; with `prepare` false the standbys are not told the work dir
    /// and make no directory ahead.
    fn in_dir(dir: tempfile::TempDir, prepare: bool) -> Self {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_baton-worker"));
        let work_dir = prepare.then(|| dir.path().to_path_buf());
        let launcher = SupervisedLauncher::with_work_dir(exe, work_dir);
        let (_, events) = mpsc::channel(1);
        let (control, _) = mpsc::channel(1);
        Self {
            dir,
            launcher,
            events,
            control,
            seen: Vec::new(),
            shell: Vec::new(),
        }
    }

    fn start(spec: JobSpec) -> Self {
        Self::start_with_shell(spec, Vec::new())
    }

    /// Starts `spec` with the worker's `shell` setting split into `shell`.
    fn start_with_shell(spec: JobSpec, shell: Vec<String>) -> Self {
        let mut h = Self::new();
        h.shell = shell;
        h.launch(spec);
        h
    }

    /// Launches `spec`; its events and signals replace the previous job's.
    fn launch(&mut self, spec: JobSpec) {
        let (events_tx, events) = mpsc::channel(64);
        let (control, control_rx) = mpsc::channel(8);
        let ctx = JobContext {
            work_dir: self.dir.path().to_path_buf(),
            worker_name: "test-worker".into(),
            coordinator: "http://127.0.0.1:7411".into(),
            lease: None,
            shell: self.shell.clone(),
        };
        tokio::spawn(self.launcher.launch(spec, ctx, events_tx, control_rx));
        self.events = events;
        self.control = control;
        self.seen.clear();
    }

    async fn next(&mut self) -> JobEvent {
        let report = tokio::time::timeout(TEST_LIMIT, self.events.recv())
            .await
            .expect("job made no progress")
            .expect("event channel closed before the job ended");
        self.seen.push(report.event.clone());
        report.event
    }

    async fn wait_log(&mut self, text: &str) {
        loop {
            match self.next().await {
                JobEvent::Log { data, .. } if String::from_utf8_lossy(&data).contains(text) => {
                    return;
                }
                JobEvent::Finished(end) => panic!("job ended before {text:?}: {end:?}"),
                _ => {}
            }
        }
    }

    async fn end(&mut self) -> JobEnd {
        loop {
            match self.next().await {
                JobEvent::Finished(end) => return end,
                JobEvent::Withdrawn => panic!("withdrawn"),
                _ => {}
            }
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

    /// Sends the job ABANDON with `grace`.
    async fn abandon(&self, grace: Duration) {
        let abandon = JobControl::Abandon { grace: Some(grace) };
        self.control.send(abandon).await.expect("control");
    }

    /// SIGKILLs the ready standby and waits until it is dead; returns its pid.
    async fn kill_standby(&self) -> u32 {
        let standby = self.launcher.standby_pid().expect("a standby is ready");
        kill(Pid::from_raw(standby as i32), Signal::SIGKILL).expect("kill the standby");
        // Our child, unreaped until the launcher looks at it: gone once it is a zombie.
        let deadline = tokio::time::Instant::now() + TEST_LIMIT;
        while alive(standby as i32) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "SIGKILL did not kill"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        standby
    }

    fn spool_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join(baton_worker::JOBS_DIR).join(id)
    }

    /// The directory the ready standby makes ahead.
    fn prepared_dir(&self) -> PathBuf {
        let pid = self.launcher.standby_pid().expect("a standby is ready");
        self.dir
            .path()
            .join(baton_worker::JOBS_DIR)
            .join(format!(".standby-{pid}"))
    }

    /// Waits until the ready standby's directory is whole; returns it.
    async fn prepared(&self) -> PathBuf {
        let prepared = self.prepared_dir();
        until(|| prepared.join("work").is_dir()).await;
        prepared
    }

    /// The names in the jobs folder that start with `.standby-`.
    fn standby_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path().join(baton_worker::JOBS_DIR))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.starts_with(".standby-"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Waits (checking every 5 ms) until `done` holds, failing after [`TEST_LIMIT`].
async fn until(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + TEST_LIMIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never happened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn inode(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("metadata").ino()
}

/// A process id that is free now: that of a child already reaped.
fn gone_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let rest = &s[s.rfind(')').expect("command name") + 1..];
            !matches!(rest.split_whitespace().next(), Some("Z") | Some("X"))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn a_supervised_job_reports_what_an_in_process_one_does_and_is_forgotten_after() {
    let mut h = Harness::start(job("j1", &["echo out; echo err >&2", "echo two"]));
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Succeeded);
    assert_eq!(end.steps_done, 2);
    assert_eq!(h.output(LogStream::Stdout), "out\ntwo\n");
    assert_eq!(h.output(LogStream::Stderr), "err\n");
    let system = h.output(LogStream::System);
    assert!(system.starts_with("==> step 1/2: echo out"), "{system}");
    assert!(system.contains("<== step 2 exited 0"), "{system}");
    let steps: Vec<_> = h
        .seen
        .iter()
        .filter(|e| matches!(e, JobEvent::StepFinished { .. }))
        .collect();
    assert_eq!(steps.len(), 2);
    let status = std::fs::read_to_string(h.spool_dir("j1").join("status")).expect("status");
    assert!(status.contains("end JOB_OUTCOME_SUCCEEDED 0 2"), "{status}");

    h.launcher.forget(h.dir.path(), "j1");
    assert!(!h.spool_dir("j1").exists());
}

#[tokio::test]
async fn abandon_reaches_the_supervisor_and_kills_the_step_after_the_grace() {
    let mut h = Harness::start(job(
        "j2",
        &["trap '' TERM; echo $$ > pid; echo 'rea''dy'; while true; do sleep 0.05; done"],
    ));
    h.wait_log("ready").await;
    let pid: i32 = std::fs::read_to_string(h.dir.path().join("j2").join("pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    h.abandon(Duration::from_millis(200)).await;
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Abandoned);
    assert!(!alive(pid), "the step outlived the abandon");
    let system = h.output(LogStream::System);
    assert!(
        system.contains("abandon requested: SIGTERM, 200ms grace"),
        "{system}"
    );
    assert!(system.contains("sent SIGKILL"), "{system}");
    // Handed to a standby: the signal went through its pipe, not the control file.
    assert!(!h.spool_dir("j2").join("control").exists());
}

#[tokio::test]
async fn a_supervisor_started_cold_takes_its_signals_from_the_control_file() {
    let mut h = Harness::new();
    h.kill_standby().await;
    h.launch(job(
        "j-cold",
        &["echo 'rea''dy'; while true; do sleep 0.05; done"],
    ));
    h.wait_log("ready").await;
    h.abandon(Duration::from_millis(200)).await;
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Abandoned, "{end:?}");
    let control = std::fs::read_to_string(h.spool_dir("j-cold").join("control")).expect("control");
    assert_eq!(control, "abandon 200\n");
}

#[tokio::test]
async fn drain_reaches_the_supervisor_the_step_finishes_and_the_rest_is_skipped() {
    let mut h = Harness::start(job(
        "j3",
        &[
            "echo 'rea''dy'; until [ -f go ]; do sleep 0.01; done",
            "echo never",
        ],
    ));
    h.wait_log("ready").await;
    h.control.send(JobControl::Drain).await.expect("control");
    h.wait_log("drain requested").await;
    std::fs::write(h.dir.path().join("j3").join("go"), b"").expect("gate");
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Stopped);
    assert_eq!(end.steps_done, 1);
    assert!(!h.output(LogStream::Stdout).contains("never"));
}

#[tokio::test]
async fn the_supervisor_runs_steps_with_the_workers_shell() {
    let shell = baton_worker::config::shell_words("bash -c");
    let mut h = Harness::start_with_shell(
        job("j-shell", &["echo \"in ${BASH_VERSION:+bash}\""]),
        shell,
    );
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Succeeded, "{end:?}");
    assert_eq!(h.output(LogStream::Stdout), "in bash\n");
}

#[tokio::test]
async fn each_job_in_a_row_runs_under_the_standby_started_before_it() {
    let mut h = Harness::new();
    let mut standbys = Vec::new();
    for id in ["j4", "j5"] {
        let standby = h.launcher.standby_pid().expect("a standby is ready");
        h.launch(job(id, &["echo out; echo err >&2"]));
        let end = h.end().await;
        assert_eq!(end.outcome, JobOutcome::Succeeded, "{end:?}");
        assert_eq!(h.output(LogStream::Stdout), "out\n");
        assert_eq!(h.output(LogStream::Stderr), "err\n");
        let supervisor = std::fs::read_to_string(h.spool_dir(id).join("pid")).expect("pid file");
        assert_eq!(supervisor.trim(), standby.to_string(), "not the standby");
        let log = std::fs::read_to_string(h.spool_dir(id).join("supervisor.log")).expect("log");
        assert_eq!(log, "", "the supervisor had something to say");
        h.launcher.forget(h.dir.path(), id);
        assert!(!h.spool_dir(id).exists());
        standbys.push(standby);
    }
    assert_ne!(
        standbys[0], standbys[1],
        "the second job needs a new standby"
    );
    let next = h
        .launcher
        .standby_pid()
        .expect("a standby for the next job");
    assert!(!standbys.contains(&next));
}

#[tokio::test]
async fn the_next_standby_starts_when_the_job_ends_not_while_it_runs() {
    let mut h = Harness::new();
    assert!(h.launcher.standby_pid().is_some(), "a standby is ready");
    let gate = h.dir.path().join("gate");
    nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    h.launch(job(
        "j8",
        &[&format!("echo started; cat '{}'", gate.display())],
    ));
    h.wait_log("started").await;
    // Starting one now would take the CPU the job's own start needs.
    assert_eq!(
        h.launcher.standby_pid(),
        None,
        "a standby was started while the job ran"
    );
    std::fs::write(&gate, "go\n").expect("open the gate");
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Succeeded, "{end:?}");
    assert_eq!(h.output(LogStream::Stdout), "started\ngo\n");
    // Started before the end was reported, so the next job finds it.
    h.launcher
        .standby_pid()
        .expect("a standby for the next job once this one ended");
}

#[tokio::test]
async fn a_job_whose_standby_died_starts_its_supervisor_cold_and_a_new_standby_after() {
    let mut h = Harness::new();
    let dead = h.kill_standby().await;
    h.launch(job("j6", &["echo cold"]));
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Succeeded, "{end:?}");
    assert_eq!(h.output(LogStream::Stdout), "cold\n");
    let supervisor = std::fs::read_to_string(h.spool_dir("j6").join("pid")).expect("pid file");
    assert_ne!(supervisor.trim(), dead.to_string());
    let next = h
        .launcher
        .standby_pid()
        .expect("a standby for the next job");
    assert!(alive(next as i32));
}

#[test]
fn a_launcher_made_outside_a_runtime_starts_its_first_job_cold_and_a_standby_after() {
    let mut h = Harness::new();
    assert_eq!(h.launcher.standby_pid(), None);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        h.launch(job("j7", &["echo cold"]));
        let end = h.end().await;
        assert_eq!(end.outcome, JobOutcome::Succeeded, "{end:?}");
        assert_eq!(h.output(LogStream::Stdout), "cold\n");
        let next = h
            .launcher
            .standby_pid()
            .expect("a standby for the next job");
        let supervisor = std::fs::read_to_string(h.spool_dir("j7").join("pid")).expect("pid");
        assert_ne!(supervisor.trim(), next.to_string());
    });
}

#[tokio::test]
async fn a_job_takes_the_directory_its_standby_made_ahead_and_runs_in_its_spare() {
    let mut h = Harness::new();
    let standby = h.launcher.standby_pid().expect("a standby is ready");
    let prepared = h.prepared().await;
    let (dir_inode, spare_inode) = (inode(&prepared), inode(&prepared.join("work")));
    h.launch(job("j10", &["pwd"]));
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Succeeded, "{end:?}");
    let own = h.dir.path().join("j10");
    assert_eq!(h.output(LogStream::Stdout), format!("{}\n", own.display()));
    // The same directories, renamed: nothing was made when the job came.
    assert_eq!(inode(&h.spool_dir("j10")), dir_inode);
    assert_eq!(inode(&own), spare_inode);
    assert!(!prepared.exists());
    let supervisor = std::fs::read_to_string(h.spool_dir("j10").join("pid")).expect("pid");
    assert_eq!(supervisor.trim(), standby.to_string());
    // The job's files came on the pipe and the supervisor wrote them: a worker started again
    // finds the job by them.
    let spec = std::fs::read(h.spool_dir("j10").join("job")).expect("job file");
    let spec = <JobSpec as prost::Message>::decode(spec.as_slice()).expect("a JobSpec");
    assert_eq!(spec.job_id, "j10");
    let context = std::fs::read_to_string(h.spool_dir("j10").join("context")).expect("context");
    assert!(context.starts_with("test-worker\n"), "{context:?}");
    let attached = std::fs::read_to_string(h.spool_dir("j10").join("attached")).expect("attached");
    assert!(
        attached.starts_with(&format!("{} ", std::process::id())),
        "{attached:?}"
    );
    let log = std::fs::read_to_string(h.spool_dir("j10").join("supervisor.log")).expect("log");
    assert_eq!(log, "", "the supervisor had something to say");
    // The next standby makes its own.
    let next = h.prepared().await;
    assert_ne!(next, prepared);
}

#[tokio::test]
async fn a_standby_that_gets_no_job_leaves_no_directory_behind() {
    let h = Harness::new();
    let standby = h.launcher.standby_pid().expect("a standby is ready") as i32;
    h.prepared().await;
    let Harness { dir, launcher, .. } = h;
    drop(launcher);
    until(|| !alive(standby)).await;
    let jobs = std::fs::read_dir(dir.path().join(baton_worker::JOBS_DIR)).expect("jobs folder");
    assert_eq!(jobs.count(), 0, "the standby left its directory");
}

#[tokio::test]
async fn directories_of_gone_standbys_are_swept_and_a_live_ones_is_no_job_left_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = dir.path().join(baton_worker::JOBS_DIR);
    let whole = jobs.join(format!(".standby-{}", gone_pid()));
    let half = jobs.join(format!(".standby-{}.new", gone_pid()));
    for stale in [&whole, &half] {
        std::fs::create_dir_all(stale.join("work")).expect("mkdir");
        std::fs::write(stale.join("job"), b"").expect("job file");
    }
    let h = Harness::in_dir(dir, true);
    let prepared = h.prepared().await;
    until(|| !whole.exists() && !half.exists()).await;
    assert_eq!(
        h.standby_dirs(),
        [prepared.file_name().unwrap().to_string_lossy().into_owned()]
    );
    // A worker started again over this work dir finds no job, and leaves the standby's be.
    let (reports, _) = mpsc::channel(8);
    assert!(h.launcher.left_behind(h.dir.path(), reports).is_empty());
    assert!(prepared.join("work").is_dir());
}

#[tokio::test]
async fn a_standby_not_told_the_work_dir_gets_its_files_made_when_the_job_comes() {
    let mut h = Harness::in_dir(tempfile::tempdir().expect("temp dir"), false);
    let standby = h.launcher.standby_pid().expect("a standby is ready");
    h.launch(job("j11", &["echo made"]));
    let end = h.end().await;
    assert_eq!(end.outcome, JobOutcome::Succeeded, "{end:?}");
    assert_eq!(h.output(LogStream::Stdout), "made\n");
    let supervisor = std::fs::read_to_string(h.spool_dir("j11").join("pid")).expect("pid");
    assert_eq!(supervisor.trim(), standby.to_string());
    assert!(h.standby_dirs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_supervisor_keeps_its_code_locked_in_memory() {
    // The worker's `lock_code` (default true) reaches its supervisors in BATON_WORKER_LOCK_CODE;
    // a standby locks at its start, before it makes its job directory ahead.
    let h = Harness::new();
    h.prepared().await;
    let pid = h.launcher.standby_pid().expect("a standby is ready");
    let locked = baton_resident::locked_kib(pid).expect("VmLck");
    assert!(locked > 0, "the standby locked nothing");
}
