//! Conversions between the pipeline model and its `baton.v1` protobuf form.
//!
//! Durations travel as whole milliseconds (`timeout_ms` 0 means no timeout). A stage without
//! its own mode is sent as `EXECUTION_MODE_UNSPECIFIED`. [`from_proto`] applies the same rules
//! as the pipeline file, because a definition can arrive from any gRPC client.

use std::time::Duration;

use baton_proto::v1::{
    self as pb, ActionDefinition, ExecutionMode, PipelineDefinition, StageDefinition,
};

use super::model::{
    ActionSpec, ApprovalSpec, AutoCancel, CancelSignal, CancelStop, ConcurrencyKey, Condition,
    DEFAULT_APPROVAL_TIMEOUT, DEFAULT_MAX_WAIT_FACTOR, LaneScope, Lanes, Mode, PipelineSpec,
    QueueOrder, RetryPolicy, Settle, StageSpec, WhenBusy,
};

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
        lanes: match spec.lanes {
            Lanes::Single => pb::Lanes::Single,
            Lanes::Branch => pb::Lanes::Branch,
        }
        .into(),
        auto_cancel: Some(pb::AutoCancel {
            queued: spec.auto_cancel.queued.as_ref().map(rule_to_proto),
            running: spec.auto_cancel.running.as_ref().map(rule_to_proto),
        }),
        concurrency_key: match spec.concurrency_key {
            ConcurrencyKey::Branch => pb::ConcurrencyKey::Branch,
            ConcurrencyKey::Pipeline => pb::ConcurrencyKey::Pipeline,
        }
        .into(),
    }
}

fn rule_to_proto(c: &Condition) -> pb::AutoCancelRule {
    pb::AutoCancelRule {
        when: c.expr.clone(),
    }
}

fn rule_from_proto(r: &pb::AutoCancelRule) -> Condition {
    Condition {
        expr: if r.when.trim().is_empty() {
            "true".into()
        } else {
            r.when.clone()
        },
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
        interruptible: Some(!stage.uninterruptible),
        on_cancel: match stage.on_cancel {
            CancelStop::Abandon => pb::CancelStop::Abandon,
            CancelStop::Drain => pb::CancelStop::Drain,
        }
        .into(),
        order: stage
            .order
            .map_or(pb::QueueOrder::Unspecified, |o| match o {
                QueueOrder::Fifo => pb::QueueOrder::Fifo,
                QueueOrder::NewestFirst => pb::QueueOrder::NewestFirst,
                QueueOrder::NewestReadyFirst => pb::QueueOrder::NewestReadyFirst,
            }) as i32,
        capacity: stage.capacity.unwrap_or(0),
        when_busy: match stage.when_busy {
            WhenBusy::Supersede => pb::WhenBusy::Supersede,
            WhenBusy::Pause => pb::WhenBusy::Pause,
            WhenBusy::CancelRunning => pb::WhenBusy::CancelRunning,
        } as i32,
        settle_ms: stage.settle.map_or(0, |s| millis(s.window)),
        max_wait_ms: stage.settle.map_or(0, |s| millis(s.max_wait)),
        lane: match stage.lane {
            LaneScope::PerLane => pb::LaneScope::PerLane,
            LaneScope::Shared => pb::LaneScope::Shared,
        } as i32,
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
        approval: action.approval.map(|a| pb::ApprovalDefinition {
            timeout_ms: millis(a.timeout),
            follow_latest: a.follow_latest,
        }),
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
        lanes: match pb::Lanes::try_from(def.lanes) {
            Ok(pb::Lanes::Unspecified | pb::Lanes::Single) => Lanes::Single,
            Ok(pb::Lanes::Branch) => Lanes::Branch,
            Err(_) => {
                return Err(format!(
                    "pipeline `{}`: unknown lanes {}",
                    def.name, def.lanes
                ));
            }
        },
        stages: def
            .stages
            .iter()
            .map(stage_from_proto)
            .collect::<Result<_, _>>()?,
        auto_cancel: def
            .auto_cancel
            .as_ref()
            .map(|ac| AutoCancel {
                queued: ac.queued.as_ref().map(rule_from_proto),
                running: ac.running.as_ref().map(rule_from_proto),
            })
            .unwrap_or_default(),
        concurrency_key: match pb::ConcurrencyKey::try_from(def.concurrency_key) {
            Ok(pb::ConcurrencyKey::Pipeline) => ConcurrencyKey::Pipeline,
            Ok(_) => ConcurrencyKey::Branch,
            Err(_) => {
                return Err(format!(
                    "pipeline `{}`: unknown concurrency key {}",
                    def.name, def.concurrency_key
                ));
            }
        },
    };
    spec.validate()?;
    Ok(spec)
}

fn stage_from_proto(stage: &StageDefinition) -> Result<StageSpec, String> {
    let bad = |what: &str, v: i32| format!("stage `{}`: unknown {what} {v}", stage.name);
    let order = match pb::QueueOrder::try_from(stage.order) {
        Ok(pb::QueueOrder::Unspecified) => None,
        Ok(pb::QueueOrder::Fifo) => Some(QueueOrder::Fifo),
        Ok(pb::QueueOrder::NewestFirst) => Some(QueueOrder::NewestFirst),
        Ok(pb::QueueOrder::NewestReadyFirst) => Some(QueueOrder::NewestReadyFirst),
        Err(_) => return Err(bad("order", stage.order)),
    };
    let when_busy = match pb::WhenBusy::try_from(stage.when_busy) {
        Ok(pb::WhenBusy::Unspecified | pb::WhenBusy::Supersede) => WhenBusy::Supersede,
        Ok(pb::WhenBusy::Pause) => WhenBusy::Pause,
        Ok(pb::WhenBusy::CancelRunning) => WhenBusy::CancelRunning,
        Err(_) => return Err(bad("when_busy", stage.when_busy)),
    };
    let lane = match pb::LaneScope::try_from(stage.lane) {
        Ok(pb::LaneScope::Unspecified | pb::LaneScope::PerLane) => LaneScope::PerLane,
        Ok(pb::LaneScope::Shared) => LaneScope::Shared,
        Err(_) => return Err(bad("lane", stage.lane)),
    };
    let settle = (stage.settle_ms > 0).then(|| {
        let window = Duration::from_millis(stage.settle_ms);
        Settle {
            window,
            max_wait: match stage.max_wait_ms {
                0 => window * DEFAULT_MAX_WAIT_FACTOR,
                ms => Duration::from_millis(ms),
            },
        }
    });
    Ok(StageSpec {
        name: stage.name.clone(),
        mode: mode_from_proto(stage.mode).map_err(|e| format!("stage `{}`: {e}", stage.name))?,
        order,
        capacity: (stage.capacity > 0).then_some(stage.capacity),
        when_busy,
        settle,
        lane,
        actions: stage
            .actions
            .iter()
            .map(action_from_proto)
            .collect::<Result<_, _>>()?,
        uninterruptible: stage.interruptible == Some(false),
        on_cancel: match pb::CancelStop::try_from(stage.on_cancel) {
            Ok(pb::CancelStop::Drain) => CancelStop::Drain,
            Ok(_) => CancelStop::Abandon,
            Err(_) => {
                return Err(format!(
                    "stage `{}`: unknown on_cancel {}",
                    stage.name, stage.on_cancel
                ));
            }
        },
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
        approval: action.approval.as_ref().map(|a| ApprovalSpec {
            timeout: if a.timeout_ms == 0 {
                DEFAULT_APPROVAL_TIMEOUT
            } else {
                Duration::from_millis(a.timeout_ms)
            },
            follow_latest: a.follow_latest,
        }),
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
            approval: None,
            retry: RetryPolicy { lost: 2 },
            cancel_signal: CancelSignal::Hup,
        };
        PipelineSpec {
            name: "web-app".into(),
            mode: Mode::Queued,
            lanes: Default::default(),
            stages: vec![
                StageSpec {
                    name: "build".into(),
                    mode: None,
                    uninterruptible: false,
                    on_cancel: CancelStop::Abandon,
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
                    ..Default::default()
                },
                StageSpec {
                    name: "deploy".into(),
                    mode: Some(Mode::Superseded),
                    actions: vec![ActionSpec {
                        grace: Duration::ZERO,
                        ..action("ship", 1)
                    }],
                    ..Default::default()
                },
                StageSpec {
                    name: "smoke".into(),
                    mode: Some(Mode::Parallel),
                    actions: vec![
                        action("probe", 1),
                        ActionSpec {
                            steps: Vec::new(),
                            labels: BTreeMap::new(),
                            approval: Some(ApprovalSpec {
                                timeout: Duration::from_secs(3600),
                                follow_latest: true,
                            }),
                            ..action("sign-off", 2)
                        },
                    ],
                    uninterruptible: true,
                    on_cancel: CancelStop::Drain,
                    ..Default::default()
                },
            ],
            auto_cancel: AutoCancel {
                queued: Some(Condition {
                    expr: "true".into(),
                }),
                running: Some(Condition {
                    expr: "branch != 'master'".into(),
                }),
            },
            concurrency_key: ConcurrencyKey::Pipeline,
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

        let mut def = to_proto(&sample());
        if let Some(ac) = def.auto_cancel.as_mut() {
            ac.queued = Some(pb::AutoCancelRule {
                when: "brnch == 'x'".into(),
            });
        }
        let err = from_proto(&def).expect_err("unknown variable");
        assert!(err.contains("auto_cancel.queued"), "{err}");
    }
}
