//! Whether the worker and its job supervisors keep their code in memory (`lock_code`, see
//! `baton_resident`). A supervisor is told the worker's choice in [`LOCK_ENV`].

use std::sync::atomic::{AtomicBool, Ordering};

/// The variable a supervisor reads the worker's `lock_code` from (also the worker's own).
pub const LOCK_ENV: &str = "BATON_WORKER_LOCK_CODE";

static LOCK: AtomicBool = AtomicBool::new(true);

/// The worker's start: remembers `enabled` for its supervisors and, when set, locks its own
/// code (one log line says how much) and the program of its `shell` (`sh` of `sh -c`, found on
/// PATH), which every step starts: the first job after a quiet spell then finds it in memory.
pub fn lock_worker(enabled: bool, shell_program: Option<&str>) {
    LOCK.store(enabled, Ordering::Relaxed);
    if !enabled {
        return;
    }
    let code = baton_resident::lock_code_and_log();
    let Some(path) = shell_program.and_then(crate::cgroup_spawn::program_on_path) else {
        return;
    };
    match baton_resident::lock_file(&path) {
        Ok(bytes) => tracing::info!(
            path = %path.display(),
            kib = bytes / 1024,
            "the steps' shell locked in memory"
        ),
        // Said once already when the code itself did not all fit.
        Err(err) if code.error.is_some() => {
            tracing::debug!(path = %path.display(), %err, "the steps' shell not locked")
        }
        Err(err) => tracing::warn!(
            path = %path.display(),
            %err,
            "the steps' shell could not be locked in memory (memlock limit?)"
        ),
    }
}

/// What a supervisor is told in [`LOCK_ENV`].
pub fn for_supervisor() -> &'static str {
    if LOCK.load(Ordering::Relaxed) {
        "true"
    } else {
        "false"
    }
}

/// A supervisor's start: locks its code unless its worker said `false`. Its log is the job's
/// `supervisor.log`, so a limit that stops it short is said there at debug level only.
pub fn lock_supervisor() {
    if std::env::var(LOCK_ENV).is_ok_and(|v| v == "false") {
        return;
    }
    let locked = baton_resident::lock_code();
    tracing::debug!("{}", locked.describe());
}
