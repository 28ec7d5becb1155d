//! `baton state PIPELINE [--watch]`: who holds each stage, who waits and why.
//!
//! `--watch` redraws on every `WatchPipeline` event (no polling): on a terminal it redraws in
//! place, in colour, and also once a second from the last state it fetched so that elapsed
//! times keep counting (that redraw asks the coordinator nothing); otherwise it prints each new
//! state block after the previous one, plain.

use std::io::IsTerminal;

use baton_proto::v1::{
    GetPipelineStateRequest, PipelineEvent, PipelineState, WatchPipelineRequest,
};
use futures::StreamExt;

use super::Ctx;
use crate::client::Api;
use crate::error::CliError;
use crate::output::{emit, emit_json, execution_status, job_status, now_ms, stage_status};
use crate::render::{number_in_state, render_state};
use crate::views::StateView;

/// ANSI: move the cursor home and clear the screen (the redraw replaces the last one in place).
pub const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";

/// Fetches a pipeline's state, naming the pipeline if it does not exist.
pub async fn fetch_state(api: &mut Api, pipeline: &str) -> Result<PipelineState, CliError> {
    api.client
        .get_pipeline_state(GetPipelineStateRequest {
            pipeline: pipeline.to_string(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| api.error_or(s, format!("pipeline '{pipeline}' not found")))
}

/// `state PIPELINE [--watch]`.
pub async fn run(ctx: &Ctx, pipeline: &str, watch: bool) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    if !watch {
        let state = fetch_state(&mut api, pipeline).await?;
        return show(ctx, &state, None, false, false);
    }
    // Subscribe before the first read so that no change falls between the two.
    let mut events = api
        .client
        .watch_pipeline(WatchPipelineRequest {
            pipeline: pipeline.to_string(),
            since: None,
        })
        .await
        .map_err(|s| api.error_or(s, format!("pipeline '{pipeline}' not found")))?
        .into_inner();
    let tty = std::io::stdout().is_terminal();
    let state = fetch_state(&mut api, pipeline).await?;
    show(ctx, &state, None, true, tty)?;
    let mut last: (PipelineState, Option<PipelineEvent>) = (state, None);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                let event = event.map_err(|s| api.error(s))?;
                let state = fetch_state(&mut api, pipeline).await?;
                show(ctx, &state, Some(&event), true, tty)?;
                last = (state, Some(event));
            }
            _ = tick.tick(), if tty && !ctx.json() => {
                show(ctx, &last.0, last.1.as_ref(), true, tty)?;
            }
        }
    }
    Err(CliError::msg("the coordinator closed the watch stream"))
}

/// Prints one state: pretty JSON, one JSON line per state when watching, or the table.
fn show(
    ctx: &Ctx,
    state: &PipelineState,
    event: Option<&PipelineEvent>,
    watch: bool,
    tty: bool,
) -> Result<(), CliError> {
    if ctx.json() {
        if !watch {
            return emit_json(&StateView::from(state));
        }
        let text = serde_json::to_string(&StateView::from(state))
            .map_err(|err| CliError::msg(format!("cannot encode JSON: {err}")))?;
        return emit(&format!("{text}\n"));
    }
    let mut text = String::new();
    if tty {
        text.push_str(CLEAR_SCREEN);
    } else if event.is_some() {
        text.push('\n');
    }
    text.push_str(&render_state(state, now_ms()));
    if let Some(event) = event {
        let mut line = describe_event(event);
        if let Some(n) = number_in_state(state, &event.execution_id) {
            line = line.replacen(&event.execution_id, &format!("#{n}"), 1);
        }
        text.push_str(&format!("last event: {line}\n"));
    }
    if tty {
        text = crate::paint::paint_state(&text);
    }
    emit(&text)
}

/// One line for an event: `<execution id> build job Running — compile running on local-2`.
/// Job ids are left out (they are long; `baton execution ID` lists them).
pub fn describe_event(event: &PipelineEvent) -> String {
    use baton_proto::v1::pipeline_event::Change;
    let what = match event.change {
        Some(Change::ExecutionStatus(s)) => execution_status(s),
        Some(Change::StageStatus(s)) => stage_status(s),
        Some(Change::JobStatus(s)) => job_status(s),
        None => "changed",
    };
    let mut parts = vec![event.execution_id.clone()];
    if !event.stage.is_empty() {
        parts.push(event.stage.clone());
    }
    if !event.job_id.is_empty() {
        parts.push("job".into());
    }
    parts.push(what.to_string());
    let mut line = parts.join(" ");
    if !event.message.is_empty() && !event.message.eq_ignore_ascii_case(what) {
        line.push_str(" — ");
        line.push_str(&event.message);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::v1::{JobStatus, pipeline_event::Change};

    #[test]
    fn job_events_leave_out_the_job_id_and_repeated_words() {
        let event = PipelineEvent {
            execution_id: "e1".into(),
            stage: "build".into(),
            job_id: "0192-long-uuid".into(),
            change: Some(Change::JobStatus(JobStatus::Running as i32)),
            message: "compile running on local-2".into(),
            ..Default::default()
        };
        assert_eq!(
            describe_event(&event),
            "e1 build job Running — compile running on local-2"
        );
        let done = PipelineEvent {
            execution_id: "e1".into(),
            job_id: "0192-long-uuid".into(),
            change: Some(Change::JobStatus(JobStatus::Succeeded as i32)),
            message: "succeeded".into(),
            ..Default::default()
        };
        assert_eq!(describe_event(&done), "e1 job Succeeded");
    }
}
