//! `baton approve`, `baton reject`, `baton retry`: a person's say in an execution.

use baton_proto::v1::{
    ApprovalDecision, PutApprovalResultRequest, RetryMode, RetryStageExecutionRequest,
};

use super::Ctx;
use crate::error::CliError;
use crate::output::{emit, emit_json, execution_status};
use crate::views::ExecutionView;

/// The arguments of `approve` and `reject`.
#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// Execution id.
    pub execution: String,
    /// Stage holding the approval.
    pub stage: String,
    /// The approval action.
    pub action: String,
    /// Why, recorded with the decision.
    #[arg(long, default_value = "")]
    pub comment: String,
    /// Who decides. Default: $USER.
    #[arg(long, env = "USER", default_value = "")]
    pub by: String,
}

/// `approve|reject EXECUTION STAGE ACTION [--comment C]`.
pub async fn decide(ctx: &Ctx, args: &DecideArgs, approve: bool) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let decision = if approve {
        ApprovalDecision::Approve
    } else {
        ApprovalDecision::Reject
    };
    let exec = api
        .client
        .put_approval_result(PutApprovalResultRequest {
            execution_id: args.execution.clone(),
            stage: args.stage.clone(),
            action: args.action.clone(),
            decision: decision as i32,
            comment: args.comment.clone(),
            by: args.by.clone(),
        })
        .await
        .map_err(|s| api.error_or(s, format!("execution '{}' not found", args.execution)))?
        .into_inner()
        .execution;
    let Some(exec) = exec else {
        return emit("done\n");
    };
    if ctx.json() {
        return emit_json(&ExecutionView::from(&exec));
    }
    let verb = if approve { "approved" } else { "rejected" };
    emit(&format!(
        "{verb} {} in {} of execution #{}; it is {}\n",
        args.action,
        args.stage,
        exec.number,
        execution_status(exec.status)
    ))
}

/// `retry EXECUTION STAGE [--all]`.
pub async fn retry(ctx: &Ctx, execution: &str, stage: &str, all: bool) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let mode = if all {
        RetryMode::AllActions
    } else {
        RetryMode::FailedActions
    };
    let exec = api
        .client
        .retry_stage_execution(RetryStageExecutionRequest {
            execution_id: execution.to_string(),
            stage: stage.to_string(),
            mode: mode as i32,
        })
        .await
        .map_err(|s| api.error_or(s, format!("execution '{execution}' not found")))?
        .into_inner()
        .execution;
    let Some(exec) = exec else {
        return emit("retry requested\n");
    };
    if ctx.json() {
        return emit_json(&ExecutionView::from(&exec));
    }
    emit(&format!(
        "execution #{} retried in {stage}; it is {}\n",
        exec.number,
        execution_status(exec.status)
    ))
}
