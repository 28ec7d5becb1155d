//! Where a supervised job keeps what outlives the worker process:
//! `<work_dir>/.baton-jobs/<job>/`, next to the job's own directory `<work_dir>/<job>/` (where
//! its steps run, unchanged).
//!
//! | file | written by | what |
//! |---|---|---|
//! | `job` | worker (*) | the `JobSpec` (protobuf) |
//! | `context` | worker (*) | worker name, then coordinator address, then shell, one a line |
//! | `lock` | supervisor | held with `flock` for the supervisor's whole life |
//! | `pid` | supervisor | its pid, written once its signal handler is in place |
//! | `spool` | supervisor | every event of the job, in order (see `spool.rs`) |
//! | `status` | supervisor | per step exit code and the end (atomic rename) |
//! | `control` | worker | `drain`, `abandon [GRACE_MS]`, `withdraw`, one a line, appended |
//! | `attached` | worker (*) | `PID LEASE_MS`: the worker process the job belongs to now |
//! | `supervisor.log` | supervisor | its own diagnostics |
//!
//! (*) In a directory a standby made ahead (`prepared.rs`) the supervisor writes these, from
//! the hand-over, once the job's first step has started.
//!
//! The worker removes the directory once the coordinator has applied the job's end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use crate::runner::dir_name;

/// The folder, under the work dir, of the supervised jobs' directories.
pub const JOBS_DIR: &str = ".baton-jobs";

/// The files of one supervised job.
#[derive(Debug, Clone)]
pub(crate) struct JobDir {
    pub dir: PathBuf,
}

impl JobDir {
    /// The directory of `job_id` under `work_dir`.
    pub fn new(work_dir: &Path, job_id: &str) -> Self {
        Self {
            dir: work_dir.join(JOBS_DIR).join(dir_name(job_id)),
        }
    }

    /// Every supervised job directory under `work_dir`.
    pub fn all(work_dir: &Path) -> Vec<JobDir> {
        let Ok(entries) = std::fs::read_dir(work_dir.join(JOBS_DIR)) else {
            return Vec::new();
        };
        let mut dirs: Vec<JobDir> = entries
            .filter_map(|e| e.ok())
            // A standby's directory made ahead is no job's (see `prepared.rs`).
            .filter(|e| {
                !e.file_name()
                    .to_string_lossy()
                    .starts_with(crate::prepared::PREFIX)
            })
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .map(|dir| JobDir { dir })
            .collect();
        dirs.sort_by(|a, b| a.dir.cmp(&b.dir));
        dirs
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The work dir this job directory lives under.
    pub fn work_dir(&self) -> Option<&Path> {
        self.dir.parent()?.parent()
    }

    /// True while a supervisor holds the job's lock (it is alive).
    pub fn supervisor_alive(&self) -> bool {
        let Ok(file) = std::fs::File::open(self.file("lock")) else {
            return false;
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            // Taken at once: nobody holds it. Dropping the lock releases it again.
            Ok(_free) => false,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => true,
            Err((_, errno)) => {
                tracing::warn!(dir = %self.dir.display(), %errno, "cannot probe the job's lock");
                false
            }
        }
    }

    /// Takes the job's lock for as long as the returned value lives (the supervisor's side).
    pub fn lock(&self) -> Result<Flock<std::fs::File>, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.file("lock"))
            .map_err(|e| format!("cannot open the lock file: {e}"))?;
        Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| format!("the job's lock is held by another supervisor: {errno}"))
    }

    /// The supervisor's pid, once it can take signals.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.file("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Appends a control line and wakes the supervisor (SIGUSR1, once it takes signals; it
    /// also reads the file on its own every few hundred milliseconds).
    pub fn control(&self, line: &str) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.file("control"))?;
        file.write_all(format!("{line}\n").as_bytes())?;
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGUSR1,
            );
        }
        Ok(())
    }

    /// Says which worker process the job belongs to now, and how long the supervisor should
    /// wait for a new one once that process is gone (`lease`; the old value is kept when
    /// `None`).
    pub fn attach(&self, lease: Option<Duration>) -> std::io::Result<()> {
        let lease = lease.or_else(|| self.attached().map(|(_, lease)| lease));
        crate::spool::write_atomic(&self.file("attached"), attached_line(lease).as_bytes())
    }

    /// The worker pid and lease from `attached`.
    pub fn attached(&self) -> Option<(i32, Duration)> {
        let text = std::fs::read_to_string(self.file("attached")).ok()?;
        let mut words = text.split_whitespace();
        let pid = words.next()?.parse().ok()?;
        let lease = words.next()?.parse().ok()?;
        Some((pid, Duration::from_millis(lease)))
    }
}

/// `attached`'s content for this worker process and `lease` (default [`DEFAULT_LEASE`]).
pub fn attached_line(lease: Option<Duration>) -> String {
    let lease = lease.unwrap_or(DEFAULT_LEASE);
    format!("{} {}\n", std::process::id(), lease.as_millis())
}

/// How long a supervisor waits for a worker that named no lease (the coordinator's default).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// Removes the entries of `dir` named `<prefix><pid>` (or `<prefix><pid>.new`, one still
/// being built) whose process `pid` is gone: what a standby or a worker process made ahead
/// for a next job and left when it ended without one.
pub fn remove_left_by_gone(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let pid = rest.strip_suffix(".new").unwrap_or(rest);
        if pid.parse::<i32>().is_ok_and(|pid| !process_alive(pid)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// True while process `pid` lives (not a zombie).
pub fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|s| s != "Z" && s != "X")
        })
        .unwrap_or(false)
}
