//! The pipeline file's stage options (`order`, `capacity`, `when_busy`, `settle`, `max_wait`,
//! `lane`): each read at its position and checked with the rules of
//! [`super::super::stage_options`], so an error points at the key that breaks it.

use std::str::FromStr;

use serde_saphyr::Spanned;

use super::{Cx, PipelineFileError, pos};
use crate::pipeline::model::{DEFAULT_MAX_WAIT_FACTOR, Mode, Settle, StageSpec};
use crate::pipeline::stage_options as opts;

/// The stage options as written.
pub(super) struct StageOptions {
    pub order: Option<Spanned<String>>,
    pub capacity: Option<Spanned<u32>>,
    pub when_busy: Option<Spanned<String>>,
    pub settle: Option<Spanned<String>>,
    pub max_wait: Option<Spanned<String>>,
    pub lane: Option<Spanned<String>>,
}

impl Cx<'_> {
    /// A keyword value (`order: fifo`) at its position.
    pub(super) fn keyword<T: FromStr<Err = String>>(
        &self,
        value: Option<Spanned<String>>,
    ) -> Result<Option<T>, PipelineFileError> {
        value
            .map(|v| v.value.parse().map_err(|e: String| self.err(pos(&v), e)))
            .transpose()
    }

    /// The stage's options, checked against its effective `mode`; `name` and `actions` are
    /// left empty for the caller.
    pub(super) fn stage_options(
        &self,
        name: &str,
        mode: Mode,
        raw: StageOptions,
    ) -> Result<StageSpec, PipelineFileError> {
        let at = |s: &Spanned<String>| pos(s);
        let ctx = |m: String| format!("stage `{name}`: {m}");
        let order_at = raw.order.as_ref().map(at);
        let order = self.keyword(raw.order)?;
        if let Some(p) = order_at {
            opts::check_order(mode).map_err(|m| self.err(p, ctx(m)))?;
        }
        let capacity = match raw.capacity {
            Some(c) => {
                opts::check_capacity(c.value, mode).map_err(|m| self.err(pos(&c), ctx(m)))?;
                Some(c.value)
            }
            None => None,
        };
        let when_busy_at = raw.when_busy.as_ref().map(at);
        let when_busy = self.keyword(raw.when_busy)?.unwrap_or_default();
        if let Some(p) = when_busy_at {
            opts::check_when_busy(when_busy, mode).map_err(|m| self.err(p, ctx(m)))?;
        }
        let settle = match (raw.settle, raw.max_wait) {
            (None, None) => None,
            (None, Some(m)) => {
                return Err(self.err(
                    pos(&m),
                    ctx(
                        "`max_wait` bounds a `settle` window; add `settle` or remove `max_wait`"
                            .into(),
                    ),
                ));
            }
            (Some(s), max_wait) => {
                let window = self.duration("settle", &s)?;
                let (max_wait, max_at) = match &max_wait {
                    Some(m) => (self.duration("max_wait", m)?, pos(m)),
                    None => (window * DEFAULT_MAX_WAIT_FACTOR, pos(&s)),
                };
                opts::check_settle(window, max_wait, mode, when_busy).map_err(|m| {
                    let at = if m.starts_with("`max_wait`") {
                        max_at
                    } else {
                        pos(&s)
                    };
                    self.err(at, ctx(m))
                })?;
                Some(Settle { window, max_wait })
            }
        };
        let lane = self.keyword(raw.lane)?.unwrap_or_default();
        Ok(StageSpec {
            order,
            capacity,
            when_busy,
            settle,
            lane,
            ..StageSpec::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::pipeline::model::{LaneScope, Lanes, QueueOrder, WhenBusy};
    use crate::pipeline::{parse_pipeline_file, proto};

    /// A pipeline whose one stage `s` has the given extra lines (indented 4).
    fn with(pipeline_line: &str, stage_lines: &str) -> String {
        format!(
            "name: a\n{pipeline_line}stages:\n  - name: s\n{stage_lines}    actions:\n      - name: x\n        run: [make]\n"
        )
    }

    #[track_caller]
    fn assert_error(text: &str, line: usize, column: usize, says: &str) {
        let e = parse_pipeline_file("p.yaml", text).expect_err("the file should be rejected");
        assert_eq!(
            (e.line, e.column),
            (line, column),
            "wrong position for: {e}"
        );
        assert!(e.message.contains(says), "message lacks {says:?}: {e}");
    }

    #[test]
    fn every_stage_option_parses_to_the_model_and_round_trips_through_proto() {
        let text = "name: a\nlanes: branch\nstages:\n  - name: test\n    mode: queued\n    order: newest_ready_first\n    capacity: 3\n    actions:\n      - name: x\n        run: [make]\n  - name: deploy\n    lane: shared\n    when_busy: cancel_running\n    settle: 30s\n    max_wait: 5m\n    actions:\n      - name: y\n        run: [make]\n  - name: prod\n    settle: 1m\n    actions:\n      - name: z\n        run: [make]\n";
        let spec = parse_pipeline_file("p.yaml", text).expect("valid file");
        assert_eq!(spec.lanes, Lanes::Branch);
        let (test, deploy, prod) = (&spec.stages[0], &spec.stages[1], &spec.stages[2]);
        assert_eq!(test.order, Some(QueueOrder::NewestReadyFirst));
        assert_eq!(test.capacity, Some(3));
        assert_eq!(test.lane, LaneScope::PerLane);
        assert_eq!(deploy.lane, LaneScope::Shared);
        assert_eq!(deploy.when_busy, WhenBusy::CancelRunning);
        let settle = deploy.settle.expect("settle");
        assert_eq!(
            (settle.window, settle.max_wait),
            (Duration::from_secs(30), Duration::from_secs(300))
        );
        // max_wait defaults to five times settle.
        let prod_settle = prod.settle.expect("settle");
        assert_eq!(prod_settle.max_wait, Duration::from_secs(300));
        assert_eq!(proto::from_proto(&proto::to_proto(&spec)), Ok(spec));
    }

    #[test]
    fn defaults_apply_when_the_options_are_left_out() {
        let spec = parse_pipeline_file("p.yaml", &with("", "")).expect("valid");
        let s = &spec.stages[0];
        assert_eq!(spec.lanes, Lanes::Single);
        assert_eq!((s.order, s.capacity, s.settle), (None, None, None));
        assert_eq!(
            (s.when_busy, s.lane),
            (WhenBusy::Supersede, LaneScope::PerLane)
        );
    }

    #[test]
    fn queued_only_options_on_a_superseded_stage_say_where_and_what_to_do() {
        assert_error(
            &with("", "    capacity: 2\n"),
            4,
            15,
            "stage `s`: `capacity` applies to queued stages only, and this stage is superseded; add `mode: queued`",
        );
        assert_error(
            &with("", "    order: fifo\n"),
            4,
            12,
            "`order` applies to queued stages only",
        );
        assert_error(
            &with("", "    mode: queued\n    capacity: 0\n"),
            5,
            15,
            "`capacity` starts at 1",
        );
    }

    #[test]
    fn settle_needs_a_superseded_stage_and_max_wait_at_least_settle() {
        // The stage inherits queued from the pipeline.
        assert_error(
            &with("mode: queued\n", "    settle: 30s\n"),
            5,
            13,
            "`settle` requires a superseded stage",
        );
        assert_error(
            &with("", "    settle: 5m\n    max_wait: 1m\n"),
            5,
            15,
            "`max_wait` (1m) is shorter than `settle` (5m)",
        );
        assert_error(
            &with("", "    max_wait: 1m\n"),
            4,
            15,
            "add `settle` or remove `max_wait`",
        );
        assert_error(
            &with("", "    settle: 0s\n"),
            4,
            13,
            "`settle` must be longer than 0",
        );
        assert_error(
            &with("", "    settle: 30\n"),
            4,
            13,
            "has no unit; write `30s`",
        );
        assert_error(
            &with("", "    when_busy: pause\n    settle: 1m\n"),
            5,
            13,
            "cannot be combined with `when_busy: pause`",
        );
    }

    #[test]
    fn when_busy_and_lanes_list_their_values() {
        assert_error(
            &with("", "    when_busy: stop\n"),
            4,
            16,
            "unknown when_busy `stop`; expected one of supersede, pause, cancel_running",
        );
        assert_error(
            &with("", "    when_busy: cancel-running\n"),
            4,
            16,
            "(write `cancel_running`)",
        );
        assert_error(
            &with("", "    mode: parallel\n    when_busy: pause\n"),
            5,
            16,
            "`when_busy: pause` applies to superseded stages only",
        );
        assert_error(
            &with("lanes: branches\n", ""),
            2,
            8,
            "unknown lanes `branches`; expected one of single, branch",
        );
        assert_error(
            &with("", "    lane: common\n"),
            4,
            11,
            "unknown lane `common`; expected one of per_lane, shared",
        );
    }

    #[test]
    fn proto_definitions_follow_the_same_rules() {
        let spec = parse_pipeline_file("p.yaml", &with("", "")).expect("valid");
        let mut def = proto::to_proto(&spec);
        def.stages[0].capacity = 2;
        let err = proto::from_proto(&def).expect_err("capacity on a superseded stage");
        assert!(
            err.contains("`capacity` applies to queued stages only"),
            "{err}"
        );
        let mut def = proto::to_proto(&spec);
        def.stages[0].settle_ms = 60_000;
        def.stages[0].max_wait_ms = 1_000;
        let err = proto::from_proto(&def).expect_err("max_wait < settle");
        assert!(err.contains("is shorter than `settle`"), "{err}");
    }
}
