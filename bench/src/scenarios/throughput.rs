//! throughput: executions and job state changes per second through a three-stage PARALLEL
//! pipeline of trivial jobs, with durable state; the coordinator's CPU and peak memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;
use tonic::transport::Endpoint;

use super::start;
use crate::cluster::{Cluster, proc_stats};
use crate::sim_worker::{SimJobs, SimWorker};
use crate::stats::Table;
use crate::watch::Watcher;

const PIPELINE: &str = "name: bench-throughput
mode: parallel
stages:
  - name: build
    actions:
      - { name: compile, labels: { pool: real }, run: [\"true\"] }
  - name: test
    actions:
      - { name: unit, labels: { pool: real }, run: [\"true\"] }
  - name: package
    actions:
      - { name: pack, labels: { pool: real }, run: [\"true\"] }
";

/// Who runs the jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runners {
    /// `baton-worker` processes: each job starts a shell.
    Real,
    /// Sessions held by the benchmark that finish each job at once: the coordinator's own
    /// capacity, not the machine's process start-up.
    Simulated,
}

/// Starts `executions` executions with `in_flight` concurrent clients on `workers` workers of
/// `slots` slots each, and waits until all have ended.
pub async fn run(
    runners: Runners,
    executions: usize,
    workers: usize,
    slots: u32,
    in_flight: usize,
) -> anyhow::Result<serde_json::Value> {
    let mut cluster = Cluster::start().await?;
    let mut held = Vec::new();
    for i in 0..workers {
        let name = format!("w{}", i + 1);
        match runners {
            Runners::Real => {
                cluster
                    .add_worker(&name, &BTreeMap::from([("pool", "real")]), slots)
                    .await?
            }
            Runners::Simulated => {
                let worker = SimWorker {
                    name,
                    labels: BTreeMap::from([("pool".to_string(), "real".to_string())]),
                    slots,
                    jobs: SimJobs::Succeed,
                };
                let channel = Endpoint::from_shared(cluster.addr.clone())?
                    .connect()
                    .await?;
                held.push(AbortOnDrop(tokio::spawn(worker.run(channel))));
            }
        }
    }
    if runners == Runners::Simulated {
        for i in 0..workers {
            cluster.wait_worker(&format!("w{}", i + 1)).await?;
        }
    }
    cluster.put_pipeline(PIPELINE).await?;
    let watcher = Watcher::start(&cluster, "bench-throughput").await?;
    let pid = cluster.coordinator_pid();
    let before = proc_stats(pid)?;
    let started = Instant::now();
    let cluster = Arc::new(cluster);
    let gate = Arc::new(Semaphore::new(in_flight.max(1)));
    let mut tasks = Vec::with_capacity(executions);
    for i in 0..executions {
        let permit = gate.clone().acquire_owned().await?;
        let cluster = cluster.clone();
        tasks.push(tokio::spawn(async move {
            let id = start(&cluster, "bench-throughput", "main", &format!("t{i}")).await;
            drop(permit);
            id
        }));
    }
    let mut ids = Vec::with_capacity(executions);
    for task in tasks {
        ids.push(task.await??);
    }
    let ended = watcher.wait_ended(&ids, Duration::from_secs(600)).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let after = proc_stats(pid)?;
    let failed = ended
        .values()
        .filter(|e| e.status != baton_proto::v1::ExecutionStatus::Succeeded)
        .count();
    let changes = watcher.job_changes();
    let cpu = after.cpu_seconds - before.cpu_seconds;
    let who = match runners {
        Runners::Real => "baton-worker processes",
        Runners::Simulated => "simulated workers (jobs end at once)",
    };
    println!(
        "\nthroughput: {executions} executions of a 3-stage PARALLEL pipeline, {workers} {who} x {slots} slots, {in_flight} clients"
    );
    let mut table = Table::new(&["measure", "value"]);
    table.row(vec!["wall time".into(), format!("{elapsed:.2} s")]);
    table.row(vec![
        "executions / s".into(),
        format!("{:.1}", executions as f64 / elapsed),
    ]);
    table.row(vec![
        "job state changes / s (durable)".into(),
        format!("{:.1}", changes as f64 / elapsed),
    ]);
    table.row(vec!["executions not succeeded".into(), failed.to_string()]);
    table.row(vec![
        "coordinator CPU".into(),
        format!("{cpu:.2} s ({:.0}% of one core)", 100.0 * cpu / elapsed),
    ]);
    table.row(vec![
        "coordinator peak RSS".into(),
        format!("{:.1} MiB", after.peak_rss_mib),
    ]);
    table.print();
    Ok(json!({
        "scenario": "throughput",
        "runners": format!("{runners:?}").to_lowercase(),
        "executions": executions,
        "wall_s": elapsed,
        "executions_per_s": executions as f64 / elapsed,
        "job_state_changes_per_s": changes as f64 / elapsed,
        "not_succeeded": failed,
        "coordinator_cpu_s": cpu,
        "coordinator_peak_rss_mib": after.peak_rss_mib,
    }))
}

/// Aborts a held session when the scenario ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
