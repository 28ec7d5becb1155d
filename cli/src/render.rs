//! Renders a pipeline's stage state as text: the table `baton state` prints, and the
//! one-line summary the demo prints per event when stdout is not a terminal.
//!
//! Pure functions of a `PipelineState` and the current time; no I/O.

use baton_proto::v1::{PipelineState, SourceRevision, StageState};

use crate::output::{
    Table, execution_mode, execution_status, format_duration_ms, short_commit, stage_status,
};

/// The state table: one row per stage (and lane), waiting executions as lines under their stage.
pub fn render_state(state: &PipelineState, now_ms: i64) -> String {
    let with_lanes = state.stages.iter().any(|s| !s.lane.is_empty());
    let mut headers = vec!["STAGE"];
    if with_lanes {
        headers.push("LANE");
    }
    headers.extend([
        "MODE",
        "HOLDER",
        "COMMIT",
        "BRANCH",
        "SINCE",
        "FENCE",
        "STATUS",
        "LAST OUTCOME",
    ]);
    let mut table = Table::new(headers);
    for stage in &state.stages {
        let mut row = vec![stage.stage.clone()];
        if with_lanes {
            row.push(if stage.lane.is_empty() {
                "-".into()
            } else {
                stage.lane.clone()
            });
        }
        row.push(execution_mode(stage.mode).to_string());
        match &stage.lock {
            Some(h) => {
                let (branch, commit) = branch_commit(h.revision.as_ref());
                row.extend([
                    format!("#{}", h.number),
                    commit,
                    branch,
                    since(h.since_ms, now_ms),
                    h.fence_token.to_string(),
                    execution_status(h.status).to_string(),
                ]);
            }
            None => row.extend(["-", "", "", "", "", ""].map(String::from)),
        }
        row.push(last_outcome(stage));
        table.row(row);
        if let Some(t) = stage.transition.as_ref().filter(|t| !t.enabled) {
            table.note(format!(
                "transition {}",
                crate::commands::transition::describe_transition(t)
            ));
        }
        if let Some(note) = stage
            .lock
            .as_ref()
            .map(|h| &h.note)
            .filter(|n| !n.is_empty())
        {
            table.note(format!("holder: {note}"));
        }
        for h in stage.holders.iter().skip(1) {
            let (branch, commit) = branch_commit(h.revision.as_ref());
            table.note(format!(
                "also holding: #{} {} ({}) for {}, fence {}",
                h.number,
                commit,
                branch,
                since(h.since_ms, now_ms),
                h.fence_token
            ));
        }
        for w in &stage.waiting {
            let (branch, commit) = branch_commit(w.revision.as_ref());
            let reason = if w.reason.is_empty() {
                "waiting".into()
            } else {
                w.reason.clone()
            };
            table.note(format!(
                "waiting: #{} {} ({}) for {} — {}",
                w.number,
                commit,
                branch,
                format_duration_ms(now_ms - w.since_ms),
                reason
            ));
        }
    }
    format!(
        "Pipeline {} (version {})\n{}",
        state.pipeline,
        state.version,
        table.render()
    )
}

/// One line per state: `build: #4 (next #5) | test: idle | deploy: #2`.
pub fn compact_state(state: &PipelineState) -> String {
    state
        .stages
        .iter()
        .map(|s| {
            let name = if s.lane.is_empty() {
                s.stage.clone()
            } else {
                format!("{}[{}]", s.stage, s.lane)
            };
            let holder = s
                .lock
                .as_ref()
                .map_or("idle".to_string(), |h| format!("#{}", h.number));
            let waiting: Vec<String> = s.waiting.iter().map(|w| format!("#{}", w.number)).collect();
            if waiting.is_empty() {
                format!("{name}: {holder}")
            } else {
                format!("{name}: {holder} (next {})", waiting.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The per-pipeline number of an execution the state mentions (holder, waiter, last outcome).
pub fn number_in_state(state: &PipelineState, execution_id: &str) -> Option<u64> {
    state.stages.iter().find_map(|s| {
        s.lock
            .as_ref()
            .filter(|h| h.execution_id == execution_id)
            .map(|h| h.number)
            .or_else(|| {
                s.waiting
                    .iter()
                    .find(|w| w.execution_id == execution_id)
                    .map(|w| w.number)
            })
            .or_else(|| {
                s.last_outcome
                    .as_ref()
                    .filter(|o| o.execution_id == execution_id)
                    .map(|o| o.number)
            })
    })
}

fn branch_commit(rev: Option<&SourceRevision>) -> (String, String) {
    rev.map_or(("-".into(), "-".into()), |r| {
        (r.branch.clone(), short_commit(&r.commit).to_string())
    })
}

fn since(since_ms: i64, now_ms: i64) -> String {
    if since_ms <= 0 {
        "-".into()
    } else {
        format_duration_ms(now_ms - since_ms)
    }
}

fn last_outcome(stage: &StageState) -> String {
    stage.last_outcome.as_ref().map_or("-".into(), |o| {
        format!("#{} {}", o.number, stage_status(o.status))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::v1::{
        ExecutionMode, ExecutionStatus, StageHolder, StageOutcome, StageStatus, StageWaiter,
    };

    fn rev(commit: &str) -> Option<SourceRevision> {
        Some(SourceRevision {
            branch: "main".into(),
            commit: commit.into(),
            ..Default::default()
        })
    }

    fn sample() -> PipelineState {
        let mode = ExecutionMode::Superseded as i32;
        PipelineState {
            pipeline: "web-app".into(),
            version: 3,
            stages: vec![
                StageState {
                    stage: "build".into(),
                    mode,
                    lock: Some(StageHolder {
                        execution_id: "e4".into(),
                        revision: rev("c0ffee4aaaaaaa"),
                        since_ms: 7_000,
                        fence_token: 4,
                        status: ExecutionStatus::InProgress as i32,
                        number: 4,
                        ..Default::default()
                    }),
                    waiting: vec![StageWaiter {
                        execution_id: "e5".into(),
                        revision: rev("c0ffee5"),
                        since_ms: 9_000,
                        reason: "lock held by execution #4 (c0ffee4)".into(),
                        number: 5,
                        ..Default::default()
                    }],
                    fence_token: 4,
                    last_outcome: Some(StageOutcome {
                        execution_id: "e3".into(),
                        status: StageStatus::Succeeded as i32,
                        finished_at_ms: 6_900,
                        number: 3,
                    }),
                    ..Default::default()
                },
                StageState {
                    stage: "test".into(),
                    mode,
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn state_table_shows_holder_waiters_and_last_outcome() {
        let text = render_state(&sample(), 10_000);
        let expected = "\
Pipeline web-app (version 3)
STAGE  MODE        HOLDER  COMMIT   BRANCH  SINCE  FENCE  STATUS      LAST OUTCOME
build  Superseded  #4      c0ffee4  main    3.0s   4      InProgress  #3 Succeeded
    waiting: #5 c0ffee5 (main) for 1.0s — lock held by execution #4 (c0ffee4)
test   Superseded  -                                                  -
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_disabled_transition_and_extra_holders_are_shown_under_their_stage() {
        let mut state = sample();
        state.stages[1].transition = Some(baton_proto::v1::TransitionState {
            enabled: false,
            disabled_by: "alice".into(),
            reason: "freeze".into(),
            since_ms: 1,
        });
        let holder = |n: u64| StageHolder {
            execution_id: format!("e{n}"),
            revision: rev("abcdef1"),
            since_ms: 9_000,
            fence_token: n,
            number: n,
            ..Default::default()
        };
        state.stages[1].holders = vec![holder(6), holder(7)];
        let text = render_state(&state, 10_000);
        assert!(
            text.contains("    transition disabled by alice: freeze\n"),
            "{text}"
        );
        assert!(
            text.contains("    also holding: #7 abcdef1 (main) for 1.0s, fence 7\n"),
            "{text}"
        );
    }

    #[test]
    fn lanes_get_a_column_only_when_used() {
        let mut state = sample();
        state.stages[1].lane = "feature-x".into();
        let text = render_state(&state, 10_000);
        assert!(text.contains("STAGE  LANE       MODE"), "{text}");
    }

    #[test]
    fn compact_state_names_holders_and_next() {
        assert_eq!(compact_state(&sample()), "build: #4 (next #5) | test: idle");
    }

    #[test]
    fn numbers_are_found_for_holders_waiters_and_outcomes() {
        let state = sample();
        assert_eq!(number_in_state(&state, "e4"), Some(4));
        assert_eq!(number_in_state(&state, "e5"), Some(5));
        assert_eq!(number_in_state(&state, "e3"), Some(3));
        assert_eq!(number_in_state(&state, "e9"), None);
    }
}
