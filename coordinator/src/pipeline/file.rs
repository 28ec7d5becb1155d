//! The YAML pipeline file: parsing and validation with errors that name file, line and column.
//!
//! The text is read with serde-saphyr into raw structs that mirror the file (unknown keys are
//! refused, every value keeps its position), then checked and converted into the
//! [`PipelineSpec`] model. Every problem, whether YAML, type or rule, is reported as a
//! [`PipelineFileError`] at the offending spot, with what to write instead. Nothing here
//! panics on user input.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_saphyr::Spanned;

use super::diagnostic::{Pos, error_at, from_yaml_error};
use super::model::{
    ActionSpec, CancelSignal, DEFAULT_GRACE, Mode, PipelineSpec, RetryPolicy, StageSpec,
};
use super::rules;

/// A pipeline file that cannot be used, with where and what.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{source_name}:{line}:{column}: {message}")]
pub struct PipelineFileError {
    /// The file (or other source) name given to the parser.
    pub source_name: String,
    /// 1-based line; 0 when the problem has no position.
    pub line: usize,
    /// 1-based column; 0 when the problem has no position.
    pub column: usize,
    /// What is wrong and, where it helps, what to do; followed by a snippet of the offending
    /// line with carets under the spot, on its own lines.
    pub message: String,
}

/// Parses and validates a pipeline file's text. `source_name` is used in error messages.
///
/// The first problem found is returned. The file's keys are described in
/// `examples/README.md` ("Pipeline file reference").
pub fn parse_pipeline_file(
    source_name: &str,
    text: &str,
) -> Result<PipelineSpec, PipelineFileError> {
    let raw: Spanned<RawPipeline> =
        serde_saphyr::from_str(text).map_err(|e| from_yaml_error(source_name, text, &e))?;
    let cx = Cx { source_name, text };
    let spec = cx.pipeline(raw)?;
    // The positioned checks above cover every rule; this keeps the two in step.
    spec.validate()
        .map_err(|m| error_at(source_name, text, Pos::START, m))?;
    Ok(spec)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: Spanned<String>,
    #[serde(default)]
    mode: Option<Spanned<String>>,
    #[serde(default)]
    lanes: Option<Spanned<String>>,
    #[serde(default)]
    stages: Option<Spanned<Vec<Spanned<RawStage>>>>,
    #[serde(default)]
    auto_cancel: Option<Spanned<RawAutoCancel>>,
    #[serde(default)]
    concurrency_key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: Spanned<String>,
    #[serde(default)]
    mode: Option<Spanned<String>>,
    #[serde(default)]
    order: Option<Spanned<String>>,
    #[serde(default)]
    capacity: Option<Spanned<u32>>,
    #[serde(default)]
    when_busy: Option<Spanned<String>>,
    #[serde(default)]
    settle: Option<Spanned<String>>,
    #[serde(default)]
    max_wait: Option<Spanned<String>>,
    #[serde(default)]
    lane: Option<Spanned<String>>,
    #[serde(default)]
    actions: Option<Spanned<Vec<Spanned<RawAction>>>>,
    #[serde(default)]
    interruptible: Option<Spanned<bool>>,
    #[serde(default)]
    on_cancel: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    name: Spanned<String>,
    #[serde(default)]
    run_order: Option<Spanned<u32>>,
    #[serde(default)]
    labels: Option<Spanned<Pairs>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    grace: Option<Spanned<String>>,
    #[serde(default)]
    env: Option<Spanned<Pairs>>,
    #[serde(default)]
    run: Option<Spanned<Vec<Spanned<Option<String>>>>>,
    #[serde(default)]
    approval: Option<Spanned<RawApproval>>,
    #[serde(default)]
    retry: Option<Spanned<RawRetry>>,
    #[serde(default)]
    cancel_signal: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    #[serde(default)]
    lost: Option<Spanned<u32>>,
}

/// A string-to-string mapping that keeps where each key was written.
struct Pairs(Vec<(Spanned<String>, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

#[path = "file_exec_policy.rs"]
mod exec_policy;
use exec_policy::{RawApproval, RawAutoCancel};
#[path = "file_policy.rs"]
mod policy;
use policy::StageOptions;

fn pos<T>(s: &Spanned<T>) -> Pos {
    Pos::from_location(&s.referenced)
}

/// The conversion context: where errors point.
struct Cx<'a> {
    source_name: &'a str,
    text: &'a str,
}

impl Cx<'_> {
    fn err(&self, at: Pos, message: impl Into<String>) -> PipelineFileError {
        error_at(self.source_name, self.text, at, message)
    }

    fn name(&self, what: &str, name: &Spanned<String>) -> Result<String, PipelineFileError> {
        rules::check_name(what, &name.value).map_err(|m| self.err(pos(name), m))?;
        Ok(name.value.clone())
    }

    fn mode(&self, mode: Option<Spanned<String>>) -> Result<Option<Mode>, PipelineFileError> {
        mode.map(|m| m.value.parse().map_err(|e: String| self.err(pos(&m), e)))
            .transpose()
    }

    fn duration(&self, key: &str, d: &Spanned<String>) -> Result<Duration, PipelineFileError> {
        rules::parse_duration(key, &d.value).map_err(|m| self.err(pos(d), m))
    }

    fn pipeline(&self, raw: Spanned<RawPipeline>) -> Result<PipelineSpec, PipelineFileError> {
        let at = pos(&raw);
        let raw = raw.value;
        let name = self.name("pipeline", &raw.name)?;
        let mode = self.mode(raw.mode)?.unwrap_or_default();
        let lanes = self.keyword(raw.lanes)?.unwrap_or_default();
        let Some(stages) = raw.stages else {
            return Err(self.err(
                at,
                format!("pipeline `{name}` has no `stages`; add `stages:` with at least one stage"),
            ));
        };
        if stages.value.is_empty() {
            return Err(self.err(
                pos(&stages),
                "`stages` is empty; a pipeline needs at least one stage",
            ));
        }
        let mut seen: HashMap<String, Pos> = HashMap::new();
        let mut out = Vec::with_capacity(stages.value.len());
        for stage in stages.value {
            let at = pos(&stage.value.name);
            let spec = self.stage(stage, mode)?;
            if let Some(first) = seen.get(&spec.name) {
                return Err(self.err(
                    at,
                    format!(
                        "duplicate stage name `{}` (first used on line {}); stage names must be \
                         unique in a pipeline, so rename one",
                        spec.name, first.line
                    ),
                ));
            }
            seen.insert(spec.name.clone(), at);
            out.push(spec);
        }
        let (auto_cancel, concurrency_key) =
            self.auto_cancel(raw.auto_cancel, raw.concurrency_key)?;
        Ok(PipelineSpec {
            name,
            mode,
            lanes,
            stages: out,
            auto_cancel,
            concurrency_key,
        })
    }

    fn stage(
        &self,
        raw: Spanned<RawStage>,
        pipeline_mode: Mode,
    ) -> Result<StageSpec, PipelineFileError> {
        let at = pos(&raw);
        let raw = raw.value;
        let name = self.name("stage", &raw.name)?;
        let mode = self.mode(raw.mode)?;
        let effective = mode.unwrap_or(pipeline_mode);
        let options = self.stage_options(
            &name,
            effective,
            StageOptions {
                order: raw.order,
                capacity: raw.capacity,
                when_busy: raw.when_busy,
                settle: raw.settle,
                max_wait: raw.max_wait,
                lane: raw.lane,
            },
        )?;
        let Some(actions) = raw.actions else {
            return Err(self.err(
                at,
                format!("stage `{name}` has no `actions`; add `actions:` with at least one action"),
            ));
        };
        if actions.value.is_empty() {
            return Err(self.err(
                pos(&actions),
                format!("stage `{name}` has an empty `actions` list; add at least one action"),
            ));
        }
        let mut seen: HashMap<String, Pos> = HashMap::new();
        let mut out = Vec::with_capacity(actions.value.len());
        for action in actions.value {
            let at = pos(&action.value.name);
            let spec = self.action(action)?;
            if let Some(first) = seen.get(&spec.name) {
                return Err(self.err(
                    at,
                    format!(
                        "duplicate action name `{}` in stage `{name}` (first used on line {}); \
                         action names must be unique in a stage, so rename one",
                        spec.name, first.line
                    ),
                ));
            }
            seen.insert(spec.name.clone(), at);
            out.push(spec);
        }
        Ok(StageSpec {
            name,
            mode,
            actions: out,
            uninterruptible: raw.interruptible.is_some_and(|i| !i.value),
            on_cancel: self.on_cancel(raw.on_cancel)?,
            ..options
        })
    }

    fn action(&self, raw: Spanned<RawAction>) -> Result<ActionSpec, PipelineFileError> {
        let at = pos(&raw);
        let raw = raw.value;
        let name = self.name("action", &raw.name)?;
        let run_order = match raw.run_order {
            Some(r) => {
                rules::check_run_order(r.value).map_err(|m| self.err(pos(&r), m))?;
                r.value
            }
            None => 1,
        };
        let labels = self.pairs(raw.labels, rules::check_label_key)?;
        let timeout = match raw.timeout {
            Some(t) => {
                let d = self.duration("timeout", &t)?;
                rules::check_timeout(d).map_err(|m| self.err(pos(&t), m))?;
                Some(d)
            }
            None => None,
        };
        let grace = match raw.grace {
            Some(g) => self.duration("grace", &g)?,
            None => DEFAULT_GRACE,
        };
        let env = self.pairs(raw.env, rules::check_env_key)?;
        if let Some(approval) = raw.approval {
            let run_at = raw.run.as_ref().map(pos);
            let approval = self.approval(&name, approval, run_at, timeout.is_some())?;
            return Ok(ActionSpec {
                name,
                run_order,
                steps: Vec::new(),
                labels,
                timeout: None,
                grace,
                env,
                approval: Some(approval),
                retry: Default::default(),
                cancel_signal: Default::default(),
            });
        }
        let Some(run) = raw.run else {
            return Err(self.err(
                at,
                format!(
                    "action `{name}` has no `run`; add `run:` with at least one shell command \
                     (or `approval: {{}}` for a person's sign-off)"
                ),
            ));
        };
        if run.value.is_empty() {
            return Err(self.err(
                pos(&run),
                format!("action `{name}` has an empty `run` list; add at least one shell command"),
            ));
        }
        let mut steps = Vec::with_capacity(run.value.len());
        for step in run.value {
            let at = pos(&step);
            let text = step.value.unwrap_or_default();
            rules::check_step(&text).map_err(|m| self.err(at, m))?;
            steps.push(text);
        }
        let mut retry = RetryPolicy::default();
        if let Some(lost) = raw.retry.and_then(|r| r.value.lost) {
            rules::check_retry_lost(lost.value).map_err(|m| self.err(pos(&lost), m))?;
            retry.lost = lost.value;
        }
        let cancel_signal = match raw.cancel_signal {
            Some(s) => CancelSignal::parse(&s.value).map_err(|m| self.err(pos(&s), m))?,
            None => CancelSignal::default(),
        };
        Ok(ActionSpec {
            name,
            run_order,
            steps,
            labels,
            timeout,
            grace,
            env,
            approval: None,
            retry,
            cancel_signal,
        })
    }

    fn pairs(
        &self,
        pairs: Option<Spanned<Pairs>>,
        check_key: fn(&str) -> Result<(), String>,
    ) -> Result<BTreeMap<String, String>, PipelineFileError> {
        let mut out = BTreeMap::new();
        for (key, value) in pairs.map(|p| p.value.0).unwrap_or_default() {
            check_key(&key.value).map_err(|m| self.err(pos(&key), m))?;
            out.insert(key.value, value);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid action, to build error cases around.
    const OK_ACTION: &str = "      - name: compile\n        run: [make]\n";

    fn parse_err(text: &str) -> PipelineFileError {
        parse_pipeline_file("p.yaml", text).expect_err("the file should be rejected")
    }

    /// Asserts the error's position and that its message says `says`.
    #[track_caller]
    fn assert_error(text: &str, line: usize, column: usize, says: &str) {
        let e = parse_err(text);
        assert_eq!(
            (e.line, e.column),
            (line, column),
            "wrong position for: {e}"
        );
        assert!(e.message.contains(says), "message lacks {says:?}: {e}");
    }

    #[test]
    fn full_file_parses_to_the_model() {
        let text = r#"
name: web-app
mode: queued
stages:
  - name: build
    mode: parallel
    actions:
      - name: compile
        run_order: 1
        labels: { os: linux }
        timeout: 10m
        grace: 2s
        retry: { lost: 2 }
        cancel_signal: INT
        env: { RUST_LOG: info }
        run:
          - cargo build
          - cargo test
      - name: package
        run_order: 2
        run:
          - |
            tar czf out.tgz target/release
  - name: deploy
    actions:
      - name: ship
        run: [./deploy.sh]
"#;
        let spec = parse_pipeline_file("p.yaml", text).expect("valid file");
        let expected = PipelineSpec {
            name: "web-app".into(),
            mode: Mode::Queued,
            lanes: Default::default(),
            stages: vec![
                StageSpec {
                    name: "build".into(),
                    mode: Some(Mode::Parallel),
                    actions: vec![
                        ActionSpec {
                            name: "compile".into(),
                            run_order: 1,
                            steps: vec!["cargo build".into(), "cargo test".into()],
                            labels: BTreeMap::from([("os".into(), "linux".into())]),
                            timeout: Some(Duration::from_secs(600)),
                            grace: Duration::from_secs(2),
                            retry: RetryPolicy { lost: 2 },
                            cancel_signal: CancelSignal::Int,
                            env: BTreeMap::from([("RUST_LOG".into(), "info".into())]),
                            approval: None,
                        },
                        ActionSpec {
                            name: "package".into(),
                            run_order: 2,
                            steps: vec!["tar czf out.tgz target/release\n".into()],
                            labels: BTreeMap::new(),
                            timeout: None,
                            grace: DEFAULT_GRACE,
                            retry: RetryPolicy::default(),
                            cancel_signal: CancelSignal::default(),
                            env: BTreeMap::new(),
                            approval: None,
                        },
                    ],
                    ..Default::default()
                },
                StageSpec {
                    name: "deploy".into(),
                    mode: None,
                    actions: vec![ActionSpec {
                        name: "ship".into(),
                        run_order: 1,
                        steps: vec!["./deploy.sh".into()],
                        labels: BTreeMap::new(),
                        timeout: None,
                        grace: DEFAULT_GRACE,
                        retry: RetryPolicy::default(),
                        cancel_signal: CancelSignal::default(),
                        env: BTreeMap::new(),
                        approval: None,
                    }],
                    ..Default::default()
                },
            ],
            auto_cancel: Default::default(),
            concurrency_key: Default::default(),
        };
        assert_eq!(spec, expected);
    }

    #[test]
    fn defaults_apply_when_keys_are_left_out() {
        let text = format!("name: a\nstages:\n  - name: s\n    actions:\n{OK_ACTION}");
        let spec = parse_pipeline_file("p.yaml", &text).expect("valid file");
        assert_eq!(spec.mode, Mode::Superseded);
        assert_eq!(spec.stages[0].mode, None);
        let action = &spec.stages[0].actions[0];
        assert_eq!(
            (action.run_order, action.grace, action.timeout),
            (1, DEFAULT_GRACE, None)
        );
        assert!(action.labels.is_empty() && action.env.is_empty());
    }

    #[test]
    fn values_that_look_like_numbers_or_booleans_are_kept_as_text() {
        let text = "name: a\nstages:\n  - name: s\n    actions:\n      - name: x\n        \
                    labels: { gpu: true }\n        env: { RETRIES: 3 }\n        run: [42]\n";
        let spec = parse_pipeline_file("p.yaml", text).expect("valid file");
        let action = &spec.stages[0].actions[0];
        assert_eq!(action.labels["gpu"], "true");
        assert_eq!(action.env["RETRIES"], "3");
        assert_eq!(action.steps, ["42"]);
    }

    #[test]
    fn display_is_file_line_column_message_with_a_caret() {
        let e = parse_err("name: a\nmdoe: queued\nstages: []\n");
        assert_eq!(
            e.to_string(),
            "p.yaml:2:1: unknown key `mdoe`; expected one of name, mode, lanes, stages, \
             auto_cancel, concurrency_key (did you mean `mode`?)\n  |\n2 | mdoe: queued\n  | ^^^^"
        );
    }

    #[test]
    fn unknown_key_in_an_action_lists_the_expected_keys() {
        let text = "name: a\nstages:\n  - name: s\n    actions:\n      - name: x\n        \
                    tiemout: 5m\n        run: [make]\n";
        assert_error(
            text,
            6,
            9,
            "unknown key `tiemout`; expected one of name, run_order, labels, timeout, grace, env, run, approval, retry, cancel_signal (did you mean `timeout`?)",
        );
    }

    #[test]
    fn wrong_types_say_what_the_key_should_be() {
        let run_as_string = "name: a\nstages:\n  - name: s\n    actions:\n      - name: x\n        \
                             run: make test\n";
        assert_error(
            run_as_string,
            6,
            14,
            "`run` should be a list of shell commands",
        );
        let order_as_word = "name: a\nstages:\n  - name: s\n    actions:\n      - name: x\n        \
                             run_order: first\n        run: [make]\n";
        assert_error(
            order_as_word,
            6,
            20,
            "`run_order` should be a whole number, 1 or more",
        );
        let labels_as_list = "name: a\nstages:\n  - name: s\n    actions:\n      - name: x\n        \
                              labels: [linux]\n        run: [make]\n";
        assert_error(labels_as_list, 6, 17, "`labels` should be a mapping");
        let stage_as_word = "name: a\nstages:\n  - build\n";
        assert_error(
            stage_as_word,
            3,
            5,
            "each item of `stages` should be a stage: `- name: build`",
        );
        let stages_as_map = "name: a\nstages: { build: {} }\n";
        assert_error(stages_as_map, 2, 9, "`stages` should be a list of stages");
        let step_as_list = "name: a\nstages:\n  - name: s\n    actions:\n      - name: x\n        \
                            run:\n          - [make, test]\n";
        assert_error(
            step_as_list,
            7,
            13,
            "each item of `run` should be one shell command",
        );
    }

    #[test]
    fn bad_durations_show_how_to_write_one() {
        let with = |v: &str| {
            format!(
                "name: a\nstages:\n  - name: s\n    actions:\n      - name: x\n        timeout: {v}\n        run: [make]\n"
            )
        };
        assert_error(
            &with("ten minutes"),
            6,
            18,
            "`timeout: ten minutes` is not a duration; write durations like 30s, 5m, 1h30m",
        );
        assert_error(&with("30"), 6, 18, "has no unit; write `30s`");
        assert_error(&with("0s"), 6, 18, "leave `timeout` out for no limit");
        let grace = "name: a\nstages:\n  - name: s\n    actions:\n      - name: x\n        grace: soon\n        run: [make]\n";
        assert_error(grace, 6, 16, "`grace: soon` is not a duration");
    }

    #[test]
    fn retry_lost_is_bounded_and_its_keys_checked() {
        let with = |v: &str| {
            format!(
                "name: a\nstages:\n  - name: s\n    actions:\n      - name: x\n        retry: {v}\n        run: [make]\n"
            )
        };
        assert_error(
            &with("{ lost: 11 }"),
            6,
            24,
            "`retry.lost: 11` is too many; at most 10",
        );
        assert_error(&with("{ los: 1 }"), 6, 18, "unknown key `los`");
        let ok = parse_pipeline_file("p.yaml", &with("{ lost: 3 }")).expect("valid");
        assert_eq!(ok.stages[0].actions[0].retry, RetryPolicy { lost: 3 });
    }

    #[test]
    fn cancel_signal_names_the_signals_it_accepts() {
        let with = |v: &str| {
            format!(
                "name: a\nstages:\n  - name: s\n    actions:\n      - name: x\n        cancel_signal: {v}\n        run: [make]\n"
            )
        };
        assert_error(
            &with("KILL"),
            6,
            24,
            "use one of TERM, INT, QUIT, HUP, USR1, USR2",
        );
        let ok = parse_pipeline_file("p.yaml", &with("SIGQUIT")).expect("valid");
        assert_eq!(ok.stages[0].actions[0].cancel_signal, CancelSignal::Quit);
    }

    #[test]
    fn bad_modes_list_the_valid_ones() {
        assert_error(
            "name: a\nmode: fast\nstages: []\n",
            2,
            7,
            "unknown mode `fast`; expected one of superseded, queued, parallel",
        );
        let stage =
            format!("name: a\nstages:\n  - name: s\n    mode: Queued\n    actions:\n{OK_ACTION}");
        assert_error(&stage, 4, 11, "modes are lower case: write `queued`");
    }

    #[test]
    fn duplicate_stage_points_at_the_second() {
        let text = format!(
            "name: a\nstages:\n  - name: build\n    actions:\n{OK_ACTION}  - name: build\n    actions:\n{OK_ACTION}"
        );
        assert_error(
            &text,
            7,
            11,
            "duplicate stage name `build` (first used on line 3)",
        );
    }

    #[test]
    fn duplicate_action_in_a_stage_points_at_the_second() {
        let text = format!("name: a\nstages:\n  - name: s\n    actions:\n{OK_ACTION}{OK_ACTION}");
        assert_error(
            &text,
            7,
            15,
            "duplicate action name `compile` in stage `s` (first used on line 5)",
        );
    }

    #[test]
    fn same_action_name_in_two_stages_is_fine() {
        let text = format!(
            "name: a\nstages:\n  - name: s\n    actions:\n{OK_ACTION}  - name: t\n    actions:\n{OK_ACTION}"
        );
        assert!(parse_pipeline_file("p.yaml", &text).is_ok());
    }

    #[test]
    fn a_pipeline_needs_stages() {
        assert_error("name: a\nstages: []\n", 2, 9, "`stages` is empty");
        assert_error("name: a\n", 1, 1, "pipeline `a` has no `stages`");
        assert_error(
            "name: a\nstages:\n",
            1,
            1,
            "add `stages:` with at least one stage",
        );
    }

    #[test]
    fn a_stage_needs_actions() {
        assert_error(
            "name: a\nstages:\n  - name: s\n",
            3,
            5,
            "stage `s` has no `actions`",
        );
        assert_error(
            "name: a\nstages:\n  - name: s\n    actions: []\n",
            4,
            14,
            "stage `s` has an empty `actions` list",
        );
    }

    #[test]
    fn an_action_needs_steps() {
        let head = "name: a\nstages:\n  - name: s\n    actions:\n";
        assert_error(
            &format!("{head}      - name: x\n"),
            5,
            9,
            "action `x` has no `run`",
        );
        assert_error(
            &format!("{head}      - name: x\n        run: []\n"),
            6,
            14,
            "action `x` has an empty `run` list",
        );
    }

    #[test]
    fn empty_steps_are_refused() {
        let head = "name: a\nstages:\n  - name: s\n    actions:\n      - name: x\n        run:\n          - make\n";
        assert_error(&format!("{head}          - ''\n"), 8, 13, "empty step");
        assert_error(&format!("{head}          - '   '\n"), 8, 13, "empty step");
        assert_error(&format!("{head}          -\n"), 8, 12, "empty step");
    }

    #[test]
    fn names_with_bad_characters_are_refused() {
        assert_error(
            "name: web app\nstages: []\n",
            1,
            7,
            "pipeline name `web app` contains a space; use only letters, digits, `-`, `_` and `.`",
        );
        let stage = format!("name: a\nstages:\n  - name: build/x\n    actions:\n{OK_ACTION}");
        assert_error(&stage, 3, 11, "stage name `build/x` contains `/`");
        let action = "name: a\nstages:\n  - name: s\n    actions:\n      - name: 'c:d'\n        run: [make]\n";
        assert_error(action, 5, 15, "action name `c:d` contains `:`");
    }

    #[test]
    fn run_order_starts_at_one() {
        let text = "name: a\nstages:\n  - name: s\n    actions:\n      - name: x\n        run_order: 0\n        run: [make]\n";
        assert_error(text, 6, 20, "`run_order` starts at 1");
    }

    #[test]
    fn env_and_label_keys_are_checked() {
        let with = |line: &str| {
            format!(
                "name: a\nstages:\n  - name: s\n    actions:\n      - name: x\n        {line}\n        run: [make]\n"
            )
        };
        assert_error(
            &with("env: { BATON_FENCE_TOKEN: '1' }"),
            6,
            16,
            "cannot be set in `env`",
        );
        assert_error(
            &with("env: { 1X: a }"),
            6,
            16,
            "`1X` is not an environment variable name",
        );
        assert_error(
            &with("labels: { 'o s': linux }"),
            6,
            19,
            "label `o s` is not a valid label key",
        );
    }

    #[test]
    fn yaml_level_mistakes_are_explained() {
        assert_error("", 1, 1, "the file is empty");
        assert_error("stages: []\n", 1, 1, "missing required key `name`");
        assert_error(
            "name: a\nname: b\nstages: []\n",
            2,
            1,
            "`name` appears twice in the same mapping",
        );
        assert_error(
            "- a\n- b\n",
            1,
            1,
            "expected a mapping of keys such as `name:` and `stages:`",
        );
        assert_error("name:\nstages: []\n", 1, 5, "`name` has no value");
        let two_docs = "name: a\nstages: []\n---\nname: b\n";
        let e = parse_err(two_docs);
        assert!(e.message.contains("one YAML document"), "{e}");
        assert_error("name: a\nstages: [\n", 2, 9, "unclosed bracket");
        assert_error(
            "name: a\nstages:\n\t- name: s\n",
            3,
            1,
            "YAML indents with spaces only",
        );
    }

    #[test]
    fn every_example_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut parsed = 0;
        for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
            let path = entry.expect("readable entry").path();
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path).expect("readable example");
                let name = path.display().to_string();
                if let Err(e) = parse_pipeline_file(&name, &text) {
                    panic!("{e}");
                }
                parsed += 1;
            }
        }
        assert!(
            parsed >= 3,
            "expected at least three examples, found {parsed}"
        );
    }

    #[test]
    fn the_reference_in_the_examples_readme_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/README.md");
        let readme = std::fs::read_to_string(path).expect("examples/README.md exists");
        let yaml = readme
            .split("```yaml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a yaml block in the README");
        let spec = parse_pipeline_file("README.md", yaml).expect("the reference is valid");
        assert_eq!(spec.stages[0].mode, Some(Mode::Queued));
    }

    #[test]
    fn the_demo_pipeline_is_web_app_with_three_stages() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/three-stage.yaml");
        let text = std::fs::read_to_string(path).expect("three-stage.yaml exists");
        let spec = parse_pipeline_file("three-stage.yaml", &text).expect("valid example");
        assert_eq!(spec.name, "web-app");
        let stages: Vec<&str> = spec.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(stages, ["build", "test", "deploy"]);
    }
}
