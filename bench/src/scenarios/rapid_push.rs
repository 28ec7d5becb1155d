//! rapid-push: K pushes of one branch at interval T into a pipeline whose job takes S, run four
//! ways in one invocation, to show how much worker time each policy spends on revisions that
//! were not the last, and how soon the last push has its result.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use serde_json::json;

use super::{execution, one_stage_pipeline, start};
use crate::cluster::Cluster;
use crate::stats::Table;
use crate::watch::Watcher;

/// The scenario's knobs.
#[derive(Debug, Clone, Copy)]
pub struct RapidPush {
    /// Pushes (K). Default 10.
    pub pushes: usize,
    /// Time between pushes (T). Default 0.3 s.
    pub interval: Duration,
    /// How long the job runs (S). Default 3 s.
    pub job: Duration,
    /// Workers. Default 2.
    pub workers: usize,
    /// The settle window of the fourth variant. Default T + 50 ms.
    pub settle: Duration,
}

struct Variant {
    name: &'static str,
    pipeline_extra: String,
    stage_extra: String,
}

#[derive(Default)]
struct Outcome {
    last_result_s: f64,
    spent_s: f64,
    wasted_s: f64,
    jobs_started: usize,
    jobs_abandoned: usize,
    superseded: usize,
    cancelled: usize,
}

/// Runs the four variants and prints them side by side.
pub async fn run(opts: RapidPush) -> anyhow::Result<serde_json::Value> {
    let mut cluster = Cluster::start().await?;
    for i in 0..opts.workers {
        cluster
            .add_worker(
                &format!("w{}", i + 1),
                &BTreeMap::from([("pool", "real")]),
                1,
            )
            .await?;
    }
    let settle = humantime::format_duration(opts.settle).to_string();
    let variants = [
        Variant {
            name: "queued (fifo)",
            pipeline_extra: "mode: queued\n".into(),
            stage_extra: String::new(),
        },
        Variant {
            name: "superseded",
            pipeline_extra: String::new(),
            stage_extra: String::new(),
        },
        Variant {
            name: "superseded + auto-cancel running",
            pipeline_extra: "auto_cancel:\n  running: {}\n".into(),
            stage_extra: String::new(),
        },
        Variant {
            name: "superseded + auto-cancel running + settle",
            pipeline_extra: "auto_cancel:\n  running: {}\n".into(),
            stage_extra: format!("    settle: {settle}\n    max_wait: 30s\n"),
        },
    ];
    let step = format!("sleep {}", opts.job.as_secs_f64());
    let mut results = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        let name = format!("rapid-push-{}", i + 1);
        let yaml = one_stage_pipeline(
            &name,
            &v.pipeline_extra,
            &v.stage_extra,
            "pool: real",
            &step,
        );
        if let Err(e) = cluster.put_pipeline(&yaml).await {
            println!(
                "{}: not measured, the coordinator refused the pipeline: {e}",
                v.name
            );
            continue;
        }
        eprintln!("rapid-push: running '{}'", v.name);
        let outcome = run_variant(&cluster, &name, &opts).await?;
        results.push((v.name, outcome));
    }
    print(&opts, &results);
    let base = results.first().map(|(_, o)| (o.spent_s, o.last_result_s));
    let variants: Vec<serde_json::Value> = results
        .iter()
        .map(|(name, o)| {
            json!({
                "variant": name,
                "last_push_to_result_s": o.last_result_s,
                "worker_seconds_spent": o.spent_s,
                "worker_seconds_wasted": o.wasted_s,
                "jobs_started": o.jobs_started,
                "jobs_abandoned": o.jobs_abandoned,
                "executions_superseded": o.superseded,
                "executions_cancelled": o.cancelled,
                "spent_vs_fifo": base.map(|(s, _)| o.spent_s / s),
                "latency_vs_fifo": base.map(|(_, l)| o.last_result_s / l),
            })
        })
        .collect();
    Ok(json!({
        "scenario": "rapid-push",
        "pushes": opts.pushes,
        "interval_s": opts.interval.as_secs_f64(),
        "job_s": opts.job.as_secs_f64(),
        "workers": opts.workers,
        "variants": variants,
    }))
}

async fn run_variant(
    cluster: &Cluster,
    pipeline: &str,
    opts: &RapidPush,
) -> anyhow::Result<Outcome> {
    let watcher = Watcher::start(cluster, pipeline).await?;
    let mut ids = Vec::with_capacity(opts.pushes);
    let mut last_push = Instant::now();
    for k in 0..opts.pushes {
        if k > 0 {
            tokio::time::sleep(opts.interval).await;
        }
        last_push = Instant::now();
        ids.push(start(cluster, pipeline, "main", &format!("{pipeline}-r{k}")).await?);
    }
    let deadline = opts.job * (opts.pushes as u32 + 2) + Duration::from_secs(60);
    let ended = watcher.wait_ended(&ids, deadline).await?;
    let mut out = Outcome::default();
    if let Some(last) = ids.last().and_then(|id| ended.get(id)) {
        out.last_result_s = last.at.duration_since(last_push).as_secs_f64();
    }
    for (i, id) in ids.iter().enumerate() {
        let exec = execution(cluster, id).await?;
        match pb::ExecutionStatus::try_from(exec.status) {
            Ok(pb::ExecutionStatus::Superseded) => out.superseded += 1,
            Ok(pb::ExecutionStatus::Cancelled) => out.cancelled += 1,
            _ => {}
        }
        for job in exec.stages.iter().flat_map(|s| s.jobs.iter()) {
            if job.started_at_ms == 0 {
                continue;
            }
            out.jobs_started += 1;
            if job.status == pb::JobStatus::Abandoned as i32 {
                out.jobs_abandoned += 1;
            }
            let secs = (job.finished_at_ms - job.started_at_ms).max(0) as f64 / 1000.0;
            out.spent_s += secs;
            if i + 1 != ids.len() {
                out.wasted_s += secs;
            }
        }
    }
    Ok(out)
}

fn print(opts: &RapidPush, results: &[(&str, Outcome)]) {
    println!(
        "\nrapid-push: K={} pushes of one branch every {:?}, job {:?}, {} workers",
        opts.pushes, opts.interval, opts.job, opts.workers
    );
    let mut table = Table::new(&[
        "variant",
        "last push -> result",
        "worker-s spent",
        "worker-s on older revisions",
        "jobs started",
        "abandoned",
        "superseded",
        "cancelled",
        "spent vs fifo",
    ]);
    let base = results.first().map(|(_, o)| o.spent_s).unwrap_or(0.0);
    for (name, o) in results {
        table.row(vec![
            name.to_string(),
            format!("{:.2} s", o.last_result_s),
            format!("{:.2}", o.spent_s),
            format!("{:.2}", o.wasted_s),
            o.jobs_started.to_string(),
            o.jobs_abandoned.to_string(),
            o.superseded.to_string(),
            o.cancelled.to_string(),
            if base > 0.0 {
                format!("{:.2}x", o.spent_s / base)
            } else {
                "-".into()
            },
        ]);
    }
    table.print();
}
