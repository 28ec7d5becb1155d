//! What an execution does next inside a stage, given its jobs: a pure function.

use crate::store::records::JobStatus;

/// One job as the progress rule sees it.
#[derive(Debug, Clone)]
pub struct JobView<'a> {
    /// The action's name.
    pub action: &'a str,
    /// Its status.
    pub status: JobStatus,
    /// Its last exit code.
    pub exit_code: i32,
    /// What happened, in words.
    pub message: &'a str,
}

/// Where an execution stands in its stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Jobs of the current run order are still queued or running.
    Running,
    /// Every job of this run order succeeded; start the next one.
    Next(u32),
    /// Every action succeeded.
    Succeeded,
    /// An action did not succeed (reason in words).
    Failed(String),
    /// A stop was asked and nothing runs any more.
    Stopped,
}

/// Decides the stage's progress. `orders` are the stage's run orders, ascending; `jobs` are
/// the jobs of run order `current`; `stopping` is true once a stop was asked.
pub fn evaluate(jobs: &[JobView<'_>], orders: &[u32], current: u32, stopping: bool) -> Progress {
    if jobs.iter().any(|j| !j.status.is_final()) {
        return Progress::Running;
    }
    if stopping {
        return Progress::Stopped;
    }
    if let Some(bad) = jobs.iter().find(|j| j.status != JobStatus::Succeeded) {
        let what = match bad.status {
            JobStatus::Failed if bad.message.is_empty() => format!("exit code {}", bad.exit_code),
            JobStatus::Failed => bad.message.to_string(),
            other if bad.message.is_empty() => format!("{other:?}"),
            other => format!("{other:?}: {}", bad.message),
        };
        return Progress::Failed(format!("action {} failed ({what})", bad.action));
    }
    match orders.iter().find(|o| **o > current) {
        Some(next) => Progress::Next(*next),
        None => Progress::Succeeded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: JobStatus, exit_code: i32) -> JobView<'static> {
        JobView {
            action: "build",
            status,
            exit_code,
            message: "",
        }
    }

    #[test]
    fn lower_run_orders_go_first() {
        let jobs = [job(JobStatus::Succeeded, 0)];
        assert_eq!(evaluate(&jobs, &[1, 2], 1, false), Progress::Next(2));
        assert_eq!(evaluate(&jobs, &[1, 2], 2, false), Progress::Succeeded);
    }

    #[test]
    fn a_failure_waits_for_parallel_siblings_then_fails() {
        let running = [job(JobStatus::Failed, 2), job(JobStatus::Running, 0)];
        assert_eq!(evaluate(&running, &[1], 1, false), Progress::Running);
        let done = [job(JobStatus::Failed, 2), job(JobStatus::Succeeded, 0)];
        assert_eq!(
            evaluate(&done, &[1, 2], 1, false),
            Progress::Failed("action build failed (exit code 2)".into())
        );
    }

    #[test]
    fn a_stop_ends_the_stage_once_nothing_runs() {
        assert_eq!(
            evaluate(&[job(JobStatus::Running, 0)], &[1], 1, true),
            Progress::Running
        );
        assert_eq!(
            evaluate(&[job(JobStatus::Succeeded, 0)], &[1, 2], 1, true),
            Progress::Stopped
        );
    }
}
