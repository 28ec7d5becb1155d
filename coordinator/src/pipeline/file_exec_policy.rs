//! The pipeline file's execution policies: `auto_cancel` (with CEL `when` conditions, checked
//! here so that a bad expression points at its line and column), `concurrency_key`, the stage
//! keys `interruptible` and `on_cancel`, and `approval` actions.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Cx, PipelineFileError, pos};
use crate::pipeline::condition;
use crate::pipeline::diagnostic::Pos;
use crate::pipeline::model::{
    ApprovalSpec, AutoCancel, CancelStop, ConcurrencyKey, Condition, DEFAULT_APPROVAL_TIMEOUT,
};
use crate::pipeline::rules;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAutoCancel {
    #[serde(default)]
    queued: Option<Spanned<RawWhen>>,
    #[serde(default)]
    running: Option<Spanned<RawWhen>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWhen {
    #[serde(default)]
    when: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApproval {
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    follow_latest: Option<Spanned<bool>>,
}

impl Cx<'_> {
    /// `auto_cancel` and `concurrency_key`, with their defaults.
    pub(super) fn auto_cancel(
        &self,
        raw: Option<Spanned<RawAutoCancel>>,
        key: Option<Spanned<String>>,
    ) -> Result<(AutoCancel, ConcurrencyKey), PipelineFileError> {
        let auto_cancel = match raw {
            Some(ac) => AutoCancel {
                queued: self.condition(ac.value.queued)?,
                running: self.condition(ac.value.running)?,
            },
            None => AutoCancel::default(),
        };
        let key = match key {
            Some(k) => k.value.parse().map_err(|e: String| self.err(pos(&k), e))?,
            None => ConcurrencyKey::default(),
        };
        Ok((auto_cancel, key))
    }

    /// An auto-cancel rule's condition: `true` when `when` is left out.
    fn condition(
        &self,
        rule: Option<Spanned<RawWhen>>,
    ) -> Result<Option<Condition>, PipelineFileError> {
        let Some(rule) = rule else {
            return Ok(None);
        };
        let Some(when) = rule.value.when else {
            return Ok(Some(Condition {
                expr: "true".into(),
            }));
        };
        condition::check(&when.value).map_err(|e| {
            let at = pos(&when);
            // Point inside the expression; a quoted scalar starts one column later.
            let quoted = self
                .text
                .lines()
                .nth(at.line.saturating_sub(1))
                .and_then(|l| l.chars().nth(at.column.saturating_sub(1)))
                .is_some_and(|c| c == '"' || c == '\'');
            let inner = if e.line <= 1 {
                Pos {
                    line: at.line,
                    column: at.column + usize::from(quoted) + e.column - 1,
                    len: 1,
                }
            } else {
                at
            };
            self.err(inner, e.message)
        })?;
        Ok(Some(Condition { expr: when.value }))
    }

    /// A stage's `on_cancel`; abandon when left out.
    pub(super) fn on_cancel(
        &self,
        raw: Option<Spanned<String>>,
    ) -> Result<CancelStop, PipelineFileError> {
        match raw {
            Some(c) => c.value.parse().map_err(|e: String| self.err(pos(&c), e)),
            None => Ok(CancelStop::default()),
        }
    }

    /// An `approval:` action's settings. `run_at` is where its `run:` is, if it has one (an
    /// error); `has_timeout` says the action also has an action-level `timeout` (an error).
    pub(super) fn approval(
        &self,
        name: &str,
        approval: Spanned<RawApproval>,
        run_at: Option<Pos>,
        has_timeout: bool,
    ) -> Result<ApprovalSpec, PipelineFileError> {
        if let Some(at) = run_at {
            return Err(self.err(
                at,
                format!(
                    "action `{name}` has both `run` and `approval`; an action either runs \
                     commands or waits for a person, so move one into its own action"
                ),
            ));
        }
        if has_timeout {
            return Err(self.err(
                pos(&approval),
                format!(
                    "action `{name}` is an approval: put its timeout inside `approval:`, \
                     as in `approval: {{ timeout: 2d }}`"
                ),
            ));
        }
        let timeout = match approval.value.timeout {
            Some(t) => {
                let d = self.duration("timeout", &t)?;
                rules::check_timeout(d).map_err(|m| self.err(pos(&t), m))?;
                d
            }
            None => DEFAULT_APPROVAL_TIMEOUT,
        };
        Ok(ApprovalSpec {
            timeout,
            follow_latest: approval.value.follow_latest.is_some_and(|f| f.value),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::pipeline::model::{
        ApprovalSpec, CancelStop, ConcurrencyKey, DEFAULT_APPROVAL_TIMEOUT,
    };
    use crate::pipeline::{PipelineFileError, parse_pipeline_file};

    /// A valid action, to build error cases around.
    const OK_ACTION: &str = "      - name: compile\n        run: [make]\n";

    /// Asserts the error's position and that its message says `says`.
    #[track_caller]
    fn assert_error(text: &str, line: usize, column: usize, says: &str) {
        let e: PipelineFileError =
            parse_pipeline_file("p.yaml", text).expect_err("the file should be rejected");
        assert_eq!(
            (e.line, e.column),
            (line, column),
            "wrong position for: {e}"
        );
        assert!(e.message.contains(says), "message lacks {says:?}: {e}");
    }

    #[test]
    fn execution_policies_parse_to_the_model() {
        let text = r#"
name: web
concurrency_key: pipeline
auto_cancel:
  queued: {}
  running:
    when: "branch != 'master'"
stages:
  - name: deploy
    interruptible: false
    on_cancel: drain
    actions:
      - name: ship
        run: [./deploy.sh]
      - name: sign-off
        run_order: 2
        approval: { timeout: 2d, follow_latest: true }
      - name: plain
        run_order: 3
        approval: {}
"#;
        let spec = parse_pipeline_file("p.yaml", text).expect("valid file");
        assert_eq!(spec.concurrency_key, ConcurrencyKey::Pipeline);
        assert_eq!(
            spec.auto_cancel.queued.as_ref().map(|c| c.expr.as_str()),
            Some("true")
        );
        assert_eq!(
            spec.auto_cancel.running.as_ref().map(|c| c.expr.as_str()),
            Some("branch != 'master'")
        );
        let stage = &spec.stages[0];
        assert!(stage.uninterruptible);
        assert_eq!(stage.on_cancel, CancelStop::Drain);
        assert_eq!(
            stage.actions[1].approval,
            Some(ApprovalSpec {
                timeout: Duration::from_secs(2 * 24 * 3600),
                follow_latest: true
            })
        );
        assert!(stage.actions[1].steps.is_empty());
        assert_eq!(
            stage.actions[2]
                .approval
                .map(|a| (a.timeout, a.follow_latest)),
            Some((DEFAULT_APPROVAL_TIMEOUT, false))
        );
    }

    #[test]
    fn execution_policy_mistakes_say_where() {
        let stage = |extra: &str| {
            format!("name: a\nstages:\n  - name: s\n{extra}    actions:\n{OK_ACTION}")
        };
        assert_error(
            &format!(
                "name: a\nauto_cancel:\n  running:\n    when: \"brnch != 'x'\"\n{}",
                &stage("")[8..]
            ),
            4,
            12,
            "`when` uses `brnch`, which Baton does not provide",
        );
        assert_error(
            &format!(
                "name: a\nauto_cancel:\n  queued:\n    when: \"branch ! tag\"\n{}",
                &stage("")[8..]
            ),
            4,
            19,
            "is not a valid CEL expression",
        );
        assert_error(
            &format!("name: a\nauto_cancel:\n  runing: {{}}\n{}", &stage("")[8..]),
            3,
            3,
            "unknown key `runing`; expected one of queued, running",
        );
        assert_error(
            &format!("name: a\nconcurrency_key: commit\n{}", &stage("")[8..]),
            2,
            18,
            "unknown concurrency_key `commit`; expected `branch`",
        );
        assert_error(
            &stage("    on_cancel: kill\n"),
            4,
            16,
            "unknown on_cancel `kill`",
        );
        assert_error(
            &stage("    interruptible: maybe\n"),
            4,
            20,
            "`interruptible` should be true or false",
        );
        let action = |body: &str| {
            format!("name: a\nstages:\n  - name: s\n    actions:\n      - name: x\n{body}")
        };
        assert_error(
            &action("        run: [make]\n        approval: {}\n"),
            6,
            14,
            "has both `run` and `approval`",
        );
        assert_error(
            &action("        approval: { timeout: soon }\n"),
            6,
            30,
            "`timeout: soon` is not a duration",
        );
        assert_error(
            &action("        timeout: 1h\n        approval: {}\n"),
            7,
            19,
            "put its timeout inside `approval:`",
        );
        assert_error(
            &action("        approval: { folow_latest: true }\n"),
            6,
            21,
            "unknown key `folow_latest`; expected one of timeout, follow_latest",
        );
    }
}
