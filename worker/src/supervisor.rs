//! The job supervisor: `baton-worker supervise <job-dir>`, one process per job, started by the
//! worker and outliving it, so that a worker process killed and started again finds its jobs
//! still running and their output complete.
//!
//! It runs the job exactly as an in-process worker does ([`run_job`]: each step in its own
//! process group, cancel signal, grace, SIGKILL, timeout, drain) in a session of its own, and
//! writes every event to the job's spool and status file (see `job_dir.rs` for the files).
//! It takes `drain`, `abandon [GRACE_MS]` and `withdraw` as lines on the pipe a standby was
//! handed its job on (read at once), and from the control file, read on SIGUSR1 and every
//! [`CONTROL_POLL`] (a supervisor started cold, or one whose worker was restarted).
//!
//! It never runs a job nobody can stop: once the worker process it belongs to (`attached`) has
//! been gone for that worker's lease with no new one attached, it abandons the job itself, as
//! the worker would have done once cut off from the coordinator for its lease.
//!
//! Usually it is started before its job, as a standby (`supervise --standby`, see
//! `standby.rs`): everything up to the job directory is done ahead, and the worker hands it
//! the directory on standard input when a job comes.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use baton_proto::v1::{JobSpec, LogStream};
use prost::Message;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::job_dir::{JobDir, process_alive};
use crate::prepared::Prepared;
use crate::runner::{JobContext, JobControl, JobEvent, run_job};
use crate::spool::{SpoolWriter, Status, write_atomic};
use crate::standby::JobFiles;

/// How often the control file and the worker's liveness are read without a signal.
pub const CONTROL_POLL: Duration = Duration::from_millis(200);

/// Signals queued for the job before it reads them.
const CONTROL_QUEUE: usize = 64;

/// `supervise STANDBY_ARG` (in place of a job directory) starts a standby supervisor: see
/// [`standby_main`].
pub const STANDBY_ARG: &str = "--standby";

/// Runs the supervisor for the job in `dir` to the job's end. For `main.rs`.
pub fn main(dir: &Path) -> ExitCode {
    run(Some(dir), None)
}

/// Runs a standby supervisor: gets ready to supervise a job (with `work_dir`, also makes the
/// job's directory ahead: see `prepared.rs`), then reads the job's directory from standard
/// input (one hand-over, see `standby.rs`) and runs that job as [`main`] would. Exits at once,
/// with success and leaving no file behind, when standard input closes first (the worker that
/// started it is gone or has no job for it). For `main.rs`.
pub fn standby_main(work_dir: Option<&Path>) -> ExitCode {
    run(None, work_dir)
}

/// The job in `dir`, or the one handed to this standby when `None`.
fn run(dir: Option<&Path>, work_dir: Option<&Path>) -> ExitCode {
    // A session of its own: nothing sent to the worker's group or terminal reaches the job.
    // (It fails only for a group leader, which a freshly spawned process is not.)
    if let Err(errno) = nix::unistd::setsid() {
        eprintln!("baton-worker supervise: setsid: {errno}");
    }
    bell::quiet();
    // Its stderr is the job's `supervisor.log` (a standby's, from its hand-over on); the
    // worker's RUST_LOG says what goes there (default: warnings), `baton::hop` included.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    crate::resident::lock_supervisor();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("baton-worker supervise: cannot start a runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let wake = match signal(SignalKind::user_defined1()) {
            Ok(wake) => wake,
            Err(err) => {
                eprintln!("baton-worker supervise: cannot install the SIGUSR1 handler: {err}");
                return ExitCode::FAILURE;
            }
        };
        let (dir, signals, prepared) = match dir {
            Some(dir) => (dir.to_path_buf(), None, None),
            None => {
                // The default shell's program, found on PATH ahead (nine `stat`s on this
                // machine's PATH, once the job had come).
                if let Some(program) = crate::config::DEFAULT_SHELL.split_whitespace().next() {
                    crate::cgroup_spawn::find_program_ahead(program);
                }
                // Without it the job's files are made when the job comes, as before.
                let prepared = work_dir.and_then(|w| {
                    Prepared::make(w)
                        .inspect_err(
                            |err| tracing::warn!(%err, "cannot make the job directory ahead"),
                        )
                        .ok()
                });
                // Tells a worker waiting to take the directory that it is whole (or will not
                // be): one ring before any job, which the worker reads as such.
                if work_dir.is_some() {
                    bell::ring();
                }
                // Blocking is fine: nothing else runs on this runtime yet.
                let Some(handed) = crate::standby::receive_job() else {
                    if let Some(prepared) = prepared {
                        prepared.discard();
                    }
                    return ExitCode::SUCCESS;
                };
                tracing::trace!(target: "baton::hop", "supervisor-handed");
                let prepared = match prepared {
                    Some(p) if p.is(&handed.dir) => Some((p, handed.inline)),
                    Some(other) => {
                        other.discard();
                        None
                    }
                    None => None,
                };
                (handed.dir, handed.control, prepared)
            }
        };
        let signals =
            signals.and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok());
        match supervise(JobDir { dir: dir.clone() }, wake, signals, prepared).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("baton-worker supervise {}: {err}", dir.display());
                ExitCode::FAILURE
            }
        }
    })
}

/// Runs the job in `job_dir` to its end. `wake` is SIGUSR1 (read the control file now),
/// installed before the pid file tells the worker where to send it. `signals` is the pipe a
/// standby was handed its job on: the worker that started it writes control lines there.
/// `prepared`: the directory was made ahead, its lock is held, its pid written, its spool
/// open; with the job's files handed on the pipe (`JobFiles`), this writes them once the job's
/// first step has started.
async fn supervise(
    job_dir: JobDir,
    mut wake: Signal,
    signals: Option<tokio::net::unix::pipe::Receiver>,
    prepared: Option<(Prepared, Option<JobFiles>)>,
) -> Result<(), String> {
    let mut signals = signals.map(|pipe| BufReader::new(pipe).lines());
    let (_lock, spool, inline) = match prepared {
        Some((Prepared { lock, spool, .. }, inline)) => (lock, Some(spool), inline),
        None => {
            let lock = job_dir.lock()?;
            write_atomic(
                &job_dir.file("pid"),
                format!("{}\n", std::process::id()).as_bytes(),
            )
            .map_err(|e| format!("cannot write the pid file: {e}"))?;
            (lock, None, None)
        }
    };
    tracing::trace!(target: "baton::hop", "supervisor-locked");
    let (spec, context) = match &inline {
        Some(files) => (
            files.job.clone(),
            String::from_utf8_lossy(&files.context).into_owned(),
        ),
        None => (
            std::fs::read(job_dir.file("job")).map_err(|e| format!("cannot read the job: {e}"))?,
            std::fs::read_to_string(job_dir.file("context"))
                .map_err(|e| format!("cannot read the context: {e}"))?,
        ),
    };
    let spec = JobSpec::decode(spec.as_slice()).map_err(|e| format!("bad job file: {e}"))?;
    tracing::trace!(target: "baton::hop", "supervisor-read");
    let mut lines = context.lines();
    let ctx = JobContext {
        work_dir: job_dir
            .work_dir()
            .ok_or("the job directory has no work dir above it")?
            .to_path_buf(),
        worker_name: lines.next().unwrap_or_default().to_string(),
        coordinator: lines.next().unwrap_or_default().to_string(),
        lease: None,
        // A context written before the setting existed has no third line: the default.
        shell: crate::config::shell_words(lines.next().unwrap_or_default()),
    };
    let mut spool = match spool {
        Some(spool) => spool,
        None => SpoolWriter::open(&job_dir.file("spool"))
            .map_err(|e| format!("cannot open the spool: {e}"))?,
    };
    tracing::trace!(target: "baton::hop", "supervisor-spool");
    let (events_tx, mut events) = mpsc::channel(256);
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let job = tokio::spawn(run_job(spec, ctx, events_tx, control_rx));
    if let Some(files) = inline {
        // The job runs up to its first step's start first (this runtime has one thread).
        tokio::task::yield_now().await;
        // Until now only this process knew the job: a worker started again meanwhile would
        // not have found it (as if it had died just before the hand-over).
        if let Err(err) = files.write(&job_dir.dir) {
            eprintln!("cannot write the job's files: {err}");
        }
    }
    let mut state = State {
        job_dir,
        control: control_tx,
        read_lines: 0,
        status: Status::default(),
        step: 0,
        orphaned_since: None,
        fenced: false,
    };
    let mut tick = tokio::time::interval(CONTROL_POLL);
    loop {
        tokio::select! {
            report = events.recv() => match report {
                Some(report) => state.record(&mut spool, report.event),
                // `run_job` has returned: its last event (the end) is written.
                None => break,
            },
            _ = wake.recv() => state.read_control(),
            line = next_line(&mut signals) => match line {
                Some(line) => state.take_control_line(&line),
                // The worker is gone or has let go: signals come by the control file now.
                None => signals = None,
            },
            _ = tick.tick() => {
                state.read_control();
                if let Some(line) = state.fence() {
                    let step = state.step;
                    state.record(&mut spool, JobEvent::Log {
                        step,
                        stream: LogStream::System,
                        data: line.into_bytes(),
                    });
                }
            }
        }
    }
    let _ = job.await;
    Ok(())
}

struct State {
    job_dir: JobDir,
    control: mpsc::Sender<JobControl>,
    /// Control lines already acted on.
    read_lines: usize,
    status: Status,
    /// The step the last event was about (for lines the supervisor writes itself).
    step: u32,
    /// Since when the attached worker process is gone.
    orphaned_since: Option<Instant>,
    /// The job was abandoned because its worker stayed gone.
    fenced: bool,
}

impl State {
    /// Writes one event to the spool (and the status file when a step or the job ended).
    fn record(&mut self, spool: &mut SpoolWriter, event: JobEvent) {
        if let JobEvent::Log { step, .. } | JobEvent::StepFinished { step, .. } = &event {
            self.step = *step;
        }
        if let Err(err) = spool.append(&event) {
            eprintln!("cannot write to the spool: {err}");
        }
        bell::ring();
        if !matches!(event, JobEvent::Log { .. }) {
            self.status.apply(&event);
            if let Err(err) = self.status.write(&self.job_dir.file("status")) {
                eprintln!("cannot write the status file: {err}");
            }
        }
    }

    /// Acts on the control lines added since the last read (complete lines only).
    fn read_control(&mut self) {
        let Ok(text) = std::fs::read_to_string(self.job_dir.file("control")) else {
            return;
        };
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        let lines: Vec<&str> = complete.lines().collect();
        for line in lines.iter().skip(self.read_lines) {
            self.take_control_line(line);
        }
        self.read_lines = self.read_lines.max(lines.len());
    }

    /// Passes one control line (from the file or the pipe) on to the job.
    fn take_control_line(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let control = match (words.next(), words.next()) {
            (Some("drain"), _) => JobControl::Drain,
            (Some("withdraw"), _) => JobControl::Withdraw,
            (Some("abandon"), grace) => JobControl::Abandon {
                grace: grace
                    .and_then(|ms| ms.parse().ok())
                    .map(Duration::from_millis),
            },
            _ => {
                eprintln!("unknown control line {line:?}");
                return;
            }
        };
        if self.control.try_send(control).is_err() {
            eprintln!("the job is not taking signals");
        }
    }

    /// Abandons the job once its worker process has been gone for the lease; returns the line
    /// that says so.
    fn fence(&mut self) -> Option<String> {
        if self.fenced {
            return None;
        }
        let (pid, lease) = self.job_dir.attached()?;
        if process_alive(pid) {
            self.orphaned_since = None;
            return None;
        }
        let since = *self.orphaned_since.get_or_insert_with(Instant::now);
        if since.elapsed() < lease {
            return None;
        }
        self.fenced = true;
        let _ = self.control.try_send(JobControl::Abandon { grace: None });
        Some(format!(
            "the worker process {pid} has been gone for its lease ({}) and none took the job over: abandoning it\n",
            humantime::format_duration(lease)
        ))
    }
}

/// The doorbell: standard output is a pipe the worker that started this supervisor reads; a
/// byte written after each spool record tells it to read the spool now instead of at its next
/// poll. Never blocks and never fails the job: with the pipe full the worker has a ring
/// pending anyway, and with the worker gone (a restarted one has no pipe) the ring is lost and
/// the new worker polls.
mod bell {
    use std::os::fd::AsFd;

    use nix::fcntl::{FcntlArg, OFlag, fcntl};

    /// Makes standard output non-blocking.
    pub fn quiet() {
        let out = std::io::stdout();
        let fd = out.as_fd();
        if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
            let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
            let _ = fcntl(fd, FcntlArg::F_SETFL(flags));
        }
    }

    /// Rings once.
    pub fn ring() {
        let _ = nix::unistd::write(std::io::stdout().as_fd(), b"!");
    }
}

/// The next line from the signal pipe; `None` once it ends; pends forever without one.
async fn next_line(
    signals: &mut Option<Lines<BufReader<tokio::net::unix::pipe::Receiver>>>,
) -> Option<String> {
    match signals.as_mut() {
        Some(lines) => lines.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}
