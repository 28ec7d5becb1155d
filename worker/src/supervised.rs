//! Jobs that outlive the worker process: [`SupervisedLauncher`] starts each job under its own
//! supervisor (`baton-worker supervise`, see `supervisor.rs`) and follows the job's spool,
//! turning it back into the [`JobEvent`]s an in-process job reports; signals for the job go to
//! the supervisor on the pipe it was handed its job on (a standby's), else through the
//! control file and SIGUSR1.
//!
//! The launcher keeps one supervisor started ahead of the next job (a standby, see
//! `standby.rs`) and hands the job to it; with none ready (two jobs at once, or it died) it
//! starts one for the job ("cold"). The next standby is started when a job ends, so that its
//! start does not compete with the job's own.
//!
//! A worker started again with the same work dir finds the jobs the previous process left
//! ([`JobLauncher::left_behind`]): running ones (their supervisor holds the lock) and ended
//! ones whose end the coordinator had not applied yet. It follows each from the start of its
//! spool; the coordinator keeps only the log bytes past what it already has (log offsets count
//! from the spool's start).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use baton_proto::v1::{JobOutcome, JobSpec, LogStream};
use futures::future::BoxFuture;
use prost::Message;
use tokio::process::Child;
use tokio::sync::mpsc;

use crate::job_dir::{self, JobDir};
use crate::proc_group;
use crate::runner::{JobContext, JobControl, JobEnd, JobEvent, Report};
use crate::seams::{JobLauncher, LeftBehind};
use crate::spool::SpoolReader;
use crate::standby::{JobFiles, StandbySlot, WeakStandbySlot};

/// Shortest pause between two reads of a spool (right after new output).
const POLL_MIN: Duration = Duration::from_millis(5);
/// Longest pause between two reads of a quiet spool. The supervisor this process started
/// rings a doorbell after each record, so this bounds only a missed ring and jobs taken over
/// from an earlier worker process (measured: at 100 ms the rapid-push settle variant lost
/// 0.1 s per push; one small read every 20 ms per running job costs nothing measurable).
const POLL_MAX: Duration = Duration::from_millis(20);
/// How long to keep killing what a dead supervisor left before reporting the job anyway.
const SESSION_KILL_LIMIT: Duration = Duration::from_secs(10);

/// Runs every job under a supervisor process started from `exe` (the `baton-worker` binary).
/// Clones share one standby supervisor. Dropping the last one lets a standby that got no job
/// exit (so does the end of this process, however it ends).
#[derive(Debug, Clone)]
pub struct SupervisedLauncher {
    exe: PathBuf,
    standby: StandbySlot,
}

impl SupervisedLauncher {
    /// Supervisors are `exe supervise --standby`, handed their job directory, or `exe
    /// supervise <job-dir>`. Called inside a tokio runtime, it starts the first standby at
    /// once; otherwise the first job starts cold and the standby after it.
    pub fn new(exe: PathBuf) -> Self {
        Self::with_work_dir(exe, None)
    }

    /// [`SupervisedLauncher::new`] whose standbys make their job directory ahead under
    /// `work_dir` (the worker's), so that taking a job creates no file (see `prepared.rs`).
    pub fn with_work_dir(exe: PathBuf, work_dir: Option<PathBuf>) -> Self {
        let standby = StandbySlot::new(exe.clone(), work_dir);
        if tokio::runtime::Handle::try_current().is_ok() {
            standby.refill();
        }
        Self { exe, standby }
    }

    /// The pid of the standby supervisor ready for the next job, if one is (for diagnostics
    /// and tests).
    pub fn standby_pid(&self) -> Option<u32> {
        self.standby.pid()
    }
}

impl JobLauncher for SupervisedLauncher {
    /// Dropping the returned future stops following the job, not the job: its supervisor
    /// abandons it once this worker process has been gone for its lease.
    fn launch(
        &self,
        job: JobSpec,
        ctx: JobContext,
        reports: mpsc::Sender<Report>,
        control: mpsc::Receiver<JobControl>,
    ) -> BoxFuture<'static, ()> {
        let exe = self.exe.clone();
        let standby = self.standby.clone();
        Box::pin(async move {
            let job_dir = JobDir::new(&ctx.work_dir, &job.job_id);
            let job_id = job.job_id.clone();
            if job_dir.supervisor_alive() {
                // Already running here (this worker lost track of it): follow, start nothing.
                follow(job_dir, job_id, reports, control, None, None).await;
                return;
            }
            let started = start(&exe, &standby, &job_dir, &job, &ctx).await;
            // The next standby starts once this job is over (before its end is reported, so
            // the next job finds it), not while this one starts: starting one (exec, dynamic
            // linking, runtime) took the CPU the job's own start needed (supervised dispatch
            // p50 6.8 -> 4.4 ms and 10.7 -> 8.3 ms in two A/B rounds of `baton-bench
            // dispatch-latency`, 2-core machine). A job handed to a standby that is still
            // starting waits for it on the pipe. If this task is dropped before the job's end,
            // the next job starts its supervisor cold and refills the slot when it ends.
            // A standby kept for no job must not outlive the launcher because of this task.
            let standby = standby.downgrade();
            match started {
                Ok(child) => {
                    follow(
                        job_dir,
                        job_id,
                        reports,
                        control,
                        Some(child),
                        Some(standby),
                    )
                    .await
                }
                Err(err) => {
                    standby.refill();
                    let message = format!("cannot start the job's supervisor: {err}");
                    fail(&reports, &job_id, 0, message).await;
                }
            }
        })
    }

    fn left_behind(&self, work_dir: &Path, reports: mpsc::Sender<Report>) -> Vec<LeftBehind> {
        let mut found = Vec::new();
        for job_dir in JobDir::all(work_dir) {
            let spec = std::fs::read(job_dir.file("job"))
                .ok()
                .and_then(|b| JobSpec::decode(b.as_slice()).ok());
            let Some(spec) = spec.filter(|s| !s.job_id.is_empty()) else {
                if !job_dir.supervisor_alive() {
                    tracing::warn!(dir = %job_dir.dir.display(), "removing a job directory without a job");
                    let _ = std::fs::remove_dir_all(&job_dir.dir);
                }
                continue;
            };
            if let Err(err) = job_dir.attach(None) {
                tracing::warn!(job_id = %spec.job_id, %err, "cannot take the job over");
            }
            tracing::info!(
                job_id = %spec.job_id,
                running = job_dir.supervisor_alive(),
                "re-attaching a job a previous worker process left"
            );
            let (control, control_rx) = mpsc::channel(8);
            let job_id = spec.job_id;
            let run = Box::pin(follow(
                job_dir,
                job_id.clone(),
                reports.clone(),
                control_rx,
                None,
                None,
            ));
            found.push(LeftBehind {
                job_id,
                control,
                run,
            });
        }
        found
    }

    fn forget(&self, work_dir: &Path, job_id: &str) {
        let job_dir = JobDir::new(work_dir, job_id);
        if job_dir.supervisor_alive() {
            return;
        }
        if let Err(err) = std::fs::remove_dir_all(&job_dir.dir)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(job_id, %err, "cannot remove the job's spool");
        }
    }
}

/// Writes the job's files and starts its supervisor: hands it to the standby if one is ready
/// (into the directory the standby made ahead, when it has), else starts one for it.
async fn start(
    exe: &Path,
    standby: &StandbySlot,
    job_dir: &JobDir,
    job: &JobSpec,
    ctx: &JobContext,
) -> std::io::Result<Child> {
    tracing::trace!(target: "baton::hop", "supervised-start");
    if job_dir.dir.exists() && !job_dir.supervisor_alive() {
        // Left from an earlier offer of the same job that never started.
        std::fs::remove_dir_all(&job_dir.dir)?;
    }
    if let Some(mut ready) = standby.take() {
        let taken = ready
            .prepared()
            .await
            .is_some_and(|prepared| take_prepared(prepared, job_dir, job, ctx).is_ok());
        // A directory made ahead gets the job's files from the supervisor, once the job's
        // first step has started (they come on the pipe); any other is filled here.
        let inline = taken.then(|| job_files(job, ctx));
        if !taken {
            write_files(job_dir, job, ctx)?;
        }
        tracing::trace!(target: "baton::hop", "supervised-files");
        if let Some(child) = ready.hand_over(&job_dir.dir, inline.as_ref()).await {
            tracing::trace!(target: "baton::hop", "supervised-handed");
            return Ok(child);
        }
        if taken {
            // The standby died: the cold supervisor reads the files.
            write_files(job_dir, job, ctx)?;
        }
    } else {
        write_files(job_dir, job, ctx)?;
    }
    // A pid file left by a standby that died after its directory was taken must not name
    // that (possibly reused) pid until the cold supervisor writes its own.
    match std::fs::remove_file(job_dir.file("pid")) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let log = std::fs::File::create(job_dir.file("supervisor.log"))?;
    tokio::process::Command::new(exe)
        .arg("supervise")
        .arg(&job_dir.dir)
        .env(
            crate::cgroup::BASE_ENV,
            crate::cgroup::base_for_supervisor(),
        )
        .env(crate::resident::LOCK_ENV, crate::resident::for_supervisor())
        .stdin(Stdio::null())
        // The doorbell: a byte after each spool record (see the supervisor's `bell`).
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
}

/// The job's file contents: the `JobSpec`; the context, one value a line: worker name,
/// coordinator, shell (its words joined by spaces); and `attached`, this worker process.
fn job_files(job: &JobSpec, ctx: &JobContext) -> JobFiles {
    let shell = ctx.shell.join(" ");
    let context = format!("{}\n{}\n{shell}\n", ctx.worker_name, ctx.coordinator);
    JobFiles {
        job: job.encode_to_vec(),
        context: context.into_bytes(),
        attached: job_dir::attached_line(ctx.lease).into_bytes(),
    }
}

/// Makes the job's directory and files (for a standby that made none ahead, or a supervisor
/// started cold).
fn write_files(job_dir: &JobDir, job: &JobSpec, ctx: &JobContext) -> std::io::Result<()> {
    let files = job_files(job, ctx);
    std::fs::create_dir_all(&job_dir.dir)?;
    std::fs::write(job_dir.file("job"), &files.job)?;
    std::fs::write(job_dir.file("context"), &files.context)?;
    job_dir.attach(ctx.lease)?;
    // The standby's log until its hand-over; the cold supervisor's is made by `start`.
    std::fs::File::create(job_dir.file("supervisor.log")).map(drop)
}

/// Takes the job directory a standby made ahead (see `prepared.rs`): renames it to the job's
/// and its `work/` to the job's own directory. Its `job`, `context` and `attached` are
/// written by the supervisor, from the hand-over (see `supervisor.rs`).
fn take_prepared(
    prepared: &Path,
    job_dir: &JobDir,
    job: &JobSpec,
    ctx: &JobContext,
) -> std::io::Result<()> {
    std::fs::rename(prepared, &job_dir.dir)?;
    let own = ctx.work_dir.join(crate::runner::dir_name(&job.job_id));
    // If the job's own directory is there already (an earlier offer of it), it stays, and
    // the spare goes with the job directory.
    let _ = std::fs::rename(job_dir.file(crate::prepared::SPARE_WORK), own);
    Ok(())
}

/// Reports the job's spool as it grows, until its end; passes `control` on to the supervisor.
/// `child` is the supervisor when this process started it (else its lock says whether it runs).
async fn follow(
    job_dir: JobDir,
    job_id: String,
    reports: mpsc::Sender<Report>,
    control: mpsc::Receiver<JobControl>,
    mut child: Option<Child>,
    mut standby: Option<WeakStandbySlot>,
) {
    // Starts the next standby once the job is over, right before its end is reported.
    let mut job_over = move || {
        if let Some(slot) = standby.take() {
            slot.refill();
        }
    };
    let mut reader = SpoolReader::new(job_dir.file("spool"));
    // Only the supervisor this process started rings; others are polled.
    let mut bell = child.as_mut().and_then(|c| c.stdout.take());
    // A standby's standard input stays open after its hand-over: signals go there, read at
    // once. Else (started cold, or taken over from an earlier worker process) they go to the
    // control file with SIGUSR1.
    let mut signals = child.as_mut().and_then(|c| c.stdin.take());
    let mut control = Some(control);
    let mut pause = POLL_MIN;
    let mut step = 0;
    loop {
        // Looked at before reading: if it had ended, this read sees all it ever wrote.
        let running = supervisor_running(&job_dir, &mut child);
        let events = match reader.read_new() {
            Ok(events) => events,
            Err(err) => {
                let message = format!("cannot read the job's spool: {err}");
                job_over();
                fail(&reports, &job_id, step, message).await;
                return;
            }
        };
        let quiet = events.is_empty();
        for event in events {
            let last = matches!(event, JobEvent::Finished(_) | JobEvent::Withdrawn);
            if let JobEvent::Log { step: s, .. } | JobEvent::StepFinished { step: s, .. } = &event {
                step = *s;
            }
            if last {
                // It exits right after writing the end; once it has, its files can go.
                let exited = async {
                    while supervisor_running(&job_dir, &mut child) {
                        tokio::time::sleep(POLL_MIN).await;
                    }
                };
                if tokio::time::timeout(SESSION_KILL_LIMIT, exited)
                    .await
                    .is_err()
                {
                    tracing::warn!(job_id, "the job's supervisor lingers after the job's end");
                }
            }
            if last {
                job_over();
            }
            let job_id = job_id.clone();
            let _ = reports.send(Report { job_id, event }).await;
            if last {
                return;
            }
        }
        if !running {
            let mut message =
                "the job's supervisor ended without reporting the job's end".to_string();
            if let Some(why) = last_line(&job_dir.file("supervisor.log")) {
                message.push_str(&format!(" ({why})"));
            }
            // Its steps were in its session: none of them may outlive the report. While any
            // lives, its pid (the session id) cannot be reused; a live process with that pid
            // is someone else's session leader, not ours.
            if let Some(sid) = job_dir.pid()
                && !job_dir::process_alive(sid)
                && !proc_group::kill_session(sid, SESSION_KILL_LIMIT).await
            {
                message.push_str(&format!("; processes of its session {sid} survive SIGKILL"));
            }
            job_over();
            fail(&reports, &job_id, step, message).await;
            return;
        }
        pause = match quiet {
            true => (pause * 2).min(POLL_MAX),
            false => POLL_MIN,
        };
        tokio::select! {
            ctl = recv(&mut control) => match ctl {
                Some(ctl) => {
                    let line = control_line(&ctl);
                    if !send_on_pipe(&mut signals, &line).await
                        && let Err(err) = job_dir.control(&line)
                    {
                        tracing::warn!(job_id, %err, ?ctl, "cannot pass a signal to the job's supervisor");
                    }
                    pause = POLL_MIN;
                }
                None => control = None,
            },
            rung = ring(&mut bell) => {
                if !rung {
                    bell = None;
                }
                pause = POLL_MIN;
            }
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Writes `line` to the supervisor's signal pipe, if it has one; false when it has none or the
/// write failed (the pipe is then forgotten and the control file used from now on).
async fn send_on_pipe(pipe: &mut Option<tokio::process::ChildStdin>, line: &str) -> bool {
    use tokio::io::AsyncWriteExt;
    let Some(p) = pipe.as_mut() else {
        return false;
    };
    if p.write_all(format!("{line}\n").as_bytes()).await.is_ok() {
        // The supervisor, asleep on this pipe, is woken on this CPU when it can be and waits
        // there until this thread stops: let it pass the signal on first.
        std::thread::yield_now();
        tracing::trace!(target: "baton::hop", "worker-piped");
        return true;
    }
    *pipe = None;
    false
}

/// Waits for the supervisor's doorbell: true when it rang, false once it is closed (the
/// supervisor exited); never resolves without one.
async fn ring(bell: &mut Option<tokio::process::ChildStdout>) -> bool {
    use tokio::io::AsyncReadExt;
    let Some(pipe) = bell.as_mut() else {
        return std::future::pending().await;
    };
    let mut rings = [0u8; 256];
    matches!(pipe.read(&mut rings).await, Ok(n) if n > 0)
}

/// The last non-empty line of a small text file (the supervisor's own error, if it left one).
fn last_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(line.chars().take(300).collect())
}

fn supervisor_running(job_dir: &JobDir, child: &mut Option<Child>) -> bool {
    match child {
        // Our own child: waiting on it also reaps it.
        Some(c) => match c.try_wait() {
            Ok(None) => true,
            Ok(Some(_)) | Err(_) => {
                *child = None;
                false
            }
        },
        None => job_dir.supervisor_alive(),
    }
}

fn control_line(control: &JobControl) -> String {
    match control {
        JobControl::Drain => "drain".into(),
        JobControl::Withdraw => "withdraw".into(),
        JobControl::Abandon { grace: None } => "abandon".into(),
        JobControl::Abandon { grace: Some(g) } => format!("abandon {}", g.as_millis()),
    }
}

/// Next signal; pends forever once the sender is gone and `None` was seen.
async fn recv(control: &mut Option<mpsc::Receiver<JobControl>>) -> Option<JobControl> {
    match control {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Reports a job that cannot go on: a SYSTEM line saying why, then the end.
async fn fail(reports: &mpsc::Sender<Report>, job_id: &str, step: u32, message: String) {
    tracing::warn!(job_id, %message, "supervised job failed");
    let line = JobEvent::Log {
        step,
        stream: LogStream::System,
        data: format!("{message}\n").into_bytes(),
    };
    let end = JobEvent::Finished(JobEnd {
        outcome: JobOutcome::Failed,
        exit_code: -1,
        message,
        steps_done: 0,
    });
    for event in [line, end] {
        let job_id = job_id.to_string();
        let _ = reports.send(Report { job_id, event }).await;
    }
}
