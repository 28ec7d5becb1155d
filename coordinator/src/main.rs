//! `baton-coordinator`: loads its settings (flags > `BATON_*` > `--config` file > defaults),
//! checks them before binding anything, sets up logging, and serves until SIGTERM or Ctrl-C.
//! `baton-coordinator backup|restore|bench` are maintenance commands with flags of their own.

use std::path::PathBuf;

/// mimalloc: the coordinator allocates and frees many small records across threads (actors,
/// gRPC, the store writer); measured with `baton-bench throughput`, it spends far less time
/// in the allocator than with the system's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use baton_coordinator::CoordinatorConfig;
use baton_settings::{ConfigError, Loaded};
use clap::{Parser, Subcommand};

fn command() -> clap::Command {
    clap::Command::new("baton-coordinator")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Baton's coordinator: pipelines, stage locks and the worker fleet, over gRPC.")
        .after_help(
            "Every setting can also come from a BATON_* variable or a TOML file (--config); flags win over variables, variables over the file, the file over defaults. Logs follow RUST_LOG (default info).\n\nMaintenance commands (each with its own --help): `baton-coordinator backup`, `baton-coordinator restore`, `baton-coordinator bench`.",
        )
}

fn load() -> Result<CoordinatorConfig, ConfigError> {
    let loaded: Loaded<CoordinatorConfig> = baton_settings::load(command())?;
    if let Err((key, why)) = loaded.settings.validate() {
        return Err(loaded.invalid(key, why));
    }
    Ok(loaded.settings)
}

/// `baton-coordinator backup|restore|bench ...`.
#[derive(Parser, Debug)]
#[command(name = "baton-coordinator", version)]
struct Maintenance {
    #[command(subcommand)]
    command: Command,
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
    let first = std::env::args().nth(1);
    if matches!(first.as_deref(), Some("backup" | "restore" | "bench")) {
        return admin(Maintenance::parse().command);
    }
    let config = match load() {
        Ok(config) => config,
        Err(err) => err.exit(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if config.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    if config.lock_code {
        baton_resident::lock_code_and_log();
    }
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
        let listener = match tokio::net::TcpListener::bind(&config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", config.listen);
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
        let tls = config.tls_cert_file.is_some();
        tracing::info!(addr = %config.listen, tls, "baton-coordinator listening");
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
