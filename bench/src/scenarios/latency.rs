//! cancel-latency and dispatch-latency: how fast Baton reacts, measured by the jobs themselves.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::{abandon, one_stage_pipeline, start};
use crate::cluster::Cluster;
use crate::floor::{Floor, FloorProbe};
use crate::marks::{JobShell, Marks, now_epoch};
use crate::stats::{Table, max, ms, percentile};
use crate::watch::Watcher;

const WAIT: Duration = Duration::from_secs(60);

/// How the worker runs its jobs in a latency measurement.
const JOB_MODES: [(&str, &[&str]); 2] = [
    ("supervised (default)", &[]),
    (
        "in the worker (--supervise-jobs false)",
        &["--supervise-jobs", "false"],
    ),
];

/// From StartPipelineExecution to the job's first instruction, on an idle worker, `runs` times,
/// with jobs under a supervisor and inside the worker, each with the default shell running a
/// bash script and with a bash shell whose step is the mark itself. With `page_out`, the
/// cluster's code is paged out right before each start (see `page_out.rs`).
pub async fn dispatch(
    runs: usize,
    pace: Pace,
    page_out: bool,
) -> anyhow::Result<serde_json::Value> {
    let mut pace_name = match pace {
        Pace::Idle(quiet) => format!("machine idle {} ms", quiet.as_millis()),
        Pace::AtRest => "worker at rest, machine warm".to_string(),
        Pace::BackToBack => "back to back".to_string(),
    };
    if page_out {
        pace_name.push_str(", code paged out");
    }
    let mut out = json!({ "scenario": "dispatch-latency", "runs": runs, "pace": pace_name, "page_out": page_out });
    if let Pace::Idle(quiet) = pace {
        out["idle_ms"] = json!(quiet.as_millis() as u64);
    }
    for (i, (mode, args)) in JOB_MODES.iter().enumerate() {
        for shell in JobShell::ALL {
            let mut cluster = Cluster::start().await?;
            let args: Vec<&str> = args.iter().chain(shell.worker_args()).copied().collect();
            cluster.worker_args(&args);
            cluster
                .add_worker("w1", &BTreeMap::from([("pool", "real")]), 1)
                .await?;
            let marks = Marks::new(cluster.dir.path())?;
            let yaml = one_stage_pipeline(
                "bench-dispatch",
                "mode: parallel\n",
                "",
                "pool: real",
                &marks.quick_step(shell),
            );
            cluster.put_pipeline(&yaml).await?;
            let figures =
                dispatch_runs(&cluster, &marks, "bench-dispatch", runs, pace, page_out).await?;
            let startup = marks.local_startup_ms(runs.min(50), shell).await?;
            print_dispatch(
                &format!(
                    "dispatch-latency ({pace_name}, jobs {mode}, {})",
                    shell.label()
                ),
                &figures,
                &startup,
                shell,
            );
            let key = if i == 0 { "supervised" } else { "in_worker" };
            out[format!("{key}{}", shell.key())] = dispatch_summary(&figures, &startup);
        }
    }
    Ok(out)
}

/// The JSON summary of one dispatch measurement.
fn dispatch_summary(figures: &DispatchFigures, startup: &[f64]) -> serde_json::Value {
    json!({
            "p50_ms": percentile(&figures.total, 50.0),
            "p99_ms": percentile(&figures.total, 99.0),
            "max_ms": max(&figures.total),
            "start_call_p50_ms": percentile(&figures.call, 50.0),
        "shell_startup_p50_ms": percentile(startup, 50.0),
        "floor_rpc_p50_ms": percentile(&figures.floor.rpc, 50.0),
        "floor_flush_p50_ms": percentile(&figures.floor.flush, 50.0),
    })
}

/// Dispatch figures in milliseconds, one per run.
pub struct DispatchFigures {
    /// Start request -> the job's first instruction.
    pub total: Vec<f64>,
    /// Start request -> its answer (the new execution durable).
    pub call: Vec<f64>,
    /// The machine's floor, probed after each run.
    pub floor: Floor,
}

/// When the next run of the dispatch measurement starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Once the worker is at rest and then nothing has run for this long (the floor probes
    /// taken in the middle of that quiet): an idle worker on an idle machine. On a VM whose
    /// idle vCPUs halt, every wake-up on the way then costs more than on a busy machine.
    Idle(Duration),
    /// As soon as the worker is at rest: the previous job's end reported and the next job's
    /// directory made ahead (see [`Cluster::workers_at_rest`]). The machine is still warm
    /// from that work.
    AtRest,
    /// Right after the previous job's end is reported (a worker with a backlog: its standby
    /// may still be starting).
    BackToBack,
}

/// Longest wait for a worker to come to rest between two runs.
const AT_REST_LIMIT: Duration = Duration::from_millis(500);

/// Runs the dispatch measurement on an existing cluster (the fleet scenario reuses it).
pub async fn dispatch_runs(
    cluster: &Cluster,
    marks: &Marks,
    pipeline: &str,
    runs: usize,
    pace: Pace,
    page_out: bool,
) -> anyhow::Result<DispatchFigures> {
    let watcher = Watcher::start(cluster, pipeline).await?;
    let mut probe = FloorProbe::open(&cluster.dir.path().join(pipeline))?;
    let mut total = Vec::with_capacity(runs);
    let mut call = Vec::with_capacity(runs);
    for i in 0..runs {
        match pace {
            Pace::Idle(quiet) => {
                cluster.workers_at_rest(AT_REST_LIMIT).await;
                probe.probe_amid_quiet(cluster, quiet).await?;
            }
            Pace::AtRest => {
                cluster.workers_at_rest(AT_REST_LIMIT).await;
            }
            Pace::BackToBack => {}
        }
        let commit = format!("{pipeline}-{i}");
        if page_out {
            cluster.page_out()?;
        }
        let t0 = now_epoch();
        let id = start(cluster, pipeline, "main", &commit).await?;
        call.push((now_epoch() - t0) * 1000.0);
        let mark = marks.wait("start", &commit, WAIT).await?;
        total.push((mark - t0) * 1000.0);
        // The worker is idle again before the next run.
        watcher.wait_ended(&[id], WAIT).await?;
        if !matches!(pace, Pace::Idle(_)) {
            probe.probe(cluster).await?;
        }
    }
    Ok(DispatchFigures {
        total,
        call,
        floor: probe.into_floor(),
    })
}

/// Prints dispatch figures next to the machine's own process start-up time.
pub fn print_dispatch(title: &str, figures: &DispatchFigures, startup: &[f64], shell: JobShell) {
    println!("\n{title}: {} runs", figures.total.len());
    let mut table = Table::new(&["measure", "p50", "p99", "max"]);
    for (name, values) in [
        ("start request -> job's first instruction", &figures.total),
        ("of which the start call (durable, answered)", &figures.call),
    ] {
        table.row(vec![
            name.into(),
            ms(percentile(values, 50.0)),
            ms(percentile(values, 99.0)),
            ms(max(values)),
        ]);
    }
    for (name, values) in floor_rows(&figures.floor) {
        table.row(vec![
            name.into(),
            ms(percentile(values, 50.0)),
            ms(percentile(values, 99.0)),
            ms(max(values)),
        ]);
    }
    table.row(vec![
        format!(
            "of which `{}` start-up (measured locally, no Baton)",
            shell.label()
        ),
        ms(percentile(startup, 50.0)),
        ms(percentile(startup, 99.0)),
        ms(max(startup)),
    ]);
    table.print();
}

/// From StartPipelineExecution of a newer revision (auto-cancel running) and from
/// StopPipelineExecution(abandon) to the older job's process group getting SIGTERM, with jobs
/// under a supervisor and inside the worker, each job either a signal recorder (the moment the
/// signal arrives) or a bash trap (the moment bash runs its trap). Each cancel comes `idle`
/// after the job started (the floor probes in the middle of that quiet), or right after its
/// start when `idle` is zero. With `page_out`, the cluster's code is paged out right before
/// each cancel (see `page_out.rs`).
pub async fn cancel(
    runs: usize,
    idle: Duration,
    page_out: bool,
) -> anyhow::Result<serde_json::Value> {
    let mut table = Table::new(&["trigger", "jobs", "job", "runs", "p50", "p99", "max"]);
    let idle_ms = idle.as_millis() as u64;
    let mut out = json!({ "scenario": "cancel-latency", "runs": runs, "idle_ms": idle_ms, "page_out": page_out });
    for (i, (mode, args)) in JOB_MODES.iter().enumerate() {
        let mut cluster = Cluster::start().await?;
        cluster.worker_args(args);
        for name in ["w1", "w2"] {
            cluster
                .add_worker(name, &BTreeMap::from([("pool", "real")]), 1)
                .await?;
        }
        let marks = Marks::new(cluster.dir.path())?;
        let jobs = [
            ("signal recorder", "", marks.recorder_step()?),
            (
                "bash trap",
                "_bash_trap",
                marks.waiting_step(JobShell::ShThenBashScript),
            ),
        ];
        for (job, job_key, step) in jobs {
            let (cancel, stop) = (
                format!("bench-cancel{job_key}"),
                format!("bench-stop{job_key}"),
            );
            let auto = one_stage_pipeline(
                &cancel,
                "auto_cancel:\n  running: {}\n",
                "",
                "pool: real",
                &step,
            );
            let suffix = format!("{}{job_key}", if i == 0 { "" } else { "_in_worker" });
            cluster.put_pipeline(&auto).await?;
            let figures = cancel_by_newer(&cluster, &marks, &cancel, runs, idle, page_out).await?;
            table.row(row(
                "newer revision (auto-cancel running)",
                mode,
                job,
                &figures,
            ));
            out[format!("auto_cancel{suffix}")] = summary(&figures);
            let yaml = one_stage_pipeline(&stop, "", "", "pool: real", &step);
            cluster.put_pipeline(&yaml).await?;
            let (figures, calls, floor) =
                cancel_by_stop(&cluster, &marks, &stop, runs, idle, page_out).await?;
            table.row(row("StopPipelineExecution(abandon)", mode, job, &figures));
            table.row(row(
                "  of which the call (durable, answered)",
                mode,
                job,
                &calls,
            ));
            for (name, values) in floor_rows(&floor) {
                table.row(row(&format!("  {name}"), mode, job, values));
            }
            out[format!("stop_abandon{suffix}")] = summary(&figures);
            out[format!("stop_call{suffix}")] = summary(&calls);
            out[format!("floor_rpc{suffix}")] = summary(&floor.rpc);
            out[format!("floor_flush{suffix}")] = summary(&floor.flush);
        }
    }
    let mut pace = match idle_ms {
        0 => "right after the job started, machine warm".to_string(),
        ms => format!("job running, machine idle {ms} ms"),
    };
    if page_out {
        pace.push_str(", code paged out");
    }
    println!("\ncancel-latency ({pace}): request -> SIGTERM seen by the older job's process group");
    table.print();
    Ok(out)
}

/// The floor's rows: what the machine needs before Baton does anything.
fn floor_rows(floor: &Floor) -> [(&'static str, &Vec<f64>); 2] {
    [
        (
            "floor: a gRPC round trip, no Baton work (health check)",
            &floor.rpc,
        ),
        (
            "floor: one durable store flush (sled, 1 KiB record)",
            &floor.flush,
        ),
    ]
}

fn row(name: &str, mode: &str, job: &str, figures: &[f64]) -> Vec<String> {
    vec![
        name.to_string(),
        mode.to_string(),
        job.to_string(),
        figures.len().to_string(),
        ms(percentile(figures, 50.0)),
        ms(percentile(figures, 99.0)),
        ms(max(figures)),
    ]
}

fn summary(figures: &[f64]) -> serde_json::Value {
    json!({
        "p50_ms": percentile(figures, 50.0),
        "p99_ms": percentile(figures, 99.0),
        "max_ms": max(figures),
    })
}

async fn cancel_by_newer(
    cluster: &Cluster,
    marks: &Marks,
    pipeline: &str,
    runs: usize,
    idle: Duration,
    page_out: bool,
) -> anyhow::Result<Vec<f64>> {
    let watcher = Watcher::start(cluster, pipeline).await?;
    let mut figures = Vec::with_capacity(runs);
    for i in 0..runs {
        let (old, new) = (format!("{pipeline}-{i}-old"), format!("{pipeline}-{i}-new"));
        let old_id = start(cluster, pipeline, "main", &old).await?;
        marks.wait("start", &old, WAIT).await?;
        // The same quiet as a stop run's, which probes the floor in its middle.
        tokio::time::sleep(idle * 2).await;
        if page_out {
            cluster.page_out()?;
        }
        let t0 = now_epoch();
        let new_id = start(cluster, pipeline, "main", &new).await?;
        let term = marks.wait("term", &old, WAIT).await?;
        figures.push((term - t0) * 1000.0);
        marks.wait("start", &new, WAIT).await?;
        abandon(cluster, &new_id).await?;
        watcher.wait_ended(&[old_id, new_id], WAIT).await?;
    }
    Ok(figures)
}

/// Request -> SIGTERM, of that the StopPipelineExecution call itself (durable, answered), and
/// the machine's floor probed in each run (`idle` after the job started, else after the run).
async fn cancel_by_stop(
    cluster: &Cluster,
    marks: &Marks,
    pipeline: &str,
    runs: usize,
    idle: Duration,
    page_out: bool,
) -> anyhow::Result<(Vec<f64>, Vec<f64>, Floor)> {
    let watcher = Watcher::start(cluster, pipeline).await?;
    let mut probe = FloorProbe::open(&cluster.dir.path().join(pipeline))?;
    let mut figures = Vec::with_capacity(runs);
    let mut calls = Vec::with_capacity(runs);
    for i in 0..runs {
        let commit = format!("{pipeline}-{i}");
        let id = start(cluster, pipeline, "main", &commit).await?;
        marks.wait("start", &commit, WAIT).await?;
        if !idle.is_zero() {
            probe.probe_amid_quiet(cluster, idle).await?;
        }
        if page_out {
            cluster.page_out()?;
        }
        let t0 = now_epoch();
        abandon(cluster, &id).await?;
        calls.push((now_epoch() - t0) * 1000.0);
        let term = marks.wait("term", &commit, WAIT).await?;
        figures.push((term - t0) * 1000.0);
        watcher.wait_ended(&[id], WAIT).await?;
        if idle.is_zero() {
            probe.probe(cluster).await?;
        }
    }
    Ok((figures, calls, probe.into_floor()))
}
