//! Conversions between the pipeline model and its `baton.v1` protobuf form.
//!
//! Durations travel as whole milliseconds (`timeout_ms` 0 means no timeout). A stage without
//! its own mode is sent as `EXECUTION_MODE_UNSPECIFIED`. [`from_proto`] applies the same rules
//! as the pipeline file, because a definition can arrive from any gRPC client.

use std::time::Duration;

use baton_proto::v1::{ActionDefinition, ExecutionMode, PipelineDefinition, StageDefinition};

use super::model::{ActionSpec, CancelSignal, Mode, PipelineSpec, RetryPolicy, StageSpec};

/// The protobuf enum value for a mode.
pub fn mode_to_proto(mode: Mode) -> ExecutionMode {
    match mode {
        Mode::Superseded => ExecutionMode::Superseded,
        Mode::Queued => ExecutionMode::Queued,
        Mode::Parallel => ExecutionMode::Parallel,
    }
}

/// The mode for a protobuf enum value: `None` for UNSPECIFIED, an error for unknown values.
pub fn mode_from_proto(value: i32) -> Result<Option<Mode>, String> {
    match ExecutionMode::try_from(value) {
        Ok(ExecutionMode::Unspecified) => Ok(None),
        Ok(ExecutionMode::Superseded) => Ok(Some(Mode::Superseded)),
        Ok(ExecutionMode::Queued) => Ok(Some(Mode::Queued)),
        Ok(ExecutionMode::Parallel) => Ok(Some(Mode::Parallel)),
        Err(_) => Err(format!("unknown execution mode {value}")),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The protobuf form of a pipeline definition.
pub fn to_proto(spec: &PipelineSpec) -> PipelineDefinition {
    PipelineDefinition {
        name: spec.name.clone(),
        mode: mode_to_proto(spec.mode).into(),
        stages: spec.stages.iter().map(stage_to_proto).collect(),
    }
}

fn stage_to_proto(stage: &StageSpec) -> StageDefinition {
    StageDefinition {
        name: stage.name.clone(),
        mode: stage
            .mode
            .map_or(ExecutionMode::Unspecified, mode_to_proto)
            .into(),
        actions: stage.actions.iter().map(action_to_proto).collect(),
    }
}

fn action_to_proto(action: &ActionSpec) -> ActionDefinition {
    ActionDefinition {
        name: action.name.clone(),
        run_order: action.run_order,
        steps: action.steps.clone(),
        labels: action.labels.clone().into_iter().collect(),
        timeout_ms: action.timeout.map_or(0, millis),
        grace_ms: millis(action.grace),
        env: action.env.clone().into_iter().collect(),
        retry: Some(baton_proto::v1::RetryPolicy {
            lost: action.retry.lost,
        }),
        cancel_signal: action.cancel_signal.as_str().to_string(),
    }
}

/// The model for a protobuf definition, validated with the pipeline-file rules.
///
/// A pipeline mode of UNSPECIFIED means the default (superseded); `timeout_ms` 0 means no
/// timeout; `grace_ms` is taken as given (0 kills at once).
pub fn from_proto(def: &PipelineDefinition) -> Result<PipelineSpec, String> {
    let spec = PipelineSpec {
        name: def.name.clone(),
        mode: mode_from_proto(def.mode)
            .map_err(|e| format!("pipeline `{}`: {e}", def.name))?
            .unwrap_or_default(),
        stages: def
            .stages
            .iter()
            .map(stage_from_proto)
            .collect::<Result<_, _>>()?,
    };
    spec.validate()?;
    Ok(spec)
}

fn stage_from_proto(stage: &StageDefinition) -> Result<StageSpec, String> {
    Ok(StageSpec {
        name: stage.name.clone(),
        mode: mode_from_proto(stage.mode).map_err(|e| format!("stage `{}`: {e}", stage.name))?,
        actions: stage
            .actions
            .iter()
            .map(action_from_proto)
            .collect::<Result<_, _>>()?,
    })
}

fn action_from_proto(action: &ActionDefinition) -> Result<ActionSpec, String> {
    Ok(ActionSpec {
        name: action.name.clone(),
        run_order: action.run_order,
        steps: action.steps.clone(),
        labels: action.labels.clone().into_iter().collect(),
        timeout: (action.timeout_ms > 0).then(|| Duration::from_millis(action.timeout_ms)),
        grace: Duration::from_millis(action.grace_ms),
        env: action.env.clone().into_iter().collect(),
        retry: RetryPolicy {
            lost: action.retry.as_ref().map_or(0, |r| r.lost),
        },
        cancel_signal: CancelSignal::parse(&action.cancel_signal)
            .map_err(|e| format!("action `{}`: {e}", action.name))?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::pipeline::DEFAULT_GRACE;

    fn sample() -> PipelineSpec {
        let action = |name: &str, run_order| ActionSpec {
            name: name.into(),
            run_order,
            steps: vec!["cargo build".into(), "cargo test".into()],
            labels: BTreeMap::from([("os".into(), "linux".into())]),
            timeout: None,
            grace: DEFAULT_GRACE,
            env: BTreeMap::new(),
            retry: RetryPolicy { lost: 2 },
            cancel_signal: CancelSignal::Hup,
        };
        PipelineSpec {
            name: "web-app".into(),
            mode: Mode::Queued,
            stages: vec![
                StageSpec {
                    name: "build".into(),
                    mode: None,
                    actions: vec![
                        ActionSpec {
                            timeout: Some(Duration::from_secs(600)),
                            grace: Duration::from_millis(2_500),
                            env: BTreeMap::from([("RUST_LOG".into(), "info".into())]),
                            ..action("compile", 1)
                        },
                        action("lint", 1),
                        action("package", 2),
                    ],
                },
                StageSpec {
                    name: "deploy".into(),
                    mode: Some(Mode::Superseded),
                    actions: vec![ActionSpec {
                        grace: Duration::ZERO,
                        ..action("ship", 1)
                    }],
                },
                StageSpec {
                    name: "smoke".into(),
                    mode: Some(Mode::Parallel),
                    actions: vec![action("probe", 1)],
                },
            ],
        }
    }

    #[test]
    fn model_round_trips_through_proto() {
        let spec = sample();
        let def = to_proto(&spec);
        assert_eq!(from_proto(&def), Ok(spec));
    }

    #[test]
    fn proto_carries_modes_and_durations_as_documented() {
        let def = to_proto(&sample());
        assert_eq!(def.mode, ExecutionMode::Queued as i32);
        assert_eq!(def.stages[0].mode, ExecutionMode::Unspecified as i32);
        assert_eq!(def.stages[1].mode, ExecutionMode::Superseded as i32);
        assert_eq!(def.stages[2].mode, ExecutionMode::Parallel as i32);
        let compile = &def.stages[0].actions[0];
        assert_eq!((compile.timeout_ms, compile.grace_ms), (600_000, 2_500));
        assert_eq!(def.stages[0].actions[1].timeout_ms, 0);
    }

    #[test]
    fn unspecified_pipeline_mode_means_superseded() {
        let mut def = to_proto(&sample());
        def.mode = ExecutionMode::Unspecified as i32;
        let spec = from_proto(&def).expect("valid definition");
        assert_eq!(spec.mode, Mode::Superseded);
    }

    #[test]
    fn from_proto_rejects_what_the_file_rejects() {
        let mut def = to_proto(&sample());
        def.stages[1].name = "build".into();
        let err = from_proto(&def).expect_err("duplicate stage");
        assert!(err.contains("two stages named `build`"), "{err}");

        let mut def = to_proto(&sample());
        def.stages[0].actions[0].run_order = 0;
        let err = from_proto(&def).expect_err("run order 0");
        assert!(err.contains("`run_order` starts at 1"), "{err}");

        let mut def = to_proto(&sample());
        def.stages[0].mode = 42;
        let err = from_proto(&def).expect_err("unknown mode");
        assert!(err.contains("unknown execution mode 42"), "{err}");

        let mut def = to_proto(&sample());
        def.stages.clear();
        assert!(from_proto(&def).is_err());
    }
}
