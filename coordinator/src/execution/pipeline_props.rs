//! Property test of a whole pipeline: 2–4 stages with random policies (SUPERSEDED with every
//! `when_busy` and `settle`, QUEUED with every order and capacity, PARALLEL; per-branch lanes
//! with some `lane: shared` stages), driven by random starts on a few branches, job
//! acceptances, successes and failures, stops (wait, abandon, escalation), transition toggles,
//! resumes and clock advances, through [`super::pipeline_model::Model`] (the pipeline actor's
//! moves over the real rules core).
//!
//! Invariants, after every step (see the model): a stage and lane never holds more than its
//! room; an execution only moves forward and is in one stage (lock or line) at a time; an
//! ended execution (Superseded, Cancelled, Stopped, Failed, Succeeded) never enters a stage or
//! starts a job and is in no lock; fence tokens strictly increase per stage and lane; in a
//! QUEUED fifo stage nobody overtakes an earlier arrival. At the end, with transitions
//! enabled, paused executions resumed and every job succeeding, every execution ends and
//! every lock is empty.

use std::cell::RefCell;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::pipeline_model::{JobEnd, Model, Seen, Step};
use crate::pipeline::{
    ActionSpec, AutoCancel, CancelStop, ConcurrencyKey, LaneScope, Lanes, Mode, PipelineSpec,
    QueueOrder, Settle, StageSpec, WhenBusy,
};

/// One stage's options, before they are checked against its effective mode.
#[derive(Debug, Clone)]
pub struct StageDraw {
    mode: Option<Mode>,
    order: QueueOrder,
    capacity: u32,
    when_busy: WhenBusy,
    settle: Option<(u64, u64)>,
    shared: bool,
    two_run_orders: bool,
    uninterruptible: bool,
    drain: bool,
}

impl StageDraw {
    /// No option set: the pipeline's mode, one action, per-lane, interruptible.
    pub fn plain() -> Self {
        StageDraw {
            mode: None,
            order: QueueOrder::Fifo,
            capacity: 1,
            when_busy: WhenBusy::Supersede,
            settle: None,
            shared: false,
            two_run_orders: false,
            uninterruptible: false,
            drain: false,
        }
    }
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        3 => Just(Mode::Superseded),
        3 => Just(Mode::Queued),
        1 => Just(Mode::Parallel),
    ]
}

fn stage_draw() -> impl Strategy<Value = StageDraw> {
    (
        proptest::option::of(mode()),
        prop_oneof![
            2 => Just(QueueOrder::Fifo),
            1 => Just(QueueOrder::NewestFirst),
            1 => Just(QueueOrder::NewestReadyFirst),
        ],
        1u32..4,
        prop_oneof![
            Just(WhenBusy::Supersede),
            Just(WhenBusy::Pause),
            Just(WhenBusy::CancelRunning),
        ],
        proptest::option::of((1u64..200, 1u64..5)),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(mode, order, capacity, when_busy, settle, shared, two, unint, drain)| StageDraw {
                mode,
                order,
                capacity,
                when_busy,
                settle,
                shared,
                two_run_orders: two,
                uninterruptible: unint,
                drain,
            },
        )
}

fn action(name: &str, run_order: u32) -> ActionSpec {
    ActionSpec {
        name: name.to_string(),
        run_order,
        steps: vec!["true".into()],
        labels: Default::default(),
        timeout: None,
        grace: Duration::from_secs(10),
        env: Default::default(),
        retry: Default::default(),
        cancel_signal: Default::default(),
        approval: None,
    }
}

/// A valid stage from `draw` in a pipeline of `pipeline_mode` (options the file would
/// refuse for the effective mode are left out).
pub fn stage(i: usize, draw: &StageDraw, pipeline_mode: Mode) -> StageSpec {
    let mode = draw.mode.unwrap_or(pipeline_mode);
    let queued = mode == Mode::Queued;
    let superseded = mode == Mode::Superseded;
    let when_busy = if superseded {
        draw.when_busy
    } else {
        WhenBusy::Supersede
    };
    let mut actions = vec![action("a", 1)];
    if draw.two_run_orders {
        actions.push(action("b", 2));
    }
    let spec = StageSpec {
        name: format!("s{i}"),
        mode: draw.mode,
        order: queued.then_some(draw.order),
        capacity: queued.then_some(draw.capacity),
        when_busy,
        settle: draw
            .settle
            .filter(|_| superseded && when_busy != WhenBusy::Pause)
            .map(|(window, factor)| Settle {
                window: Duration::from_millis(window),
                max_wait: Duration::from_millis(window * factor),
            }),
        lane: if draw.shared {
            LaneScope::Shared
        } else {
            LaneScope::PerLane
        },
        actions,
        uninterruptible: draw.uninterruptible,
        on_cancel: if draw.drain {
            CancelStop::Drain
        } else {
            CancelStop::Abandon
        },
    };
    if let Err(e) = crate::pipeline::stage_options::check_stage_options(&spec, mode) {
        panic!("the generator made an invalid stage {spec:?}: {e}");
    }
    spec
}

/// A pipeline of 2–4 stages; `auto_cancel` and `key` as given.
pub fn pipeline(
    auto_cancel: impl Strategy<Value = (AutoCancel, ConcurrencyKey)>,
) -> impl Strategy<Value = PipelineSpec> {
    (
        mode(),
        prop_oneof![Just(Lanes::Single), Just(Lanes::Branch)],
        proptest::collection::vec(stage_draw(), 2..=4),
        auto_cancel,
    )
        .prop_map(
            |(mode, lanes, draws, (auto_cancel, concurrency_key))| PipelineSpec {
                name: "p".into(),
                mode,
                lanes,
                stages: draws
                    .iter()
                    .enumerate()
                    .map(|(i, d)| stage(i, d, mode))
                    .collect(),
                auto_cancel,
                concurrency_key,
            },
        )
}

/// Random steps; `orders` gives revision orders to some starts.
pub fn steps(orders: bool) -> impl Strategy<Value = Vec<Step>> {
    let order = if orders {
        prop_oneof![1 => Just(0u64), 3 => 1u64..40].boxed()
    } else {
        Just(0u64).boxed()
    };
    let step = prop_oneof![
        5 => (0usize..3, order).prop_map(|(branch, order)| Step::Start { branch, order }),
        3 => any::<usize>().prop_map(Step::Accept),
        6 => any::<usize>().prop_map(|n| Step::Finish(n, JobEnd::Succeeded)),
        1 => any::<usize>().prop_map(|n| Step::Finish(n, JobEnd::Failed)),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(n, abandon)| Step::Stop(n, abandon)),
        1 => any::<usize>().prop_map(Step::Disable),
        1 => any::<usize>().prop_map(Step::Enable),
        1 => any::<usize>().prop_map(Step::Resume),
        2 => (1i64..300).prop_map(Step::Advance),
    ];
    proptest::collection::vec(step, 1..120)
}

/// Runs `steps` on a pipeline of `spec`, then drains it; errs with the first broken invariant.
pub fn run_model(spec: PipelineSpec, steps: &[Step]) -> Result<Model, String> {
    let mut model = Model::new(spec);
    for (i, step) in steps.iter().enumerate() {
        model
            .step(step)
            .map_err(|e| format!("after step {i} ({step:?}): {e}"))?;
    }
    model.drain().map_err(|e| format!("while draining: {e}"))?;
    Ok(model)
}

/// The case count of these properties: 256 (about 2 s each on the build machine), or
/// `PROPTEST_CASES` when set, for a longer hunt.
pub fn config() -> Config {
    let cases = match std::env::var("PROPTEST_CASES") {
        Ok(_) => Config::default().cases,
        Err(_) => 256,
    };
    Config {
        cases,
        source_file: Some(file!()),
        ..Config::default()
    }
}

#[test]
fn multi_stage_pipelines_keep_every_invariant() {
    let seen = RefCell::new(Seen::default());
    let no_auto_cancel = Just((AutoCancel::default(), ConcurrencyKey::Branch));
    let mut runner = TestRunner::new(config());
    let result = runner.run(&(pipeline(no_auto_cancel), steps(true)), |(spec, steps)| {
        let model = run_model(spec, &steps).map_err(TestCaseError::fail)?;
        seen.borrow_mut().add(&model.seen);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Not vacuous: the interesting events happened, many times over.
    let seen = seen.into_inner();
    eprintln!("{seen:?}");
    assert!(seen.entries[2] > 100 && seen.entries[3] > 20, "{seen:?}");
    assert!(seen.branch_lane_entries > 100 && seen.shared_lane_entries > 100);
    assert!(seen.shared_capacity_entries > 10, "{seen:?}");
    assert!(seen.supersedes > 100 && seen.too_old > 10, "{seen:?}");
    assert!(seen.cancel_holders > 10 && seen.pauses > 10 && seen.resumes > 10);
    assert!(
        seen.stops[0] > 50 && seen.stops[1] > 50 && seen.stops[2] > 0,
        "{seen:?}"
    );
    assert!(seen.withdrawals > 10 && seen.held_by_transition > 10 && seen.timers > 10);
    assert!(seen.ended.iter().all(|&n| n > 10), "{seen:?}");
}

/// A fixed run that reaches the fourth stage of a QUEUED pipeline with per-branch lanes and
/// a shared last stage, for a reader who wants to see the model move.
#[test]
fn the_model_moves_executions_through_every_stage() {
    let draw = StageDraw::plain();
    let shared = StageDraw {
        shared: true,
        ..draw.clone()
    };
    let spec = PipelineSpec {
        name: "p".into(),
        mode: Mode::Queued,
        lanes: Lanes::Branch,
        stages: vec![
            stage(0, &draw, Mode::Queued),
            stage(1, &draw, Mode::Queued),
            stage(2, &draw, Mode::Queued),
            stage(3, &shared, Mode::Queued),
        ],
        ..PipelineSpec::default()
    };
    let mut steps = vec![
        Step::Start {
            branch: 0,
            order: 0,
        },
        Step::Start {
            branch: 1,
            order: 0,
        },
    ];
    steps.extend((0..8).map(|_| Step::Finish(0, JobEnd::Succeeded)));
    let model = run_model(spec, &steps).expect("invariants hold");
    assert_eq!(model.seen.entries, [2, 2, 2, 2]);
    assert_eq!(model.seen.shared_lane_entries, 2);
    assert_eq!(model.seen.ended[0], 2, "both succeeded");
}
