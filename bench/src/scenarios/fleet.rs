//! fleet: N simulated workers (one process holding N Session streams) heartbeating and M
//! pipelines defined; the coordinator's memory and CPU at rest, and dispatch latency under
//! that load.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use serde_json::json;
use tokio::sync::Semaphore;
use tonic::transport::{Channel, Endpoint};

use super::latency::{Pace, dispatch_runs, print_dispatch};
use crate::cluster::{Cluster, proc_stats};
use crate::marks::{JobShell, Marks};
use crate::sim_worker::{SimJobs, SimWorker};
use crate::stats::{Table, max, percentile};

/// Sessions per HTTP/2 connection.
const SESSIONS_PER_CONNECTION: usize = 50;

/// The scenario's knobs.
#[derive(Debug, Clone, Copy)]
pub struct Fleet {
    /// Simulated workers. Default 2,000.
    pub workers: usize,
    /// Pipelines defined. Default 10,000.
    pub pipelines: usize,
    /// How long to measure the coordinator at rest. Default 10 s.
    pub rest: Duration,
    /// Dispatch latency runs under load. Default 50.
    pub runs: usize,
}

/// Runs the scenario.
pub async fn run(opts: Fleet) -> anyhow::Result<serde_json::Value> {
    let mut cluster = Cluster::start().await?;
    let pid = cluster.coordinator_pid();
    let put_started = Instant::now();
    put_pipelines(&cluster, opts.pipelines).await?;
    let put_s = put_started.elapsed().as_secs_f64();
    eprintln!("fleet: {} pipelines put in {put_s:.1} s", opts.pipelines);
    let _sessions = connect_sessions(&cluster, opts.workers).await?;
    wait_connected(&cluster, opts.workers).await?;
    eprintln!("fleet: {} simulated workers connected", opts.workers);
    let before = proc_stats(pid)?;
    tokio::time::sleep(opts.rest).await;
    let after = proc_stats(pid)?;
    let cpu_pct = 100.0 * (after.cpu_seconds - before.cpu_seconds) / opts.rest.as_secs_f64();

    cluster
        .add_worker("real", &BTreeMap::from([("pool", "real")]), 1)
        .await?;
    let marks = Marks::new(cluster.dir.path())?;
    let yaml = super::one_stage_pipeline(
        "bench-fleet-dispatch",
        "mode: parallel\n",
        "",
        "pool: real",
        &marks.quick_step(JobShell::ShThenBashScript),
    );
    cluster.put_pipeline(&yaml).await?;
    let figures = dispatch_runs(
        &cluster,
        &marks,
        "bench-fleet-dispatch",
        opts.runs,
        Pace::AtRest,
        false,
    )
    .await?;
    let startup = marks
        .local_startup_ms(opts.runs.min(50), JobShell::ShThenBashScript)
        .await?;

    println!(
        "\nfleet: {} simulated workers heartbeating, {} pipelines",
        opts.workers, opts.pipelines
    );
    let mut table = Table::new(&["measure", "value"]);
    table.row(vec![
        "PutPipeline rate while loading".into(),
        format!("{:.0} / s", opts.pipelines as f64 / put_s),
    ]);
    table.row(vec![
        "coordinator RSS at rest".into(),
        format!("{:.1} MiB", after.rss_mib),
    ]);
    table.row(vec![
        format!("coordinator CPU at rest (over {:?})", opts.rest),
        format!("{cpu_pct:.1}% of one core"),
    ]);
    table.print();
    print_dispatch(
        "dispatch-latency under that load",
        &figures,
        &startup,
        JobShell::ShThenBashScript,
    );
    Ok(json!({
        "scenario": "fleet",
        "workers": opts.workers,
        "pipelines": opts.pipelines,
        "rss_at_rest_mib": after.rss_mib,
        "cpu_at_rest_pct": cpu_pct,
        "dispatch_p50_ms": percentile(&figures.total, 50.0),
        "dispatch_p99_ms": percentile(&figures.total, 99.0),
        "dispatch_max_ms": max(&figures.total),
    }))
}

async fn put_pipelines(cluster: &Cluster, count: usize) -> anyhow::Result<()> {
    let gate = Arc::new(Semaphore::new(32));
    let client = cluster.client().await?;
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let permit = gate.clone().acquire_owned().await?;
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let yaml =
                super::one_stage_pipeline(&format!("fleet-{i:05}"), "", "", "pool: none", "true");
            let r = client
                .put_pipeline(pb::PutPipelineRequest {
                    definition_yaml: yaml,
                    source_name: "bench".into(),
                })
                .await;
            drop(permit);
            r.map(|_| ())
                .map_err(|s| anyhow::anyhow!("{}", s.message()))
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Held sessions: dropping this closes every stream.
struct Sessions {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Sessions {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn connect_sessions(cluster: &Cluster, count: usize) -> anyhow::Result<Sessions> {
    let mut tasks = Vec::with_capacity(count);
    let mut channel: Option<Channel> = None;
    for i in 0..count {
        if i % SESSIONS_PER_CONNECTION == 0 {
            channel = Some(
                Endpoint::from_shared(cluster.addr.clone())?
                    .connect()
                    .await?,
            );
        }
        let Some(channel) = channel.clone() else {
            continue;
        };
        let worker = SimWorker {
            name: format!("sim-{i:05}"),
            labels: BTreeMap::from([("pool".to_string(), "sim".to_string())]),
            slots: 1,
            jobs: SimJobs::Refuse,
        };
        tasks.push(tokio::spawn(worker.run(channel)));
    }
    Ok(Sessions { tasks })
}

async fn wait_connected(cluster: &Cluster, count: usize) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    let started = Instant::now();
    loop {
        let workers = client
            .list_workers(pb::ListWorkersRequest {})
            .await?
            .into_inner()
            .workers;
        let connected = workers
            .iter()
            .filter(|w| w.state == pb::WorkerState::Connected as i32)
            .count();
        if connected >= count {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("only {connected} of {count} simulated workers connected");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
