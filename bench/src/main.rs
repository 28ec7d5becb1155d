//! `baton-bench`: starts a real coordinator and real workers on loopback, runs one scenario (or
//! all), prints a table and one JSON line of figures per scenario. Figures, not pass/fail: it
//! never fails because a machine is slow.
//!
//! Build everything it starts together:
//! `cargo build --release -p baton-bench -p baton-coordinator -p baton-worker`, then
//! `target/release/baton-bench all`.

mod cluster;
mod floor;
mod hops;
mod marks;
mod page_out;
mod scenarios;
mod sim_worker;
mod stats;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use scenarios::{fleet::Fleet, rapid_push::RapidPush};

/// How long the latency scenarios let the machine sit idle before each measurement, by
/// default: long enough for idle vCPUs to halt, as they have between a real user's pushes.
const IDLE_MS: u64 = 30;

/// Baton's benchmarks.
#[derive(Debug, Parser)]
#[command(name = "baton-bench", version, about)]
struct Args {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// K pushes of one branch at interval T, run as FIFO, superseded, auto-cancel, and settle.
    RapidPush {
        /// Pushes (K).
        #[arg(long, default_value_t = 10)]
        pushes: usize,
        /// Time between pushes (T).
        #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// How long the job runs (S).
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        job: Duration,
        /// Workers.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// The settle window of the fourth variant. Default: T + 50 ms.
        #[arg(long, value_parser = humantime::parse_duration)]
        settle: Option<Duration>,
    },
    /// Newer revision (auto-cancel) or stop-abandon -> SIGTERM in the older job's process group.
    CancelLatency {
        /// Measurements.
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// Each cancel comes this long after the job started, with nothing else running (0:
        /// right after the start, the machine still warm from it).
        #[arg(long, default_value_t = IDLE_MS)]
        idle_ms: u64,
        /// Right before each cancel, page out the file-backed memory (code, libraries) of the
        /// cluster's processes, as a host that reclaims idle memory does after a quiet spell
        /// (needs CAP_SYS_NICE). What `lock_code` keeps stays.
        #[arg(long)]
        page_out: bool,
    },
    /// StartPipelineExecution -> the job's first instruction on an idle worker.
    DispatchLatency {
        /// Measurements.
        #[arg(long, default_value_t = 100)]
        runs: usize,
        /// Each run starts once the worker is at rest (its next job's directory made ahead)
        /// and then nothing has run for this long (0: as soon as it is at rest, the machine
        /// still warm from the previous job).
        #[arg(long, default_value_t = IDLE_MS)]
        idle_ms: u64,
        /// Start each run as soon as the previous job's end is reported, instead of once the
        /// worker is at rest.
        #[arg(long, conflicts_with = "idle_ms")]
        back_to_back: bool,
        /// Right before each start, page out the file-backed memory (code, libraries) of the
        /// cluster's processes, as a host that reclaims idle memory does after a quiet spell
        /// (needs CAP_SYS_NICE). What `lock_code` keeps stays.
        #[arg(long)]
        page_out: bool,
    },
    /// Executions and job state changes per second through a 3-stage PARALLEL pipeline.
    Throughput {
        /// Executions started.
        #[arg(long, default_value_t = 300)]
        executions: usize,
        /// Worker processes.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Slots per worker.
        #[arg(long, default_value_t = 16)]
        slots: u32,
        /// Concurrent clients starting executions.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Executions of the second run, on simulated workers whose jobs end at once (the
        /// coordinator's own capacity); 0 skips it.
        #[arg(long, default_value_t = 3000)]
        simulated_executions: usize,
    },
    /// N simulated workers and M pipelines: coordinator memory and CPU at rest, dispatch latency.
    Fleet {
        /// Simulated workers.
        #[arg(long, default_value_t = 2000)]
        workers: usize,
        /// Pipelines defined.
        #[arg(long, default_value_t = 10_000)]
        pipelines: usize,
        /// How long to measure at rest.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        rest: Duration,
        /// Dispatch latency runs under load.
        #[arg(long, default_value_t = 50)]
        runs: usize,
    },
    /// Every scenario with its defaults.
    All,
    /// Not a scenario: where the traced requests of a kept run spent their time, hop by hop
    /// (medians), from a directory that `BATON_BENCH_KEEP=1
    /// BATON_BENCH_LOG="warn,baton::hop=trace" baton-bench cancel-latency` (or
    /// dispatch-latency) kept.
    Hops {
        /// A kept cluster directory (the run prints `keeping DIR`, one per cluster).
        dir: std::path::PathBuf,
        /// The path: `stop` (API handler to the job's SIGTERM) or `start` (API handler to
        /// the step's shell started, jobs in the worker).
        #[arg(long, default_value = "stop", conflicts_with = "events")]
        path: HopPath,
        /// A path of your own: event names in order, comma-separated (`sigterm` is a job's
        /// SIGTERM mark).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
    },
}

/// A request's path through the hop events (`baton-bench hops --path`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum HopPath {
    /// StopPipelineExecution to the job's SIGTERM.
    Stop,
    /// StartPipelineExecution to the step's shell started (jobs in the worker).
    Start,
}

async fn run(scenario: Scenario) -> anyhow::Result<Vec<serde_json::Value>> {
    Ok(match scenario {
        Scenario::RapidPush {
            pushes,
            interval,
            job,
            workers,
            settle,
        } => vec![
            scenarios::rapid_push::run(RapidPush {
                pushes,
                interval,
                job,
                workers,
                settle: settle.unwrap_or(interval + Duration::from_millis(50)),
            })
            .await?,
        ],
        Scenario::CancelLatency {
            runs,
            idle_ms,
            page_out,
        } => {
            vec![scenarios::latency::cancel(runs, Duration::from_millis(idle_ms), page_out).await?]
        }
        Scenario::DispatchLatency {
            runs,
            idle_ms,
            back_to_back,
            page_out,
        } => {
            let pace = match (back_to_back, idle_ms) {
                (true, _) => scenarios::latency::Pace::BackToBack,
                (false, 0) => scenarios::latency::Pace::AtRest,
                (false, ms) => scenarios::latency::Pace::Idle(Duration::from_millis(ms)),
            };
            vec![scenarios::latency::dispatch(runs, pace, page_out).await?]
        }
        Scenario::Throughput {
            executions,
            workers,
            slots,
            clients,
            simulated_executions,
        } => {
            use scenarios::throughput::{Runners, run};
            let mut out = vec![run(Runners::Real, executions, workers, slots, clients).await?];
            if simulated_executions > 0 {
                out.push(
                    run(
                        Runners::Simulated,
                        simulated_executions,
                        workers,
                        slots,
                        clients,
                    )
                    .await?,
                );
            }
            out
        }
        Scenario::Fleet {
            workers,
            pipelines,
            rest,
            runs,
        } => vec![
            scenarios::fleet::run(Fleet {
                workers,
                pipelines,
                rest,
                runs,
            })
            .await?,
        ],
        Scenario::Hops { dir, path, events } => {
            let path: Vec<&str> = match (events.is_empty(), path) {
                (false, _) => events.iter().map(String::as_str).collect(),
                (true, HopPath::Stop) => hops::STOP.to_vec(),
                (true, HopPath::Start) => hops::START.to_vec(),
            };
            if path.len() < 2 {
                anyhow::bail!("--events needs at least two event names, comma-separated");
            }
            let events = hops::read_dir(&dir)?;
            let walks = hops::walks(&events, &path);
            if walks.is_empty() {
                anyhow::bail!(
                    "no {} in {} is followed by the rest of the path within {} ms ({}): was the run traced (BATON_BENCH_LOG=\"warn,baton::hop=trace\"), and is the path one this cluster takes (a supervised job's spawn is not in the worker's log)?",
                    path[0],
                    dir.display(),
                    hops::WINDOW * 1000.0,
                    path.join(", ")
                );
            }
            vec![hops::report(&dir, &path, &walks)]
        }
        Scenario::All => {
            let interval = Duration::from_millis(300);
            vec![
                scenarios::rapid_push::run(RapidPush {
                    pushes: 10,
                    interval,
                    job: Duration::from_secs(3),
                    workers: 2,
                    settle: interval + Duration::from_millis(50),
                })
                .await?,
                scenarios::latency::cancel(50, Duration::from_millis(IDLE_MS), false).await?,
                scenarios::latency::dispatch(
                    100,
                    scenarios::latency::Pace::Idle(Duration::from_millis(IDLE_MS)),
                    false,
                )
                .await?,
                scenarios::throughput::run(scenarios::throughput::Runners::Real, 300, 2, 16, 16)
                    .await?,
                scenarios::throughput::run(
                    scenarios::throughput::Runners::Simulated,
                    3000,
                    2,
                    16,
                    16,
                )
                .await?,
                scenarios::fleet::run(Fleet {
                    workers: 2000,
                    pipelines: 10_000,
                    rest: Duration::from_secs(10),
                    runs: 50,
                })
                .await?,
            ]
        }
    })
}

fn main() -> ExitCode {
    // The signal-recording job the cancel scenario runs (a process of its own, no runtime).
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(marks::RECORDER_COMMAND) {
        return marks::recorder_main(&argv[2..]);
    }
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("baton-bench: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args.scenario)) {
        Ok(figures) => {
            for f in figures {
                println!("{f}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("baton-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
