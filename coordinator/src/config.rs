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
    /// How long an offered job may stay unanswered before it is taken back. Default: 5 s.
    pub offer_timeout: Duration,
    /// Largest gRPC message accepted, in bytes. Default: 4 MiB.
    pub max_message_bytes: usize,
    /// Where [`crate::run`] serves the dashboard and `/metrics` over HTTP; `None` serves no HTTP.
    /// Default: `None` (the `baton-coordinator` binary's `--http-addr` defaults to
    /// `127.0.0.1:7412`).
    pub http_addr: Option<String>,
    /// After it is told to stop, how long the coordinator keeps its port open reporting
    /// NOT_SERVING (gRPC health) before it closes, so load balancers move clients away first.
    /// Default: 0 s.
    pub drain_grace: Duration,
}

impl CoordinatorConfig {
    /// Defaults with the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            heartbeat_interval: Duration::from_secs(5),
            lease: Duration::from_secs(15),
            offer_timeout: Duration::from_secs(5),
            max_message_bytes: 4 * 1024 * 1024,
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
