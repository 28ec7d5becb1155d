//! `baton workers`: the fleet as the coordinator sees it.

use baton_proto::v1::ListWorkersRequest;

use super::Ctx;
use crate::error::CliError;
use crate::output::{Table, emit, emit_json, format_ago, now_ms};
use crate::views::WorkerView;

/// Lists connected and recently seen workers.
pub async fn run(ctx: &Ctx) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let workers = api
        .client
        .list_workers(ListWorkersRequest {})
        .await
        .map_err(|s| api.error(s))?
        .into_inner()
        .workers;
    let views: Vec<WorkerView> = workers.iter().map(WorkerView::from).collect();
    if ctx.json() {
        return emit_json(&views);
    }
    if views.is_empty() {
        return emit(
            "No workers have connected. Start one with `baton-worker`, or use `baton up`.\n",
        );
    }
    let now = now_ms();
    let mut table = Table::new([
        "WORKER",
        "STATE",
        "SLOTS USED",
        "JOBS",
        "LABELS",
        "LAST SEEN",
    ]);
    for w in &views {
        let labels: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        table.row([
            w.name.clone(),
            w.state.to_string(),
            format!("{}/{}", w.slots_in_use, w.slots),
            if w.running_jobs.is_empty() {
                "-".into()
            } else {
                w.running_jobs.join(",")
            },
            if labels.is_empty() {
                "-".into()
            } else {
                labels.join(",")
            },
            format_ago(w.last_seen_ms.unwrap_or(0), now),
        ]);
    }
    emit(&table.render())
}

/// Drains a worker: no new jobs, running ones finish, then it says goodbye and exits.
pub async fn drain(ctx: &Ctx, name: &str) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let worker = api
        .client
        .drain_worker(baton_proto::v1::DrainWorkerRequest { name: name.into() })
        .await
        .map_err(|s| api.error(s))?
        .into_inner()
        .worker
        .ok_or_else(|| CliError::msg("the coordinator answered without the worker"))?;
    let view = WorkerView::from(&worker);
    if ctx.json() {
        return emit_json(&view);
    }
    emit(&format!(
        "worker {} is draining: it takes no new job and leaves once its {} running job(s) end\n",
        view.name,
        view.running_jobs.len()
    ))
}
