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

/// The default command that runs each step (see [`WorkerConfig::shell`]).
pub const DEFAULT_SHELL: &str = "sh -c";

/// The default coordinator address.
pub const DEFAULT_COORDINATOR: &str = "http://127.0.0.1:7411";

baton_settings::settings! {
    /// Everything a worker needs to know to join a coordinator. Each entry is also a flag
    /// (`--slots`), a variable (`BATON_WORKER_SLOTS`) and a key of the `--config` TOML file;
    /// flags win over variables, variables over the file, the file over defaults.
    pub struct WorkerConfig {
        /// Coordinator URL; `https://` turns TLS on. Default: `http://127.0.0.1:7411`.
        coordinator: String = DEFAULT_COORDINATOR.to_string(), env "BATON_COORDINATOR";
        /// Unique worker name, its identity across reconnects. Default: the host name.
        name: String = hostname(), env "BATON_WORKER_NAME";
        /// Labels jobs are matched against, `key=value` (repeat `--label`, or comma-separate). Default: `os=linux`.
        labels: BTreeMap<String, String> =
            BTreeMap::from([("os".to_string(), "linux".to_string())]), env "BATON_WORKER_LABELS";
        /// How many jobs run at once. Default: 1.
        slots: u32 = 1, env "BATON_WORKER_SLOTS";
        /// Registration token, when the coordinator requires one. Default: empty.
        token: String = String::new(), env "BATON_WORKER_TOKEN", secret;
        /// Jobs run in `work_dir/<job_id>`. Default: `./.baton-worker`.
        work_dir: PathBuf = PathBuf::from("./.baton-worker"), env "BATON_WORK_DIR";
        /// First wait before reconnecting; doubles on each failure up to 30 s. Default: 1 s.
        reconnect_backoff: Duration = Duration::from_secs(1), env "BATON_RECONNECT_BACKOFF";
        /// How often the worker pings the connection (HTTP/2 keepalive); with `keepalive_timeout` this bounds how long a cut network goes unnoticed, after which the lease starts to run out. Default: 10 s.
        keepalive_interval: Duration = Duration::from_secs(10), env "BATON_KEEPALIVE_INTERVAL";
        /// How long a keepalive ping may go unanswered before the connection counts as lost. Default: 5 s.
        keepalive_timeout: Duration = Duration::from_secs(5), env "BATON_KEEPALIVE_TIMEOUT";
        /// CA (PEM) the coordinator's certificate must be signed by (for `https://`). Default: none.
        ca_file: Option<PathBuf> = None, env "BATON_CA_FILE";
        /// Client certificate (PEM) for mutual TLS. Default: none.
        cert_file: Option<PathBuf> = None, env "BATON_CERT_FILE";
        /// Client private key (PEM) for mutual TLS. Default: none.
        key_file: Option<PathBuf> = None, env "BATON_KEY_FILE";
        /// Run each job under a supervisor process (`baton-worker supervise`) that outlives the worker, so a worker restarted within its lease re-attaches its running jobs with complete logs. `false` runs jobs inside the worker process: they start sooner (see the README's figures) but die with it. Default: true.
        supervise_jobs: bool = true, env "BATON_WORKER_SUPERVISE_JOBS";
        /// The command that runs each step, split on spaces, the step's text appended as its last argument: `bash -e -o pipefail -c` gives steps bash and stops a step at its first failing command. Default: `sh -c`.
        shell: String = DEFAULT_SHELL.to_string(), env "BATON_WORKER_SHELL";
        /// Log format: `text` or `json` (filter with `RUST_LOG`, e.g. `RUST_LOG=baton_worker=debug`). Default: text.
        log_format: String = "text".to_string(), env "BATON_LOG_FORMAT";
        /// Lock the code of the worker and of its job supervisors in memory (`mlock2`, a page once it is first used), and the whole program of `shell` (e.g. `/bin/sh`), so that a host that pages out memory left idle (DAMON, a balloon, `memory.reclaim`) cannot make the first job or cancel after a quiet spell read that code back from disk. Needs a memlock limit as large as the binary (`ulimit -l`); with less, part is locked and a warning says what to raise. Default: true.
        lock_code: bool = true, env "BATON_WORKER_LOCK_CODE";
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
        if self.log_format != "text" && self.log_format != "json" {
            return Err(WorkerError::Config(format!(
                "`log_format` is `{}`: use text or json",
                self.log_format
            )));
        }
        if self.shell_words().is_empty() {
            return Err(WorkerError::Config(
                "`shell` is empty: use a command such as `sh -c` or `bash -e -c`".into(),
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
        self.client_tls().map(|_| ())
    }

    /// [`WorkerConfig::shell`] as a program and its arguments.
    pub fn shell_words(&self) -> Vec<String> {
        shell_words(&self.shell)
    }

    /// The rustls client config when the coordinator URL is `https://`.
    pub fn client_tls(&self) -> Result<Option<tonic::transport::ClientTlsConfig>, WorkerError> {
        let tls = self.coordinator.trim().starts_with("https://");
        let any_file =
            self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some();
        if !tls {
            return match any_file {
                true => Err(WorkerError::Config(format!(
                    "TLS files are set but the coordinator URL {} is not https://",
                    self.coordinator
                ))),
                false => Ok(None),
            };
        }
        baton_settings::tls::client_config(
            self.ca_file.as_deref(),
            self.cert_file.as_deref(),
            self.key_file.as_deref(),
        )
        .map(Some)
        .map_err(|e| WorkerError::Config(e.to_string()))
    }
}

/// A `shell` setting as a program and its arguments (split on whitespace; no quoting).
pub fn shell_words(shell: &str) -> Vec<String> {
    shell.split_whitespace().map(str::to_string).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_splits_on_whitespace_and_an_empty_one_is_refused() {
        let mut config = WorkerConfig {
            shell: "  bash -e\t-o pipefail -c ".into(),
            ..WorkerConfig::default()
        };
        assert_eq!(config.shell_words(), ["bash", "-e", "-o", "pipefail", "-c"]);
        assert!(config.validate().is_ok());
        config.shell = "   ".into();
        let err = config.validate().expect_err("empty shell").to_string();
        assert!(err.contains("`shell` is empty"), "{err}");
        assert_eq!(WorkerConfig::default().shell_words(), ["sh", "-c"]);
    }
}
