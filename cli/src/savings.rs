//! Worker time saved by superseding, estimated from finished executions.
//!
//! Definition (printed with the result): each superseded execution is charged, for every stage
//! it never ran, the average worker time that stage took in the executions that ran it to
//! success. A stage's worker time is the sum of its jobs' run times (two parallel jobs of 1 s
//! cost 2 worker-seconds); when no job carries times, the stage's own wall time is used.

use std::collections::BTreeMap;

use baton_proto::v1::{ExecutionStatus, PipelineExecution, StageExecution, StageStatus};

/// How the estimate is computed, in words, for the output.
pub const METHOD: &str = "for each superseded execution, every stage it never ran is costed at the average \
worker time (the sum of its jobs' run times) that stage took in the executions that ran it to success";

/// One stage a superseded execution did not have to run, and what it would have cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedStage {
    /// Stage name.
    pub stage: String,
    /// Estimated worker time, ms; `None` when no execution finished that stage to measure it.
    pub cost_ms: Option<u64>,
}

/// What one superseded execution saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionSaving {
    /// The superseded execution's number.
    pub number: u64,
    /// Stages it never ran, in pipeline order.
    pub skipped: Vec<SkippedStage>,
}

impl ExecutionSaving {
    /// Sum of the measured costs, ms.
    pub fn total_ms(&self) -> u64 {
        self.skipped.iter().filter_map(|s| s.cost_ms).sum()
    }
}

/// The estimate for a set of executions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Savings {
    /// One entry per superseded execution, in the order given.
    pub per_execution: Vec<ExecutionSaving>,
}

impl Savings {
    /// Total estimated worker time saved, ms.
    pub fn total_ms(&self) -> u64 {
        self.per_execution
            .iter()
            .map(ExecutionSaving::total_ms)
            .sum()
    }
}

/// Estimates the worker time superseding saved. `stages` is the pipeline's stage order.
pub fn worker_time_saved(executions: &[PipelineExecution], stages: &[String]) -> Savings {
    let mut measured: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for e in executions {
        for s in e
            .stages
            .iter()
            .filter(|s| s.status == StageStatus::Succeeded as i32)
        {
            if let Some(cost) = worker_time_ms(s) {
                let entry = measured.entry(s.stage.as_str()).or_default();
                entry.0 += cost;
                entry.1 += 1;
            }
        }
    }
    let average = |stage: &str| measured.get(stage).map(|(sum, n)| sum / n);
    let per_execution = executions
        .iter()
        .filter(|e| e.status == ExecutionStatus::Superseded as i32)
        .map(|e| ExecutionSaving {
            number: e.number,
            skipped: stages
                .iter()
                .filter(|name| !ran(e, name))
                .map(|name| SkippedStage {
                    stage: name.clone(),
                    cost_ms: average(name),
                })
                .collect(),
        })
        .collect();
    Savings { per_execution }
}

/// True if the execution entered the stage (whatever happened there).
fn ran(e: &PipelineExecution, stage: &str) -> bool {
    e.stages.iter().any(|s| {
        s.stage == stage
            && matches!(
                StageStatus::try_from(s.status),
                Ok(StageStatus::InProgress
                    | StageStatus::Succeeded
                    | StageStatus::Failed
                    | StageStatus::Stopping
                    | StageStatus::Stopped)
            )
    })
}

/// The stage's worker time: its jobs' run times summed, else its wall time.
fn worker_time_ms(s: &StageExecution) -> Option<u64> {
    let span =
        |start: i64, end: i64| (start > 0 && end >= start).then(|| (end - start).unsigned_abs());
    let jobs: Vec<u64> = s
        .jobs
        .iter()
        .filter_map(|j| span(j.started_at_ms, j.finished_at_ms))
        .collect();
    if jobs.is_empty() {
        span(s.started_at_ms, s.finished_at_ms)
    } else {
        Some(jobs.iter().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::v1::Job;

    fn stage(name: &str, status: StageStatus, start: i64, job_ms: &[i64]) -> StageExecution {
        StageExecution {
            stage: name.into(),
            status: status as i32,
            started_at_ms: start,
            finished_at_ms: if start > 0 { start + 1_300 } else { 0 },
            jobs: job_ms
                .iter()
                .map(|ms| Job {
                    started_at_ms: start + 10,
                    finished_at_ms: start + 10 + ms,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn exec(
        number: u64,
        status: ExecutionStatus,
        stages: Vec<StageExecution>,
    ) -> PipelineExecution {
        PipelineExecution {
            number,
            status: status as i32,
            stages,
            ..Default::default()
        }
    }

    fn names() -> Vec<String> {
        ["build", "test", "deploy"].map(String::from).to_vec()
    }

    #[test]
    fn superseded_execution_is_credited_with_the_stages_it_never_ran() {
        use StageStatus::{Pending, Succeeded, Superseded};
        let executions = vec![
            exec(
                1,
                ExecutionStatus::Succeeded,
                vec![
                    stage("build", Succeeded, 1_000, &[1_000]),
                    stage("test", Succeeded, 3_000, &[1_200, 800]),
                    stage("deploy", Succeeded, 5_000, &[1_500]),
                ],
            ),
            exec(
                2,
                ExecutionStatus::Superseded,
                vec![
                    stage("build", Succeeded, 2_000, &[1_400]),
                    stage("test", Superseded, 0, &[]),
                    stage("deploy", Pending, 0, &[]),
                ],
            ),
            exec(
                3,
                ExecutionStatus::Succeeded,
                vec![
                    stage("build", Succeeded, 4_000, &[1_600]),
                    stage("test", Succeeded, 6_000, &[1_000, 1_000]),
                    stage("deploy", Succeeded, 8_000, &[1_500]),
                ],
            ),
        ];
        let savings = worker_time_saved(&executions, &names());
        // test: (2000 + 2000) / 2 parallel-job sums; deploy: 1500 each.
        assert_eq!(
            savings.per_execution,
            vec![ExecutionSaving {
                number: 2,
                skipped: vec![
                    SkippedStage {
                        stage: "test".into(),
                        cost_ms: Some(2_000)
                    },
                    SkippedStage {
                        stage: "deploy".into(),
                        cost_ms: Some(1_500)
                    },
                ],
            }]
        );
        assert_eq!(savings.total_ms(), 3_500);
    }

    #[test]
    fn a_stage_missing_from_the_execution_counts_as_not_run_and_unmeasured_stages_cost_nothing() {
        let executions = vec![exec(4, ExecutionStatus::Superseded, vec![])];
        let savings = worker_time_saved(&executions, &names());
        assert_eq!(savings.per_execution[0].skipped.len(), 3);
        assert!(
            savings.per_execution[0]
                .skipped
                .iter()
                .all(|s| s.cost_ms.is_none())
        );
        assert_eq!(savings.total_ms(), 0);
    }

    #[test]
    fn stage_wall_time_is_used_when_jobs_carry_no_times() {
        let mut only = stage("build", StageStatus::Succeeded, 1_000, &[]);
        only.finished_at_ms = 2_200;
        let executions = vec![
            exec(1, ExecutionStatus::Succeeded, vec![only]),
            exec(2, ExecutionStatus::Superseded, vec![]),
        ];
        let savings = worker_time_saved(&executions, &["build".to_string()]);
        assert_eq!(savings.total_ms(), 1_200);
    }
}
