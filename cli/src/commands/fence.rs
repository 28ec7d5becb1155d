//! `baton fence check`: lets a deploy script refuse to act once its execution no longer holds
//! the stage (a newer one entered, or the job was abandoned). Inside a job every flag defaults
//! to the job's own `BATON_*` variable.

use baton_proto::v1::CheckFenceRequest;
use serde::Serialize;

use super::Ctx;
use crate::error::CliError;
use crate::output::{emit, emit_json};

/// The answer, as `--output json` prints it.
#[derive(Debug, Serialize)]
struct FenceView {
    holds: bool,
    token: u64,
    current_token: u64,
    holder_execution_id: String,
    message: String,
}

/// Exits 0 when `token` still holds `pipeline`/`stage`; otherwise says why and fails.
pub async fn check(ctx: &Ctx, pipeline: &str, stage: &str, token: u64) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let answer = api
        .client
        .check_fence(CheckFenceRequest {
            pipeline: pipeline.into(),
            stage: stage.into(),
            lane: String::new(),
            token,
        })
        .await
        .map_err(|s| api.error(s))?
        .into_inner();
    let view = FenceView {
        holds: answer.holds,
        token,
        current_token: answer.current_token,
        holder_execution_id: answer.holder_execution_id,
        message: answer.message,
    };
    if ctx.json() {
        emit_json(&view)?;
        return if view.holds {
            Ok(())
        } else {
            Err(CliError::AlreadyReported)
        };
    }
    if view.holds {
        emit(&format!(
            "fence token {token} holds {pipeline}/{stage} (execution {})\n",
            view.holder_execution_id
        ))
    } else {
        Err(CliError::msg(view.message))
    }
}
