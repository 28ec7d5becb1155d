//! `baton-coordinator`: parses flags, sets up logging, and serves until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use baton_coordinator::CoordinatorConfig;
use clap::{Parser, Subcommand};

/// Baton's coordinator: pipelines, stage locks and the worker fleet, over gRPC.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Without a command: serve.
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "BATON_LISTEN", default_value = "127.0.0.1:7411")]
    listen: String,
    /// Where the store lives.
    #[arg(long, env = "BATON_DATA_DIR", default_value = "./.baton")]
    data_dir: PathBuf,
    /// How long a silent worker keeps its jobs before it is declared lost.
    #[arg(long, env = "BATON_LEASE", default_value = "15s", value_parser = humantime::parse_duration)]
    lease: Duration,
    /// How long after a worker is declared lost its jobs still count as running (and hold
    /// their stage lock).
    #[arg(long, env = "BATON_LOST_MARGIN", default_value = "5s", value_parser = humantime::parse_duration)]
    lost_margin: Duration,
    /// How often workers send a heartbeat.
    #[arg(long, env = "BATON_HEARTBEAT", default_value = "5s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Most bytes of one job's log kept; the rest is dropped with a marker line (e.g. 64MiB).
    #[arg(long, env = "BATON_LOG_CAP", default_value = "64MiB", value_parser = parse_size)]
    log_cap: u64,
    /// Remove finished executions older than this (`0s`: keep regardless of age).
    #[arg(long, env = "BATON_RETAIN_FOR", default_value = "30days", value_parser = humantime::parse_duration)]
    retain_for: Duration,
    /// Keep at most this many newest executions per pipeline (0: any number).
    #[arg(long, env = "BATON_RETAIN_PER_PIPELINE", default_value_t = 1000)]
    retain_per_pipeline: usize,
    /// Address of the HTTP port: web dashboard and Prometheus `/metrics` ("" serves no HTTP).
    #[arg(long, env = "BATON_HTTP_ADDR", default_value = "127.0.0.1:7412")]
    http_addr: String,
    /// After SIGTERM, how long to keep the port open reporting NOT_SERVING before closing.
    #[arg(long, env = "BATON_DRAIN_GRACE", default_value = "0s", value_parser = humantime::parse_duration)]
    drain_grace: Duration,
    /// Log format: text or json (filter with RUST_LOG, e.g. `RUST_LOG=baton_coordinator=debug`).
    #[arg(long, env = "BATON_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// Store maintenance and measurements.
#[derive(Subcommand, Debug)]
enum Command {
    /// Copies the whole store into one file; online when a coordinator runs on it.
    Backup {
        /// The store to back up.
        #[arg(long)]
        data_dir: PathBuf,
        /// The backup file to write (replaced if it exists).
        #[arg(long)]
        out: PathBuf,
        /// The coordinator to ask when it is running on the store.
        #[arg(long, env = "BATON_ADDR", default_value = "http://127.0.0.1:7411")]
        addr: String,
    },
    /// Builds a new store from a backup file.
    Restore {
        /// The backup file.
        #[arg(long = "in")]
        input: PathBuf,
        /// Where to build the store: a new or empty directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Measures the store: transitions/s (group commit vs a flush per write), start latency,
    /// start-up time with a large history. Prints figures; uses a scratch directory.
    Bench {
        /// Finished executions in the store for the start-up figure.
        #[arg(long, default_value_t = 100_000)]
        executions: usize,
        /// Pipelines they belong to.
        #[arg(long, default_value_t = 1_000)]
        pipelines: usize,
        /// StartPipelineExecution calls per latency figure.
        #[arg(long, default_value_t = 400)]
        starts: usize,
    },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(command) = args.command {
        return admin(command);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let mut config = CoordinatorConfig::new(&args.data_dir);
    config.lease = args.lease;
    config.lost_margin = args.lost_margin;
    config.heartbeat_interval = args.heartbeat;
    config.log_cap_bytes = args.log_cap;
    config.retention.max_age = (!args.retain_for.is_zero()).then_some(args.retain_for);
    config.retention.keep_per_pipeline =
        (args.retain_per_pipeline > 0).then_some(args.retain_per_pipeline);
    config.drain_grace = args.drain_grace;
    config.http_addr = Some(args.http_addr.clone()).filter(|a| !a.is_empty());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return std::process::ExitCode::FAILURE;
            }
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            trigger.cancel();
        });
        tracing::info!(addr = %args.listen, "baton-coordinator listening");
        match baton_coordinator::run(config, listener, shutdown).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Runs a maintenance command; prints one line of result or of error.
fn admin(command: Command) -> std::process::ExitCode {
    use baton_coordinator::backup;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let done = runtime.block_on(async move {
        match command {
            Command::Backup { data_dir, out, addr } => {
                backup::backup(&data_dir, &out, &addr)
                    .await
                    .map(|(s, taken)| {
                        let how = match taken {
                            backup::Taken::Offline => "read directly (no coordinator was using it)",
                            backup::Taken::Online => "written by the running coordinator between two store batches",
                        };
                        format!(
                            "backed up {} entries ({} bytes, schema version {}) of {} to {}: {how}",
                            s.entries,
                            s.bytes,
                            s.schema_version.map_or("none".into(), |v| v.to_string()),
                            data_dir.display(),
                            out.display()
                        )
                    })
                    .map_err(|e| e.to_string())
            }
            Command::Bench {
                executions,
                pipelines,
                starts,
            } => baton_coordinator::bench::run(baton_coordinator::bench::BenchConfig {
                executions,
                pipelines,
                starts,
                ..Default::default()
            })
            .await
            .map(|()| "bench done".to_string())
            .map_err(|e| e.to_string()),
            Command::Restore { input, data_dir } => backup::restore_dir(&input, &data_dir).map(|s| {
                format!(
                    "restored {} entries ({} bytes, schema version {}) from {} into {}; start with --data-dir {}",
                    s.entries,
                    s.bytes,
                    s.schema_version.map_or("none".into(), |v| v.to_string()),
                    input.display(),
                    data_dir.display(),
                    data_dir.display()
                )
            })
            .map_err(|e| e.to_string()),
        }
    });
    match done {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `64MiB`, `512KiB`, `1GiB` or a number of bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write e.g. 64MiB, 512KiB or 1048576"))?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?}; use KiB, MiB or GiB")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}
