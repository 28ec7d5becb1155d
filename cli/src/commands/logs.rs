//! `baton logs JOB [--follow]`: a job's log bytes, written to stdout as they arrive.

use std::io::Write;

use baton_proto::v1::{LogStream, TailJobLogRequest};
use futures::StreamExt;
use serde::Serialize;

use super::Ctx;
use crate::error::CliError;
use crate::output::emit;

#[derive(Serialize)]
struct ChunkView<'a> {
    offset: u64,
    stream: &'static str,
    step: u32,
    data: &'a str,
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
