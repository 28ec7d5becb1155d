//! How results reach the user: status names as DESIGN.md spells them, plain-text tables,
//! durations, and the choice between tables and JSON.
//!
//! Nothing here talks to the network; everything is a pure function of its input (the clock
//! is passed in), so it is unit-tested directly.

use std::io::{self, Write};

use baton_proto::v1::{ExecutionMode, ExecutionStatus, JobStatus, StageStatus, WorkerState};
use serde::Serialize;

use crate::error::CliError;

/// `--output`: tables for people, JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned plain-text tables.
    Table,
    /// One JSON document per command (one per line for streams).
    Json,
}

/// An execution status, spelled as in DESIGN.md ("InProgress", "Superseded", ...).
pub fn execution_status(value: i32) -> &'static str {
    match ExecutionStatus::try_from(value) {
        Ok(ExecutionStatus::InProgress) => "InProgress",
        Ok(ExecutionStatus::Stopping) => "Stopping",
        Ok(ExecutionStatus::Stopped) => "Stopped",
        Ok(ExecutionStatus::Succeeded) => "Succeeded",
        Ok(ExecutionStatus::Failed) => "Failed",
        Ok(ExecutionStatus::Superseded) => "Superseded",
        Ok(ExecutionStatus::Cancelled) => "Cancelled",
        Ok(ExecutionStatus::Paused) => "Paused",
        Ok(ExecutionStatus::Unspecified) => "Unspecified",
        Err(_) => "Unknown",
    }
}

/// True once an execution can no longer change (it will not run again on its own).
pub fn execution_ended(value: i32) -> bool {
    matches!(
        ExecutionStatus::try_from(value),
        Ok(ExecutionStatus::Stopped
            | ExecutionStatus::Succeeded
            | ExecutionStatus::Failed
            | ExecutionStatus::Superseded
            | ExecutionStatus::Cancelled)
    )
}

/// A stage status within an execution ("Pending", "Waiting", "InProgress", ...).
pub fn stage_status(value: i32) -> &'static str {
    match StageStatus::try_from(value) {
        Ok(StageStatus::Pending) => "Pending",
        Ok(StageStatus::Waiting) => "Waiting",
        Ok(StageStatus::InProgress) => "InProgress",
        Ok(StageStatus::Succeeded) => "Succeeded",
        Ok(StageStatus::Failed) => "Failed",
        Ok(StageStatus::Stopping) => "Stopping",
        Ok(StageStatus::Stopped) => "Stopped",
        Ok(StageStatus::Superseded) => "Superseded",
        Ok(StageStatus::Cancelled) => "Cancelled",
        Ok(StageStatus::Unspecified) => "Unspecified",
        Err(_) => "Unknown",
    }
}

/// A job status ("Queued", "Running", "Abandoned", "Lost", ...).
pub fn job_status(value: i32) -> &'static str {
    match JobStatus::try_from(value) {
        Ok(JobStatus::Queued) => "Queued",
        Ok(JobStatus::Running) => "Running",
        Ok(JobStatus::Succeeded) => "Succeeded",
        Ok(JobStatus::Failed) => "Failed",
        Ok(JobStatus::Abandoned) => "Abandoned",
        Ok(JobStatus::Stopped) => "Stopped",
        Ok(JobStatus::Lost) => "Lost",
        Ok(JobStatus::Unspecified) => "Unspecified",
        Err(_) => "Unknown",
    }
}

/// A stage or pipeline execution mode ("Superseded", "Queued", "Parallel").
pub fn execution_mode(value: i32) -> &'static str {
    match ExecutionMode::try_from(value) {
        Ok(ExecutionMode::Superseded) => "Superseded",
        Ok(ExecutionMode::Queued) => "Queued",
        Ok(ExecutionMode::Parallel) => "Parallel",
        Ok(ExecutionMode::Unspecified) => "Unspecified",
        Err(_) => "Unknown",
    }
}

/// A worker's connection state ("Connected", "Draining", "Disconnected", "Lost").
pub fn worker_state(value: i32) -> &'static str {
    match WorkerState::try_from(value) {
        Ok(WorkerState::Connected) => "Connected",
        Ok(WorkerState::Draining) => "Draining",
        Ok(WorkerState::Disconnected) => "Disconnected",
        Ok(WorkerState::Lost) => "Lost",
        Ok(WorkerState::Unspecified) => "Unspecified",
        Err(_) => "Unknown",
    }
}

/// The first seven characters of a commit, as git shows it.
pub fn short_commit(commit: &str) -> &str {
    match commit.char_indices().nth(7) {
        Some((i, _)) => &commit[..i],
        None => commit,
    }
}

/// A duration in milliseconds, short: `850ms`, `4.2s`, `3m04s`, `2h05m`, `3d04h`.
pub fn format_duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    let secs = ms / 1000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if secs < 10 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if secs < 86_400 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else {
        format!("{}d{:02}h", secs / 86_400, (secs % 86_400) / 3600)
    }
}

/// How long ago `at_ms` was, relative to `now_ms` ("3m04s ago"); "-" when unset.
pub fn format_ago(at_ms: i64, now_ms: i64) -> String {
    if at_ms <= 0 {
        "-".into()
    } else {
        format!("{} ago", format_duration_ms(now_ms - at_ms))
    }
}

/// The wall clock as Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `Some(ms)` for a set timestamp, `None` for 0 (JSON shows `null`, not 1970).
pub fn opt_ms(ms: i64) -> Option<i64> {
    (ms > 0).then_some(ms)
}

/// `text`, or "-" when empty (so table columns never collapse).
pub fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.into()
    }
}

/// A plain-text table: a header row, aligned columns, and optional full-width note lines
/// under a row (used for "waiting: ..." lines under a stage).
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Row>,
}

#[derive(Debug)]
enum Row {
    Cells(Vec<String>),
    Note(String),
}

impl Table {
    /// A table with these column headers.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(headers: I) -> Self {
        Self {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra ones are ignored.
    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows
            .push(Row::Cells(cells.into_iter().map(Into::into).collect()));
    }

    /// Adds a free-text line, indented, that does not affect column widths.
    pub fn note(&mut self, text: impl Into<String>) {
        self.rows.push(Row::Note(text.into()));
    }

    /// Renders with two spaces between columns and no trailing blanks.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            if let Row::Cells(cells) = row {
                for (w, cell) in widths.iter_mut().zip(cells) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            let mut text = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                text.push_str(cell);
                if i + 1 < widths.len() {
                    let pad = w.saturating_sub(cell.chars().count()) + 2;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&mut out, &self.headers);
        for row in &self.rows {
            match row {
                Row::Cells(cells) => line(&mut out, cells),
                Row::Note(text) => {
                    out.push_str("    ");
                    out.push_str(text);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// Writes `text` to stdout; a closed pipe becomes [`CliError::StdoutClosed`], not a panic.
pub fn emit(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|err| match err.kind() {
            io::ErrorKind::BrokenPipe => CliError::StdoutClosed,
            _ => CliError::msg(format!("cannot write to stdout: {err}")),
        })
}

/// Prints a value as pretty JSON followed by a newline.
pub fn emit_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|err| CliError::msg(format!("cannot encode JSON: {err}")))?;
    emit(&format!("{text}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_spelled_as_the_design_spells_them() {
        let names: Vec<_> = (1..=8).map(execution_status).collect();
        assert_eq!(
            names,
            [
                "InProgress",
                "Stopping",
                "Stopped",
                "Succeeded",
                "Failed",
                "Superseded",
                "Cancelled",
                "Paused"
            ]
        );
        let jobs: Vec<_> = (1..=7).map(job_status).collect();
        assert_eq!(
            jobs,
            [
                "Queued",
                "Running",
                "Succeeded",
                "Failed",
                "Abandoned",
                "Stopped",
                "Lost"
            ]
        );
        let stages: Vec<_> = (1..=9).map(stage_status).collect();
        assert_eq!(
            stages,
            [
                "Pending",
                "Waiting",
                "InProgress",
                "Succeeded",
                "Failed",
                "Stopping",
                "Stopped",
                "Superseded",
                "Cancelled"
            ]
        );
        assert_eq!(execution_mode(2), "Queued");
        assert_eq!(worker_state(2), "Draining");
        assert_eq!(execution_status(99), "Unknown");
    }

    #[test]
    fn only_final_statuses_count_as_ended() {
        assert!(execution_ended(ExecutionStatus::Superseded as i32));
        assert!(!execution_ended(ExecutionStatus::Paused as i32));
        assert!(!execution_ended(ExecutionStatus::Stopping as i32));
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(format_duration_ms(850), "850ms");
        assert_eq!(format_duration_ms(4_200), "4.2s");
        assert_eq!(format_duration_ms(184_000), "3m04s");
        assert_eq!(format_duration_ms(7_500_000), "2h05m");
        assert_eq!(format_ago(0, 10), "-");
    }

    #[test]
    fn tables_align_and_notes_do_not_widen_columns() {
        let mut t = Table::new(["A", "BB"]);
        t.row(["xyz", "1"]);
        t.note("a very long note that should not widen anything");
        t.row(["q"]);
        assert_eq!(
            t.render(),
            "A    BB\nxyz  1\n    a very long note that should not widen anything\nq\n"
        );
    }

    #[test]
    fn short_commit_is_seven_chars() {
        assert_eq!(short_commit("c0ffee1deadbeef"), "c0ffee1");
        assert_eq!(short_commit("abc"), "abc");
    }
}
