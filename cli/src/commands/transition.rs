//! `baton transition disable|enable PIPELINE STAGE` and `baton resume EXECUTION`: the stage
//! policies a person steers by hand.

use baton_proto::v1::{
    DisableStageTransitionRequest, EnableStageTransitionRequest, ResumePipelineExecutionRequest,
    TransitionState,
};

use super::Ctx;
use crate::error::CliError;
use crate::output::{emit, emit_json, execution_status};
use crate::views::{ExecutionView, TransitionView};

/// Who is asking, for "transition disabled by ...": `$BATON_USER`, else `$USER`.
pub fn whoami() -> String {
    std::env::var("BATON_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_default()
}

/// `transition disable PIPELINE STAGE [--reason R] [--by WHO]`.
pub async fn disable(
    ctx: &Ctx,
    pipeline: &str,
    stage: &str,
    reason: &str,
    by: &str,
) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let reply = api
        .client
        .disable_stage_transition(DisableStageTransitionRequest {
            pipeline: pipeline.to_string(),
            stage: stage.to_string(),
            reason: reason.to_string(),
            by: by.to_string(),
        })
        .await
        .map_err(|s| api.error(s))?
        .into_inner();
    show(ctx, stage, reply.transition)
}

/// `transition enable PIPELINE STAGE`.
pub async fn enable(ctx: &Ctx, pipeline: &str, stage: &str) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let reply = api
        .client
        .enable_stage_transition(EnableStageTransitionRequest {
            pipeline: pipeline.to_string(),
            stage: stage.to_string(),
        })
        .await
        .map_err(|s| api.error(s))?
        .into_inner();
    show(ctx, stage, reply.transition)
}

fn show(ctx: &Ctx, stage: &str, t: Option<TransitionState>) -> Result<(), CliError> {
    let t = t.unwrap_or_default();
    if ctx.json() {
        return emit_json(&TransitionView::from(&t));
    }
    emit(&format!(
        "transition into {stage}: {}\n",
        describe_transition(&t)
    ))
}

/// "enabled", or "disabled by alice: freeze".
pub fn describe_transition(t: &TransitionState) -> String {
    if t.enabled {
        return "enabled".into();
    }
    let by = if t.disabled_by.is_empty() {
        "someone"
    } else {
        &t.disabled_by
    };
    if t.reason.is_empty() {
        format!("disabled by {by}")
    } else {
        format!("disabled by {by}: {}", t.reason)
    }
}

/// `resume EXECUTION`: a Paused execution goes on.
pub async fn resume(ctx: &Ctx, execution_id: &str) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let reply = api
        .client
        .resume_pipeline_execution(ResumePipelineExecutionRequest {
            execution_id: execution_id.to_string(),
        })
        .await
        .map_err(|s| api.error_or(s, format!("execution '{execution_id}' not found")))?
        .into_inner();
    let Some(exec) = reply.execution else {
        return emit(&format!("resumed {execution_id}\n"));
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
