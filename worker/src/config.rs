//! Worker configuration and shutdown handles.
//!
//! [`WorkerConfig`] is plain data, filled by `main.rs` from flags or by tests directly, and checked
//! by [`WorkerConfig::validate`] before anything connects. [`Shutdown`] is how the owner of a
//! running worker asks it to stop: drain first, abandon if that takes too long.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::WorkerError;

/// Everything a worker needs to know to join a coordinator.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Coordinator URL. Default: `http://127.0.0.1:7411`.
    pub coordinator: String,
    /// Unique worker name, its identity across reconnects. Default: the host name.
    pub name: String,
    /// Labels jobs are matched against. Default: `{"os": "linux"}`.
    pub labels: BTreeMap<String, String>,
    /// How many jobs run at once. Default: 1.
    pub slots: u32,
    /// Registration token, when the coordinator requires one. Default: empty.
    pub token: String,
    /// Jobs run in `work_dir/<job_id>`. Default: `./.baton-worker`.
    pub work_dir: PathBuf,
    /// First wait before reconnecting; doubles on each failure up to 30 s. Default: 1 s.
    pub reconnect_backoff: Duration,
}

/// The default coordinator address.
pub const DEFAULT_COORDINATOR: &str = "http://127.0.0.1:7411";

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            coordinator: DEFAULT_COORDINATOR.to_string(),
            name: hostname(),
            labels: BTreeMap::from([("os".to_string(), "linux".to_string())]),
            slots: 1,
            token: String::new(),
            work_dir: PathBuf::from("./.baton-worker"),
            reconnect_backoff: Duration::from_secs(1),
        }
    }
}

impl WorkerConfig {
    /// Checks the fields that would otherwise fail later and less clearly.
    pub fn validate(&self) -> Result<(), WorkerError> {
        if self.name.trim().is_empty() {
            return Err(WorkerError::Config(
                "`name` is empty: pass --name or set a host name".into(),
            ));
        }
        if self.slots == 0 {
            return Err(WorkerError::Config(
                "`slots` is 0: a worker needs at least one slot".into(),
            ));
        }
        if self.reconnect_backoff.is_zero() {
            return Err(WorkerError::Config(
                "`reconnect_backoff` is 0: use at least a few milliseconds".into(),
            ));
        }
        Ok(())
    }
}

/// The machine's host name, or `baton-worker` when it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "baton-worker".to_string())
}

/// How the owner of a running worker asks it to stop.
///
/// Cancel `drain` to stop taking jobs, let running ones finish, say goodbye and return. Cancel
/// `abandon` (with or without `drain`) to also abandon the jobs still running.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stop taking jobs; finish the running ones in full.
    pub drain: CancellationToken,
    /// Abandon the running jobs (SIGTERM, grace, SIGKILL), report, and leave.
    pub abandon: CancellationToken,
}

impl Shutdown {
    /// Two fresh, uncancelled tokens.
    pub fn new() -> Self {
        Self::default()
    }
}
