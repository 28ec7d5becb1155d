//! `baton up --demo`: five quick pushes to `web-app`, shown live, then a summary of what ran,
//! what was superseded (and by whom), and the worker time superseding saved.
//!
//! The view is redrawn on `WatchPipeline` events, never on a timer: each event (or burst of
//! events already waiting) triggers one `GetPipelineState` and one `ListPipelineExecutions`.
//! On a terminal the screen is redrawn in place; otherwise one plain line per event is printed.

use std::time::Duration;

use baton_proto::v1::{
    GetPipelineExecutionRequest, ListPipelineExecutionsRequest, PipelineEvent, PipelineExecution,
    PipelineState, SourceRevision, StartPipelineExecutionRequest, WatchPipelineRequest,
};
use futures::{FutureExt, StreamExt};
use serde::Serialize;
use tokio::time::Instant;

use crate::client::Api;
use crate::commands::state::{CLEAR_SCREEN, describe_event, fetch_state};
use crate::error::CliError;
use crate::output::{
    OutputFormat, Table, emit, emit_json, execution_ended, execution_status, format_duration_ms,
    now_ms, short_commit,
};
use crate::render::{compact_state, render_state};
use crate::savings::{METHOD, Savings, worker_time_saved};
use crate::views::ExecutionView;

/// The pipeline the demo pushes to (examples/three-stage.yaml).
pub const PIPELINE: &str = "web-app";
/// The branch the demo pushes to.
const BRANCH: &str = "main";
/// How many revisions are pushed.
const PUSHES: usize = 5;
/// Time between pushes.
const PUSH_INTERVAL: Duration = Duration::from_millis(300);
/// Give up when nothing happens for this long (no worker, a stuck job).
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// Runs the demo against a freshly started local cluster.
pub async fn run(api: &mut Api, output: OutputFormat, tty: bool) -> Result<(), CliError> {
    let live = output == OutputFormat::Table;
    // Subscribe before the first read so that no change falls between the two.
    let mut events = match api
        .client
        .watch_pipeline(WatchPipelineRequest {
            pipeline: PIPELINE.to_string(),
        })
        .await
    {
        Ok(reply) => reply.into_inner(),
        Err(status) if status.code() == tonic::Code::NotFound => {
            return Err(CliError::msg(format!(
                "the demo needs pipeline '{PIPELINE}' (examples/three-stage.yaml): run `baton up --demo` \
                 from the repository root, or pass --examples DIR"
            )));
        }
        Err(status) => return Err(api.error(status)),
    };
    let mut state = fetch_state(api, PIPELINE).await?;
    let started = Instant::now();
    let mut ids: Vec<String> = Vec::new();
    let mut next_push = started;
    let mut last_progress = started;
    if live && tty {
        emit(&live_view(&state, &[], None, started))?;
    } else if live {
        emit(&format!(
            "Pushing {PUSHES} revisions of {BRANCH} to {PIPELINE}, {} ms apart\n",
            PUSH_INTERVAL.as_millis()
        ))?;
    }
    loop {
        let pushing = ids.len() < PUSHES;
        let mut burst: Vec<PipelineEvent> = Vec::new();
        let mut pushed: Option<String> = None;
        tokio::select! {
            () = tokio::time::sleep_until(next_push), if pushing => {
                let n = ids.len() + 1;
                let id = push(api, n).await?;
                pushed = Some(id.clone());
                ids.push(id);
                next_push += PUSH_INTERVAL;
            }
            event = events.next() => {
                let event = match event {
                    Some(event) => event.map_err(|s| api.error(s))?,
                    None => return Err(CliError::msg("the coordinator closed the watch stream")),
                };
                // Take every event already waiting: one redraw per burst.
                burst.push(event);
                loop {
                    match events.next().now_or_never() {
                        Some(Some(Ok(more))) => burst.push(more),
                        Some(Some(Err(status))) => return Err(api.error(status)),
                        _ => break,
                    }
                }
            }
            () = tokio::time::sleep_until(last_progress + STALL_LIMIT) => {
                return Err(CliError::msg(format!(
                    "the demo made no progress for {} s — are workers connected? (check with `baton workers`)",
                    STALL_LIMIT.as_secs()
                )));
            }
        }
        last_progress = Instant::now();
        state = fetch_state(api, PIPELINE).await?;
        let executions = demo_executions(api, &ids).await?;
        if live && tty {
            emit(&live_view(&state, &executions, burst.last(), started))?;
        } else if live {
            let mut lines: Vec<String> = burst.iter().map(|e| event_line(e, &executions)).collect();
            if let Some(id) = &pushed {
                lines.push(push_line(id, &executions));
            }
            let last = lines.len().saturating_sub(1);
            let mut text = String::new();
            for (i, line) in lines.iter().enumerate() {
                text.push_str(&format!("[{}] {line}", stamp(started)));
                if i == last {
                    text.push_str(&format!("  |  {}", compact_state(&state)));
                }
                text.push('\n');
            }
            emit(&text)?;
        }
        if ids.len() == PUSHES
            && executions.len() == PUSHES
            && executions.iter().all(|e| execution_ended(e.status))
        {
            break;
        }
    }

    // Full detail (stages and jobs with times) for the summary.
    let mut finished = Vec::new();
    for id in &ids {
        let detail = api
            .client
            .get_pipeline_execution(GetPipelineExecutionRequest {
                execution_id: id.clone(),
            })
            .await
            .map_err(|s| api.error(s))?
            .into_inner();
        finished.push(detail);
    }
    finished.sort_by_key(|e| e.number);
    let stages = stage_names(&state);
    let savings = worker_time_saved(&finished, &stages);
    if live {
        emit(&summary(&finished, &savings, started.elapsed()))
    } else {
        emit_json(&summary_json(&finished, &savings))
    }
}

/// Starts execution `n` of the burst.
async fn push(api: &mut Api, n: usize) -> Result<String, CliError> {
    let revision = SourceRevision {
        branch: BRANCH.into(),
        commit: format!("c0ffee{n}"),
        message: format!("demo push {n}"),
        trigger: "demo".into(),
        ..Default::default()
    };
    api.client
        .start_pipeline_execution(StartPipelineExecutionRequest {
            pipeline: PIPELINE.into(),
            revision: Some(revision),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().execution_id)
        .map_err(|s| api.error(s))
}

/// The demo's executions, in push order.
async fn demo_executions(
    api: &mut Api,
    ids: &[String],
) -> Result<Vec<PipelineExecution>, CliError> {
    let all = api
        .client
        .list_pipeline_executions(ListPipelineExecutionsRequest {
            pipeline: PIPELINE.into(),
            limit: 100,
        })
        .await
        .map_err(|s| api.error(s))?
        .into_inner()
        .executions;
    Ok(ids
        .iter()
        .filter_map(|id| all.iter().find(|e| &e.execution_id == id).cloned())
        .collect())
}

/// Stage names in pipeline order (one per stage, whatever the lanes).
fn stage_names(state: &PipelineState) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in &state.stages {
        if !names.contains(&s.stage) {
            names.push(s.stage.clone());
        }
    }
    names
}

fn stamp(started: Instant) -> String {
    format!("+{:.1}s", started.elapsed().as_secs_f64())
}

/// An event line with `#n` in place of the execution id when we know the number.
fn event_line(event: &PipelineEvent, executions: &[PipelineExecution]) -> String {
    let line = describe_event(event);
    match executions
        .iter()
        .find(|e| e.execution_id == event.execution_id)
    {
        Some(e) if !event.execution_id.is_empty() => {
            line.replacen(&event.execution_id, &format!("#{}", e.number), 1)
        }
        _ => line,
    }
}

/// `pushed c0ffee2 "demo push 2" -> #2`.
fn push_line(id: &str, executions: &[PipelineExecution]) -> String {
    match executions.iter().find(|e| e.execution_id == id) {
        Some(e) => {
            let rev = e.revision.clone().unwrap_or_default();
            format!("pushed {} \"{}\" -> #{}", rev.commit, rev.message, e.number)
        }
        None => format!("pushed -> execution {id}"),
    }
}

/// The full-screen view: stage table, the demo's executions, the last event.
fn live_view(
    state: &PipelineState,
    executions: &[PipelineExecution],
    event: Option<&PipelineEvent>,
    started: Instant,
) -> String {
    let mut out = format!(
        "{CLEAR_SCREEN}Baton demo: {PUSHES} pushes to {PIPELINE} ({BRANCH}), {} ms apart   [{}]\n\n",
        PUSH_INTERVAL.as_millis(),
        stamp(started)
    );
    out.push_str(&render_state(state, now_ms()));
    out.push('\n');
    out.push_str(&executions_table(executions));
    if let Some(event) = event {
        out.push_str(&format!(
            "\nlast event: {}\n",
            event_line(event, executions)
        ));
    }
    out
}

fn executions_table(executions: &[PipelineExecution]) -> String {
    let mut table = Table::new(["#", "COMMIT", "MESSAGE", "STATUS", "REASON"]);
    for e in executions {
        let rev = e.revision.clone().unwrap_or_default();
        table.row([
            format!("#{}", e.number),
            short_commit(&rev.commit).to_string(),
            rev.message,
            execution_status(e.status).to_string(),
            e.status_reason.clone(),
        ]);
    }
    table.render()
}

/// The closing text: who ran to the end, who was superseded and by whom, time saved.
fn summary(executions: &[PipelineExecution], savings: &Savings, took: Duration) -> String {
    let mut out = format!(
        "\nAll {} executions have ended after {:.1} s.\n",
        executions.len(),
        took.as_secs_f64()
    );
    let line = |e: &PipelineExecution| {
        let rev = e.revision.clone().unwrap_or_default();
        let reason = if e.status_reason.is_empty() {
            String::new()
        } else {
            format!(" — {}", e.status_reason)
        };
        format!(
            "  #{} {} \"{}\"{}\n",
            e.number,
            short_commit(&rev.commit),
            rev.message,
            reason
        )
    };
    for (title, status) in [
        ("Ran to the end (Succeeded)", "Succeeded"),
        ("Superseded", "Superseded"),
    ] {
        out.push_str(&format!("\n{title}:\n"));
        let matching: Vec<_> = executions
            .iter()
            .filter(|e| execution_status(e.status) == status)
            .collect();
        if matching.is_empty() {
            out.push_str("  none\n");
        }
        matching.into_iter().for_each(|e| out.push_str(&line(e)));
    }
    let others: Vec<_> = executions
        .iter()
        .filter(|e| !matches!(execution_status(e.status), "Succeeded" | "Superseded"))
        .collect();
    if !others.is_empty() {
        out.push_str("\nOther endings:\n");
        for e in others {
            out.push_str(&format!("  [{}]{}", execution_status(e.status), line(e)));
        }
    }
    out.push_str(&format!(
        "\nWorker time saved by superseding: {:.1} worker-seconds\n",
        savings.total_ms() as f64 / 1000.0
    ));
    for s in &savings.per_execution {
        let parts: Vec<String> = s
            .skipped
            .iter()
            .map(|k| match k.cost_ms {
                Some(ms) => format!(
                    "{} {}",
                    k.stage,
                    format_duration_ms(i64::try_from(ms).unwrap_or(i64::MAX))
                ),
                None => format!("{} (not measured)", k.stage),
            })
            .collect();
        let parts = if parts.is_empty() {
            "nothing".to_string()
        } else {
            parts.join(" + ")
        };
        let total = format_duration_ms(i64::try_from(s.total_ms()).unwrap_or(i64::MAX));
        out.push_str(&format!("  #{} skipped {parts} = {total}\n", s.number));
    }
    out.push_str(&format!("  (How: {METHOD}.)\n"));
    out
}

#[derive(Serialize)]
struct SummaryJson {
    executions: Vec<ExecutionView>,
    succeeded: Vec<u64>,
    superseded: Vec<u64>,
    worker_seconds_saved: f64,
    method: &'static str,
}

fn summary_json(executions: &[PipelineExecution], savings: &Savings) -> SummaryJson {
    let numbers = |status: &str| {
        executions
            .iter()
            .filter(|e| execution_status(e.status) == status)
            .map(|e| e.number)
            .collect()
    };
    SummaryJson {
        executions: executions.iter().map(ExecutionView::from).collect(),
        succeeded: numbers("Succeeded"),
        superseded: numbers("Superseded"),
        worker_seconds_saved: savings.total_ms() as f64 / 1000.0,
        method: METHOD,
    }
}
