//! Coordinator settings. Every field says its default.

use std::path::PathBuf;
use std::time::Duration;

/// How a coordinator runs. Build with [`CoordinatorConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Where the sled store lives. Default: `./.baton`.
    pub data_dir: PathBuf,
    /// How often workers must send a heartbeat. Default: 5 s.
    pub heartbeat_interval: Duration,
    /// How long a silent worker keeps its jobs before it is declared lost. Default: 15 s.
    pub lease: Duration,
    /// How long after a worker is declared lost its jobs still count as running: only then do
    /// they end Lost (to be retried or to fail the action) and can their stage lock be
    /// released, unless the worker confirms earlier that they are gone. The worker kills its
    /// own jobs once it has been cut off for its lease; the margin covers clock drift and a
    /// slow kill. Default: 5 s.
    pub lost_margin: Duration,
    /// How long an offered job may stay unanswered before it is taken back. Default: 5 s.
    pub offer_timeout: Duration,
    /// Largest gRPC message accepted, in bytes. Default: 4 MiB.
    pub max_message_bytes: usize,
    /// How often timers (approval timeouts) are checked against the clock. Default: 1 s.
    pub timer_tick: Duration,
    /// Most bytes of one job's log that are kept; the tail beyond is dropped and the log ends
    /// with a line saying so. Default: 64 MiB.
    pub log_cap_bytes: u64,
    /// What happens to finished executions over time. Default: see [`Retention`].
    pub retention: Retention,
    /// Where [`crate::run`] serves the dashboard and `/metrics` over HTTP; `None` serves no HTTP.
    /// Default: `None` (the `baton-coordinator` binary's `--http-addr` defaults to
    /// `127.0.0.1:7412`).
    pub http_addr: Option<String>,
    /// After it is told to stop, how long the coordinator keeps its port open reporting
    /// NOT_SERVING (gRPC health) before it closes, so load balancers move clients away first.
    /// Default: 0 s.
    pub drain_grace: Duration,
}

/// How long finished executions (with their jobs, logs and events) are kept. Executions that
/// have not ended are never removed. An execution goes when either limit says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Remove finished executions whose last change is older than this. `None` keeps them
    /// regardless of age. Default: 30 days.
    pub max_age: Option<Duration>,
    /// Keep at most this many newest executions per pipeline (older finished ones go).
    /// `None` keeps any number. Default: 1,000.
    pub keep_per_pipeline: Option<usize>,
    /// How often the background sweep runs (the first one runs at start). Default: 10 min.
    pub interval: Duration,
    /// Most deletions per store batch, so that the sweep never holds the store writer for
    /// long. Default: 256.
    pub batch_ops: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Some(Duration::from_secs(30 * 24 * 3600)),
            keep_per_pipeline: Some(1000),
            interval: Duration::from_secs(600),
            batch_ops: 256,
        }
    }
}

impl CoordinatorConfig {
    /// Defaults with the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            heartbeat_interval: Duration::from_secs(5),
            lease: Duration::from_secs(15),
            lost_margin: Duration::from_secs(5),
            offer_timeout: Duration::from_secs(5),
            max_message_bytes: 4 * 1024 * 1024,
            timer_tick: Duration::from_secs(1),
            log_cap_bytes: 64 * 1024 * 1024,
            retention: Retention::default(),
            http_addr: None,
            drain_grace: Duration::ZERO,
        }
    }
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self::new("./.baton")
    }
}
