//! `baton-worker`: parses flags, sets up logging, turns SIGTERM/SIGINT into a drain (the first)
//! and an abandon (the second), and runs [`baton_worker::run_supervised`].
//!
//! `baton-worker supervise <job-dir>` (not in `--help`) is the job supervisor the worker starts
//! for each job, and `baton-worker supervise --standby` the one it keeps started ahead of the
//! next job: see [`baton_worker::supervisor`].

use std::process::ExitCode;

use baton_settings::{ConfigError, Loaded};
use baton_worker::{Shutdown, WorkerConfig};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

fn command() -> clap::Command {
    clap::Command::new("baton-worker")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Runs Baton jobs offered by a coordinator.")
        .after_help(
            "Every setting can also come from a BATON_* variable or a TOML file (--config); flags win over variables, variables over the file, the file over defaults. Logs follow RUST_LOG (default info).",
        )
}

/// Loads and checks the settings before anything connects.
fn load() -> Result<WorkerConfig, ConfigError> {
    let loaded: Loaded<WorkerConfig> = baton_settings::load(command())?;
    if let Err(err) = loaded.settings.validate() {
        return Err(ConfigError::Invalid(err.to_string()));
    }
    Ok(loaded.settings)
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "supervise") {
        return match args.next() {
            Some(arg) if arg == baton_worker::supervisor::STANDBY_ARG => {
                let work_dir = args.next().map(std::path::PathBuf::from);
                baton_worker::supervisor::standby_main(work_dir.as_deref())
            }
            Some(dir) => baton_worker::supervisor::main(std::path::Path::new(&dir)),
            None => {
                eprintln!("usage: baton-worker supervise <job-dir>");
                ExitCode::FAILURE
            }
        };
    }
    worker_main()
}

/// The worker runs as a task of the runtime, not on the thread that waits for it: its session
/// can then read a message on the thread whose connection task just received it, where on
/// the waiting thread every message woke a second thread (stop → SIGTERM 0.05–0.08 ms sooner
/// on an idle machine: two alternating A/Bs of `baton-bench cancel-latency --runs 30`,
/// 14 rounds).
#[tokio::main]
async fn worker_main() -> ExitCode {
    match tokio::spawn(worker_task()).await {
        Ok(code) => code,
        Err(err) => match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => ExitCode::FAILURE,
        },
    }
}

async fn worker_task() -> ExitCode {
    let config = match load() {
        Ok(config) => config,
        Err(err) => err.exit(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if config.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let shell = config.shell_words();
    baton_worker::resident::lock_worker(config.lock_code, shell.first().map(String::as_str));
    let shutdown = Shutdown::new();
    if let Err(err) = watch_signals(shutdown.clone()) {
        eprintln!("baton-worker: cannot install signal handlers: {err}");
        return ExitCode::FAILURE;
    }
    if !config.supervise_jobs {
        return match baton_worker::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(err = %baton_worker::chain(&err), "worker stopped");
                ExitCode::FAILURE
            }
        };
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => {
            eprintln!("baton-worker: cannot find its own binary to supervise jobs with: {err}");
            return ExitCode::FAILURE;
        }
    };
    match baton_worker::run_supervised(config, shutdown, exe).await {
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
