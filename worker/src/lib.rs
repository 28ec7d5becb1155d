//! Baton's worker agent: connects to a coordinator, takes the jobs it offers and runs each step as
//! `sh -c <step>` in its own process group, streaming output and outcomes back.
//!
//! [`run`] is the whole worker; `main.rs` only parses flags, sets up tracing and turns signals
//! into [`Shutdown`]. [`runner::run_job`] runs one job without any coordinator, for tests and
//! for embedding. The worker never reports a job ended while a live process of it remains.

mod agent;
pub mod cgroup;
mod cgroup_spawn;
pub mod config;
mod error;
mod job_dir;
mod prepared;
pub mod proc_group;
pub mod resident;
pub mod runner;
pub mod seams;
mod session;
mod spare_dir;
mod spool;
mod standby;
mod step;
mod supervised;
pub mod supervisor;

use std::collections::VecDeque;

use tokio::sync::mpsc;

pub use config::{Shutdown, WorkerConfig};
pub use error::{WorkerError, chain};
pub use job_dir::{JOBS_DIR, process_alive};
pub use runner::{JobContext, JobControl, JobEnd, JobEvent, Report, run_job};
pub use seams::{ChannelConnector, JobLauncher, LeftBehind, ProcessLauncher, Seams};
pub use spool::Status;
pub use step::LOG_CHUNK;
pub use supervised::SupervisedLauncher;

/// Reports from all jobs waiting for the session loop.
const REPORT_QUEUE: usize = 256;

/// Runs a worker until it has drained (returns `Ok`) or been abandoned and reported.
///
/// Reconnects with backoff when the coordinator goes away, keeping its jobs running; returns an
/// error only for bad configuration or when the coordinator refuses it (bad token) while idle.
pub async fn run(config: WorkerConfig, shutdown: Shutdown) -> Result<(), WorkerError> {
    run_in_work_dir(config, shutdown, Seams::default()).await
}

/// [`run`] with every job under its own supervisor process, `exe supervise <job-dir>` (`exe`
/// is the `baton-worker` binary; usually one started ahead as `exe supervise --standby`):
/// jobs outlive this process, and the same worker (same name and work dir) started again
/// within its lease re-attaches them. What `baton-worker` runs.
pub async fn run_supervised(
    config: WorkerConfig,
    shutdown: Shutdown,
    exe: std::path::PathBuf,
) -> Result<(), WorkerError> {
    let seams = Seams {
        launcher: std::sync::Arc::new(SupervisedLauncher::with_work_dir(
            exe,
            Some(config.work_dir.clone()),
        )),
        connector: None,
    };
    run_in_work_dir(config, shutdown, seams).await
}

async fn run_in_work_dir(
    config: WorkerConfig,
    shutdown: Shutdown,
    seams: Seams,
) -> Result<(), WorkerError> {
    config.validate()?;
    tokio::fs::create_dir_all(&config.work_dir)
        .await
        .map_err(|source| WorkerError::Io {
            what: "cannot create work directory",
            path: config.work_dir.clone(),
            source,
        })?;
    run_with(config, shutdown, seams).await
}

/// [`run`] with its jobs run and its channel opened by `seams`. Does not create `work_dir`
/// (the process launcher creates each job's directory under it).
pub async fn run_with(
    config: WorkerConfig,
    shutdown: Shutdown,
    seams: Seams,
) -> Result<(), WorkerError> {
    config.validate()?;
    let endpoint = session::endpoint(&config)?;
    let (reports_tx, reports) = mpsc::channel(REPORT_QUEUE);
    let backoff = config.reconnect_backoff;
    let mut agent = agent::Agent::new(config, reports_tx, seams.launcher.clone());
    agent.reattach();
    let worker = session::Worker {
        agent,
        reports,
        pending: VecDeque::new(),
        shutdown,
        lease: None,
        backoff,
        lost_at: None,
        last_heard: None,
        lease_expired: false,
        next_seq: 1,
        unacked: VecDeque::new(),
        finished: VecDeque::new(),
    };
    worker.run(endpoint, &seams).await
}
