//! Per-step cgroups (v2), where the worker may create them: every process a step starts stays
//! in the step's cgroup even after `setsid` (which leaves the process group), and
//! `cgroup.kill` ends them all at once.
//!
//! Found at start: the cgroup2 mount from `/proc/self/mounts`, the worker's own cgroup from
//! `/proc/self/cgroup` (`0::/path`). If a probe directory cannot be created there, or has no
//! `cgroup.kill` (Linux < 5.14), cgroups are not used and killing relies on process groups alone.
//! This module never fails a job: without a cgroup a step simply runs without one.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where the worker creates step cgroups, if anywhere.
fn base() -> Option<&'static Path> {
    static BASE: OnceLock<Option<PathBuf>> = OnceLock::new();
    BASE.get_or_init(|| {
        // A job's supervisor is told by its worker, which probed once, instead of probing
        // (a cgroup mkdir and rmdir) again for every job.
        if let Some(told) = std::env::var_os(BASE_ENV) {
            return (!told.is_empty()).then(|| PathBuf::from(told));
        }
        let found = detect();
        match &found {
            Some(dir) => tracing::info!(dir = %dir.display(), "per-step cgroups (v2) in use"),
            None => tracing::info!(
                "no writable cgroup v2 with cgroup.kill: killing relies on process groups"
            ),
        }
        found
    })
    .as_deref()
}

/// The environment variable that hands the worker's finding to a job's supervisor: the
/// directory, or empty for none.
pub const BASE_ENV: &str = "BATON_STEP_CGROUP_BASE";

/// What a job's supervisor is told in [`BASE_ENV`].
pub fn base_for_supervisor() -> std::ffi::OsString {
    base().map(|b| b.as_os_str().to_owned()).unwrap_or_default()
}

/// True when steps run in their own cgroup (a `setsid` grandchild cannot escape a kill).
pub fn available() -> bool {
    base().is_some()
}

fn detect() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let mount = mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir))
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let base = mount.join(rel.trim_start_matches('/'));
    let probe = base.join(format!("baton-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    let usable = probe.join("cgroup.kill").exists() && probe.join("cgroup.procs").exists();
    let _ = std::fs::remove_dir(&probe);
    if usable {
        remove_left_behind(&base);
    }
    usable.then_some(base)
}

/// True while any process is in the cgroup at `dir`.
fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|events| events.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// Removes the empty step cgroups of processes that are gone (a worker or supervisor killed
/// before it could remove its step's cgroup leaves one behind). A populated one is left
/// alone: its processes are someone's running step (or need a person to look at them).
fn remove_left_behind(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let owner = name
            .to_str()
            .and_then(|n| n.strip_prefix("baton-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok());
        let Some(owner) = owner else {
            continue;
        };
        if owner == std::process::id() as i32 || crate::job_dir::process_alive(owner) {
            continue;
        }
        let dir = entry.path();
        if !populated(&dir) && std::fs::remove_dir(&dir).is_ok() {
            tracing::info!(dir = %dir.display(), "removed a step cgroup left behind");
        }
    }
}

/// One step's cgroup. Removed when dropped (once empty).
#[derive(Debug)]
pub struct StepCgroup {
    dir: PathBuf,
}

impl StepCgroup {
    /// Creates a cgroup for step `index` of job `job_id`, or `None` where cgroups are not used.
    pub fn create(job_id: &str, index: u32) -> Option<StepCgroup> {
        // Unique per step even when one process runs several workers (`baton up`, tests).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("baton-{}-{n}-{job_id}-{index}", std::process::id());
        let dir = base()?.join(name);
        if let Err(err) = std::fs::create_dir(&dir) {
            tracing::warn!(dir = %dir.display(), %err, "cannot create a step cgroup; running without");
            return None;
        }
        Some(StepCgroup { dir })
    }

    /// The cgroup's directory (a step's shell is started straight into it where the kernel
    /// allows, see `cgroup_spawn.rs`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a process writes `0` to in order to move itself into the cgroup. Where a
    /// step's shell cannot be started inside, a wrapper shell does that before it runs the
    /// command (`echo 0 > cgroup.procs; exec sh -c ...`), so everything the command starts is
    /// inside from its first instruction either way.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// True while any process is in the cgroup.
    pub fn populated(&self) -> bool {
        populated(&self.dir)
    }

    /// SIGKILL to every process in the cgroup, wherever its session or group.
    pub fn kill(&self) {
        if let Err(err) = std::fs::write(self.dir.join("cgroup.kill"), b"1") {
            tracing::warn!(dir = %self.dir.display(), %err, "cgroup.kill failed");
        }
    }

    /// The pids in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }
}

impl Drop for StepCgroup {
    /// Kills what is left and removes the directory (the runner waits for the cgroup to empty
    /// before it drops it, so the removal normally succeeds at once).
    fn drop(&mut self) {
        if self.populated() {
            self.kill();
        }
        if let Err(err) = std::fs::remove_dir(&self.dir)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), %err, "step cgroup left behind");
        }
    }
}
