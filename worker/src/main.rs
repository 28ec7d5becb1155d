//! `baton-worker`: parses flags, sets up logging, turns SIGTERM/SIGINT into a drain (the first)
//! and an abandon (the second), and runs [`baton_worker::run`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use baton_worker::{Shutdown, WorkerConfig, config::DEFAULT_COORDINATOR};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Runs Baton jobs offered by a coordinator.
#[derive(Debug, Parser)]
#[command(name = "baton-worker", version, about)]
struct Args {
    /// Coordinator URL.
    #[arg(long, env = "BATON_COORDINATOR", default_value = DEFAULT_COORDINATOR)]
    coordinator: String,
    /// Worker name, unique in the fleet. Default: the host name.
    #[arg(long)]
    name: Option<String>,
    /// A label jobs are matched against, as key=value; repeatable. Default: os=linux.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// How many jobs run at once.
    #[arg(long, default_value_t = 1)]
    slots: u32,
    /// Registration token.
    #[arg(
        long,
        env = "BATON_WORKER_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    token: String,
    /// Jobs run in WORK_DIR/<job id>.
    #[arg(long, default_value = "./.baton-worker")]
    work_dir: PathBuf,
    /// Log format: text or json (filter with RUST_LOG, e.g. `RUST_LOG=baton_worker=debug`).
    #[arg(long, env = "BATON_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("label {s:?} is not KEY=VALUE")),
    }
}

impl Args {
    fn into_config(self) -> WorkerConfig {
        let mut config = WorkerConfig {
            coordinator: self.coordinator,
            slots: self.slots,
            token: self.token,
            work_dir: self.work_dir,
            ..WorkerConfig::default()
        };
        if let Some(name) = self.name {
            config.name = name;
        }
        if !self.labels.is_empty() {
            config.labels = self.labels.into_iter().collect::<BTreeMap<_, _>>();
        }
        config
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if args.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let config = args.into_config();
    let shutdown = Shutdown::new();
    if let Err(err) = watch_signals(shutdown.clone()) {
        eprintln!("baton-worker: cannot install signal handlers: {err}");
        return ExitCode::FAILURE;
    }
    match baton_worker::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(err = %baton_worker::chain(&err), "worker stopped");
            ExitCode::FAILURE
        }
    }
}

/// First SIGTERM or SIGINT drains; the second abandons.
fn watch_signals(shutdown: Shutdown) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            seen += 1;
            if seen == 1 {
                tracing::info!("signal: draining (send again to abandon running jobs)");
                shutdown.drain.cancel();
            } else {
                tracing::warn!("second signal: abandoning running jobs");
                shutdown.abandon.cancel();
                return;
            }
        }
    });
    Ok(())
}
