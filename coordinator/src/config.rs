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
        }
    }
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self::new("./.baton")
    }
}
