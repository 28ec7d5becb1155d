//! `baton start`, `baton stop`, `baton executions`, `baton execution`: executions.

use baton_proto::v1::{
    ExecutionStatus, GetPipelineExecutionRequest, ListPipelineExecutionsRequest, PipelineExecution,
    SourceRevision, StageStatus, StartPipelineExecutionRequest, StopMode,
    StopPipelineExecutionRequest, WatchPipelineRequest,
};

use super::Ctx;
use crate::error::CliError;
use crate::output::{
    Table, emit, emit_json, execution_status, format_ago, format_duration_ms, job_status, now_ms,
    or_dash, short_commit, stage_status,
};
use crate::views::ExecutionView;

/// `start PIPELINE --branch B --commit C [--message M] [--tag T] [--pull-request P] [...]`:
/// prints the new execution's id.
pub async fn start(ctx: &Ctx, args: &StartArgs) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let pipeline = &args.pipeline;
    let revision = SourceRevision {
        branch: args.branch.clone(),
        commit: args.commit.clone(),
        message: args.message.clone(),
        trigger: "cli".into(),
        revision_order: args.revision_order.unwrap_or(0),
        tag: args.tag.clone(),
        pull_request: args.pull_request.clone(),
    };
    let reply = api
        .client
        .start_pipeline_execution(StartPipelineExecutionRequest {
            pipeline: pipeline.clone(),
            revision: Some(revision),
            client_request_token: args.request_token.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| api.error_or(s, format!("pipeline '{pipeline}' not found")))?
        .into_inner();
    let id = reply.execution_id;
    if ctx.json() && !args.wait {
        return emit_json(&serde_json::json!({
            "execution_id": id,
            "deduplicated": reply.deduplicated,
        }));
    }
    if reply.deduplicated {
        eprintln!(
            "request token already used: nothing new started, this is the first call's execution"
        );
    }
    if !ctx.json() {
        emit(&format!("{id}\n"))?;
    }
    if !args.wait {
        return Ok(());
    }
    let done = wait_until_ended(&mut api, pipeline, &id, ctx.json()).await?;
    let succeeded = done.status == ExecutionStatus::Succeeded as i32;
    if ctx.json() {
        emit_json(&serde_json::json!({
            "execution_id": id,
            "deduplicated": reply.deduplicated,
            "number": done.number,
            "status": execution_status(done.status),
            "status_reason": done.status_reason,
        }))?;
    } else {
        let mut line = format!("#{} {}", done.number, execution_status(done.status));
        if !done.status_reason.is_empty() {
            line.push_str(&format!(": {}", done.status_reason));
        }
        emit(&format!("{line}\n"))?;
    }
    if succeeded {
        Ok(())
    } else {
        Err(CliError::AlreadyReported)
    }
}

/// Follows execution `id` on WatchPipeline until it has ended, showing where it is.
async fn wait_until_ended(
    api: &mut crate::client::Api,
    pipeline: &str,
    id: &str,
    quiet: bool,
) -> Result<PipelineExecution, CliError> {
    // Subscribed before the first look, so no change falls in between.
    let mut events = api
        .client
        .watch_pipeline(WatchPipelineRequest {
            pipeline: pipeline.to_string(),
            since: None,
        })
        .await
        .map_err(|s| api.error(s))?
        .into_inner();
    let mut progress = crate::progress::Progress::start(quiet);
    loop {
        let exec = api
            .client
            .get_pipeline_execution(GetPipelineExecutionRequest {
                execution_id: id.to_string(),
            })
            .await
            .map_err(|s| api.error(s))?
            .into_inner();
        if has_ended(exec.status) {
            progress.finish();
            return Ok(exec);
        }
        progress.update(&where_it_is(&exec));
        match events.message().await {
            Ok(Some(_)) => {}
            Ok(None) => {
                progress.finish();
                return Err(CliError::msg(format!(
                    "the coordinator ended the watch before #{} ended; see `baton execution {id}`",
                    exec.number
                )));
            }
            Err(status) => {
                progress.finish();
                return Err(api.error(status));
            }
        }
    }
}

/// Whether an execution with this status will not change any more (Paused waits for a resume).
fn has_ended(status: i32) -> bool {
    matches!(
        ExecutionStatus::try_from(status),
        Ok(ExecutionStatus::Succeeded
            | ExecutionStatus::Failed
            | ExecutionStatus::Stopped
            | ExecutionStatus::Superseded
            | ExecutionStatus::Cancelled)
    )
}

/// `#3 in build: compile Running`, `#3 waiting in front of deploy`, `#3 Paused`.
fn where_it_is(exec: &PipelineExecution) -> String {
    let n = exec.number;
    let current = exec.stages.iter().rev().find(|s| {
        matches!(
            StageStatus::try_from(s.status),
            Ok(StageStatus::Waiting | StageStatus::InProgress | StageStatus::Stopping)
        )
    });
    match current {
        Some(s) if s.status == StageStatus::Waiting as i32 => {
            format!("#{n} waiting in front of {}", s.stage)
        }
        Some(s) => {
            let jobs: Vec<String> = s
                .jobs
                .iter()
                .map(|j| format!("{} {}", j.action, job_status(j.status)))
                .collect();
            let mut line = format!("#{n} in {}", s.stage);
            if !jobs.is_empty() {
                line.push_str(&format!(": {}", jobs.join(", ")));
            }
            line
        }
        None => format!("#{n} {}", execution_status(exec.status)),
    }
}

/// `start PIPELINE --branch B --commit C [...]`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Pipeline name.
    pub pipeline: String,
    /// Branch of the revision.
    #[arg(long)]
    pub branch: String,
    /// Commit of the revision.
    #[arg(long)]
    pub commit: String,
    /// Commit message.
    #[arg(long, default_value = "")]
    pub message: String,
    /// The revision's order in its source of truth (commit timestamp, push id, build number):
    /// an older order never displaces a newer one. Default: arrival order decides.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub revision_order: Option<u64>,
    /// Idempotency key: the same token within 24 h returns the first call's execution.
    #[arg(long, value_name = "TOKEN")]
    pub request_token: Option<String>,
    /// Tag built, if any (auto-cancel conditions see it as `tag`).
    #[arg(long, default_value = "")]
    pub tag: String,
    /// Pull request, if any (auto-cancel conditions see it as `pull_request`).
    #[arg(long, default_value = "")]
    pub pull_request: String,
    /// Wait until the execution ends, showing where it is (a spinner on a terminal, a line per
    /// change otherwise); exit 0 only when it succeeded.
    #[arg(long)]
    pub wait: bool,
}

/// `stop EXECUTION [--abandon] [--reason R]`: WAIT drains running jobs; ABANDON terminates them.
pub async fn stop(
    ctx: &Ctx,
    execution_id: &str,
    abandon: bool,
    reason: &str,
) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let mode = if abandon {
        StopMode::Abandon
    } else {
        StopMode::Wait
    };
    let reply = api
        .client
        .stop_pipeline_execution(StopPipelineExecutionRequest {
            execution_id: execution_id.to_string(),
            mode: mode as i32,
            reason: reason.to_string(),
        })
        .await
        .map_err(|s| api.error_or(s, format!("execution '{execution_id}' not found")))?
        .into_inner();
    let Some(exec) = reply.execution else {
        return emit(&format!("stop requested for {execution_id}\n"));
    };
    if ctx.json() {
        return emit_json(&ExecutionView::from(&exec));
    }
    emit(&format!(
        "execution #{} ({}) is {}\n",
        exec.number,
        exec.execution_id,
        execution_status(exec.status)
    ))
}

/// `executions PIPELINE [--limit N]`: newest first.
pub async fn list(ctx: &Ctx, pipeline: &str, limit: u32) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let executions = api
        .client
        .list_pipeline_executions(ListPipelineExecutionsRequest {
            pipeline: pipeline.to_string(),
            limit,
        })
        .await
        .map_err(|s| api.error_or(s, format!("pipeline '{pipeline}' not found")))?
        .into_inner()
        .executions;
    if ctx.json() {
        return emit_json(
            &executions
                .iter()
                .map(ExecutionView::from)
                .collect::<Vec<_>>(),
        );
    }
    if executions.is_empty() {
        return emit(&format!(
            "No executions of {pipeline} yet. Start one with: baton start {pipeline} --branch B --commit C\n"
        ));
    }
    emit(&executions_table(&executions, now_ms()))
}

/// The `baton executions` table.
pub fn executions_table(executions: &[PipelineExecution], now_ms: i64) -> String {
    let mut table = Table::new(["#", "ID", "STATUS", "BRANCH", "COMMIT", "STARTED", "REASON"]);
    for e in executions {
        let rev = e.revision.clone().unwrap_or_default();
        table.row([
            format!("#{}", e.number),
            e.execution_id.clone(),
            execution_status(e.status).to_string(),
            or_dash(&rev.branch),
            or_dash(short_commit(&rev.commit)),
            format_ago(e.created_at_ms, now_ms),
            e.status_reason.clone(),
        ]);
    }
    table.render()
}

/// `execution ID`: stages with status, jobs with status, worker and exit code.
pub async fn show(ctx: &Ctx, execution_id: &str) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let exec = api
        .client
        .get_pipeline_execution(GetPipelineExecutionRequest {
            execution_id: execution_id.to_string(),
        })
        .await
        .map_err(|s| api.error_or(s, format!("execution '{execution_id}' not found")))?
        .into_inner();
    if ctx.json() {
        return emit_json(&ExecutionView::from(&exec));
    }
    emit(&execution_detail(&exec, now_ms()))
}

/// The `baton execution` text: a header, then stages with their jobs underneath.
pub fn execution_detail(e: &PipelineExecution, now_ms: i64) -> String {
    let rev = e.revision.clone().unwrap_or_default();
    let mut out = format!(
        "Execution #{} ({}) of {} v{}\nStatus:   {}{}\nRevision: {} {} {:?} (trigger: {})\nStarted:  {}\n\n",
        e.number,
        e.execution_id,
        e.pipeline,
        e.pipeline_version,
        execution_status(e.status),
        if e.status_reason.is_empty() {
            String::new()
        } else {
            format!(" — {}", e.status_reason)
        },
        or_dash(&rev.branch),
        or_dash(short_commit(&rev.commit)),
        rev.message,
        or_dash(&rev.trigger),
        format_ago(e.created_at_ms, now_ms),
    );
    let mut table = Table::new(["STAGE", "STATUS", "STARTED", "DURATION", "FENCE"]);
    for s in &e.stages {
        table.row([
            s.stage.clone(),
            stage_status(s.status).to_string(),
            format_ago(s.started_at_ms, now_ms),
            span(s.started_at_ms, s.finished_at_ms, now_ms),
            if s.fence_token > 0 {
                s.fence_token.to_string()
            } else {
                "-".into()
            },
        ]);
        for j in &s.jobs {
            let mut line = format!(
                "job {}  {} (attempt {})  {}  worker {}  steps {}/{}  {}",
                j.job_id,
                j.action,
                j.attempt,
                job_status(j.status),
                or_dash(&j.worker),
                j.steps_done,
                j.step_count,
                span(j.started_at_ms, j.finished_at_ms, now_ms),
            );
            if j.finished_at_ms > 0 {
                line.push_str(&format!("  exit {}", j.exit_code));
            }
            if !j.message.is_empty() {
                line.push_str(&format!("  — {}", j.message));
            }
            table.note(line);
        }
    }
    out.push_str(&table.render());
    out
}

/// "1.2s" for a finished span, "3.0s so far" for a running one, "-" if it never started.
fn span(started_ms: i64, finished_ms: i64, now_ms: i64) -> String {
    match (started_ms > 0, finished_ms > 0) {
        (false, _) => "-".into(),
        (true, true) => format_duration_ms(finished_ms - started_ms),
        (true, false) => format!("{} so far", format_duration_ms(now_ms - started_ms)),
    }
}
