//! `baton logs JOB [--follow]`: a job's log bytes, written to stdout as they arrive, and a
//! last line saying how the job ended once it has.

use std::io::{IsTerminal, Write};

use baton_proto::v1::{Job, LogStream, TailJobLogRequest};
use futures::StreamExt;
use serde::Serialize;

use super::Ctx;
use crate::error::CliError;
use crate::output::{emit, job_status};

#[derive(Serialize)]
struct ChunkView<'a> {
    offset: u64,
    stream: &'static str,
    step: u32,
    data: &'a str,
}

/// The last JSON line when the job has ended.
#[derive(Serialize)]
struct EndView<'a> {
    end: &'a str,
    exit_code: i32,
    steps_done: u32,
    step_count: u32,
    message: &'a str,
}

/// Streams the log; with `follow`, until the job ends.
pub async fn run(ctx: &Ctx, job_id: &str, follow: bool) -> Result<(), CliError> {
    let mut api = ctx.connect().await?;
    let mut chunks = api
        .client
        .tail_job_log(TailJobLogRequest {
            job_id: job_id.to_string(),
            follow,
            offset: 0,
        })
        .await
        .map_err(|s| api.error_or(s, format!("job '{job_id}' not found")))?
        .into_inner();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|s| api.error(s))?;
        if let Some(job) = &chunk.end {
            emit(&end_line(job, ctx.json())?)?;
            continue;
        }
        if ctx.json() {
            let data = String::from_utf8_lossy(&chunk.data);
            let view = ChunkView {
                offset: chunk.offset,
                stream: stream_name(chunk.stream),
                step: chunk.step,
                data: &data,
            };
            let line = serde_json::to_string(&view)
                .map_err(|err| CliError::msg(format!("cannot encode JSON: {err}")))?;
            emit(&format!("{line}\n"))?;
        } else {
            write_raw(&chunk.data)?;
        }
    }
    Ok(())
}

/// `==> job Succeeded: 2/2 steps, exit 0` (coloured on a terminal), or a JSON line.
fn end_line(job: &Job, json: bool) -> Result<String, CliError> {
    let status = job_status(job.status);
    if json {
        let view = EndView {
            end: status,
            exit_code: job.exit_code,
            steps_done: job.steps_done,
            step_count: job.step_count,
            message: &job.message,
        };
        let line = serde_json::to_string(&view)
            .map_err(|err| CliError::msg(format!("cannot encode JSON: {err}")))?;
        return Ok(format!("{line}\n"));
    }
    let mut line = format!(
        "==> job {status}: {}/{} steps, exit {}",
        job.steps_done, job.step_count, job.exit_code
    );
    if !job.message.is_empty() {
        line.push_str(&format!(" ({})", job.message));
    }
    line.push('\n');
    Ok(if std::io::stdout().is_terminal() {
        crate::paint::paint_status_line(&line, status)
    } else {
        line
    })
}

fn stream_name(value: i32) -> &'static str {
    match LogStream::try_from(value) {
        Ok(LogStream::Stdout) => "stdout",
        Ok(LogStream::Stderr) => "stderr",
        Ok(LogStream::System) => "system",
        _ => "unknown",
    }
}

/// Writes bytes as they are (logs need not be UTF-8).
fn write_raw(data: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(data)
        .and_then(|()| out.flush())
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::StdoutClosed,
            _ => CliError::msg(format!("cannot write to stdout: {err}")),
        })
}
