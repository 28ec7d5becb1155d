//! Coordinator settings: declared once below; each line gives the field, its default, its
//! `BATON_*` variable, and (from the name) its flag `--the-name` and TOML key `the_name`.
//! Adding a setting is adding one entry here (plus a check in `validate` if it needs one, and a
//! row in the README's settings table); the types that work are those with a
//! `baton_settings::Setting` impl (text, paths, counts, durations, sizes, addresses, labels). Precedence: flags > environment > `--config`
//! file > defaults. [`CoordinatorConfig::validate`] runs before any port is bound.

use std::path::PathBuf;
use std::time::Duration;

baton_settings::settings! {
    /// How a coordinator runs. Build with [`CoordinatorConfig::new`] and adjust fields.
    pub struct CoordinatorConfig {
        /// Address to serve gRPC on. Default: `127.0.0.1:7411`.
        listen: String = "127.0.0.1:7411".to_string(), env "BATON_LISTEN";
        /// Where the sled store lives. Default: `./.baton`.
        data_dir: PathBuf = PathBuf::from("./.baton"), env "BATON_DATA_DIR";
        /// How often workers must send a heartbeat. Default: 5 s.
        heartbeat_interval: Duration = Duration::from_secs(5), env "BATON_HEARTBEAT_INTERVAL";
        /// How long a silent worker keeps its jobs before it is declared lost. Default: 15 s.
        lease: Duration = Duration::from_secs(15), env "BATON_LEASE";
        /// How long an offered job may stay unanswered before it is taken back. Default: 5 s.
        offer_timeout: Duration = Duration::from_secs(5), env "BATON_OFFER_TIMEOUT";
        /// How long after a worker is declared lost its jobs still count as running (and hold
        /// their stage lock): the worker kills them itself once cut off for its lease. Default: 5 s.
        lost_margin: Duration = Duration::from_secs(5), env "BATON_LOST_MARGIN";
        /// How often timers (approval timeouts) are checked against the clock. Default: 1 s.
        timer_tick: Duration = Duration::from_secs(1), env "BATON_TIMER_TICK";
        /// Most bytes of one job's log that are kept; the tail beyond is dropped and the log ends with a line saying so. Default: 64 MiB.
        log_cap_bytes: usize = 64 << 20, env "BATON_LOG_CAP_BYTES";
        /// Remove finished executions whose last change is older than this; `0s` keeps them regardless of age. Default: 30 days.
        retain_for: Duration = Duration::from_secs(30 * 24 * 3600), env "BATON_RETAIN_FOR";
        /// Keep at most this many newest executions per pipeline (older finished ones go); 0 keeps any number. Default: 1000.
        retain_per_pipeline: u32 = 1000, env "BATON_RETAIN_PER_PIPELINE";
        /// Address of the HTTP port: the web dashboard and Prometheus `/metrics`; empty serves no HTTP. Default: `127.0.0.1:7412` (none with [`CoordinatorConfig::new`]).
        http_addr: Option<String> = Some("127.0.0.1:7412".to_string()), env "BATON_HTTP_ADDR";
        /// After it is told to stop, how long the coordinator keeps its port open reporting NOT_SERVING (gRPC health) before it closes, so load balancers move clients away first. Default: 0 s.
        drain_grace: Duration = Duration::ZERO, env "BATON_DRAIN_GRACE";
        /// Log format: `text` or `json`. Default: text.
        log_format: String = "text".to_string(), env "BATON_LOG_FORMAT";
        /// Lock the coordinator's code in memory (`mlock2`, a page once it is first used), so that a host that pages out memory left idle (DAMON, a balloon, `memory.reclaim`) cannot make the first request after a quiet spell read the request path back from disk. Needs a memlock limit as large as the binary (`ulimit -l`); with less, part is locked and a warning says what to raise. Default: true.
        lock_code: bool = true, env "BATON_LOCK_CODE";
        /// Server certificate (PEM); with `tls_key_file`, serves TLS only. Default: none (plaintext).
        tls_cert_file: Option<PathBuf> = None, env "BATON_TLS_CERT_FILE";
        /// Server private key (PEM). Default: none.
        tls_key_file: Option<PathBuf> = None, env "BATON_TLS_KEY_FILE";
        /// CA (PEM) that signs worker client certificates; when set, workers must present one (mutual TLS). Needs TLS. Default: none.
        worker_ca_file: Option<PathBuf> = None, env "BATON_WORKER_CA_FILE";
        /// Token workers must present when they register. Default: none (any worker may join).
        worker_token: String = String::new(), env "BATON_WORKER_TOKEN", secret;
        /// Token clients must present (`authorization: Bearer`) for PipelineService calls. Default: none (open).
        api_token: String = String::new(), env "BATON_API_TOKEN", secret;
        /// Largest gRPC message accepted or sent. Default: 4 MiB.
        max_message_bytes: usize = 4 << 20, env "BATON_MAX_MESSAGE_BYTES";
        /// Largest log chunk a worker may send; longer ones are cut with a note in the log. Default: 64 KiB.
        max_log_chunk_bytes: usize = 64 << 10, env "BATON_MAX_LOG_CHUNK_BYTES";
        /// Most pipelines the coordinator stores; PutPipeline of a new one beyond it is refused. Default: 1000.
        max_pipelines: u32 = 1000, env "BATON_MAX_PIPELINES";
        /// Most stages in one pipeline file. Default: 100.
        max_stages: u32 = 100, env "BATON_MAX_STAGES";
        /// Most actions in one pipeline file (all stages together). Default: 500.
        max_actions: u32 = 500, env "BATON_MAX_ACTIONS";
        /// Most concurrent gRPC streams on one connection (a worker's, or a client's). Default: 100.
        max_streams_per_connection: u32 = 100, env "BATON_MAX_STREAMS_PER_CONNECTION";
    }
}

impl CoordinatorConfig {
    /// Defaults with the given data directory, and no HTTP port (an embedding program or a
    /// test passes its own listener to [`crate::run_with_listeners`]).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            http_addr: None,
            ..Self::default()
        }
    }

    /// The retention policy for finished executions, from `retain_for` and
    /// `retain_per_pipeline` (the sweep's interval and batch size keep their defaults).
    pub fn retention(&self) -> Retention {
        Retention {
            max_age: (!self.retain_for.is_zero()).then_some(self.retain_for),
            keep_per_pipeline: (self.retain_per_pipeline > 0)
                .then_some(self.retain_per_pipeline as usize),
            ..Retention::default()
        }
    }

    /// Checks everything that can be checked before a port is bound, including that the TLS
    /// files can be read. The error names the setting (`key`) and says what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("heartbeat_interval", self.heartbeat_interval.is_zero()),
            ("lease", self.lease.is_zero()),
            ("offer_timeout", self.offer_timeout.is_zero()),
            ("timer_tick", self.timer_tick.is_zero()),
            ("log_cap_bytes", self.log_cap_bytes == 0),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, zero)| *zero) {
            return Err((key, "must be greater than zero".into()));
        }
        if self.heartbeat_interval >= self.lease {
            return Err((
                "heartbeat_interval",
                format!(
                    "{} is not shorter than the lease ({}): workers would be declared lost between heartbeats",
                    humantime::format_duration(self.heartbeat_interval),
                    humantime::format_duration(self.lease)
                ),
            ));
        }
        if self.log_format != "text" && self.log_format != "json" {
            return Err((
                "log_format",
                format!("`{}` is not text or json", self.log_format),
            ));
        }
        let counts = [
            ("max_pipelines", self.max_pipelines),
            ("max_stages", self.max_stages),
            ("max_actions", self.max_actions),
            (
                "max_streams_per_connection",
                self.max_streams_per_connection,
            ),
        ];
        if let Some((key, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err((key, "must be at least 1".into()));
        }
        if self.max_message_bytes < 64 << 10 {
            return Err(("max_message_bytes", "must be at least 64KiB".into()));
        }
        if self.max_log_chunk_bytes == 0 || self.max_log_chunk_bytes > self.max_message_bytes {
            return Err((
                "max_log_chunk_bytes",
                "must be between 1 byte and max_message_bytes".into(),
            ));
        }
        self.server_tls().map(|_| ())
    }

    /// The rustls server config, when TLS is on.
    pub fn server_tls(
        &self,
    ) -> Result<Option<tonic::transport::ServerTlsConfig>, (&'static str, String)> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => {
                baton_settings::tls::server_config(cert, key, self.worker_ca_file.as_deref())
                    .map(Some)
                    .map_err(|e| (e.setting, e.message))
            }
            (None, None) if self.worker_ca_file.is_some() => Err((
                "worker_ca_file",
                "mutual TLS needs TLS: set tls_cert_file and tls_key_file too".into(),
            )),
            (None, None) => Ok(None),
            (Some(_), None) => Err((
                "tls_key_file",
                "needed with tls_cert_file: set both, or neither for plaintext".into(),
            )),
            (None, Some(_)) => Err((
                "tls_cert_file",
                "needed with tls_key_file: set both, or neither for plaintext".into(),
            )),
        }
    }
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
