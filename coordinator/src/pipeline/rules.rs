//! The rules a pipeline definition must follow, shared by the YAML parser (which adds the
//! position) and the protobuf conversion (which has none).
//!
//! Each check returns the user-facing message: what is wrong and what to write instead.
//! Nothing here knows about files, lines or YAML.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::condition;
use super::model::{
    ActionSpec, CancelStop, ConcurrencyKey, MAX_RETRY_LOST, Mode, PipelineSpec, StageSpec,
};

/// Longest pipeline, stage or action name (CodePipeline's limit).
pub const MAX_NAME_LEN: usize = 100;

/// Environment variables with this prefix are set by Baton itself and cannot be overridden.
pub const RESERVED_ENV_PREFIX: &str = "BATON_";

/// How to write a duration, appended to every duration error.
const DURATION_HINT: &str = "write durations like 30s, 5m, 1h30m";

impl Mode {
    /// The mode's name as written in a pipeline file: `superseded`, `queued` or `parallel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Superseded => "superseded",
            Mode::Queued => "queued",
            Mode::Parallel => "parallel",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    /// Parses the pipeline-file spelling (lower case only).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "superseded" => Ok(Mode::Superseded),
            "queued" => Ok(Mode::Queued),
            "parallel" => Ok(Mode::Parallel),
            other => {
                let lower = other.to_ascii_lowercase();
                let hint = if lower != other && lower.parse::<Mode>().is_ok() {
                    format!(" (modes are lower case: write `{lower}`)")
                } else {
                    String::new()
                };
                Err(format!(
                    "unknown mode `{other}`; expected one of superseded, queued, parallel{hint}"
                ))
            }
        }
    }
}

impl ConcurrencyKey {
    /// The key as written in a pipeline file: `branch` or `pipeline`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyKey::Branch => "branch",
            ConcurrencyKey::Pipeline => "pipeline",
        }
    }
}

impl FromStr for ConcurrencyKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "branch" => Ok(ConcurrencyKey::Branch),
            "pipeline" => Ok(ConcurrencyKey::Pipeline),
            other => Err(format!(
                "unknown concurrency_key `{other}`; expected `branch` (executions of the same \
                 branch compete) or `pipeline` (every execution of the pipeline competes)"
            )),
        }
    }
}

impl CancelStop {
    /// The stop as written in a pipeline file: `abandon` or `drain`.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelStop::Abandon => "abandon",
            CancelStop::Drain => "drain",
        }
    }
}

impl FromStr for CancelStop {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "abandon" => Ok(CancelStop::Abandon),
            "drain" => Ok(CancelStop::Drain),
            other => Err(format!(
                "unknown on_cancel `{other}`; expected `abandon` (terminate running jobs) or \
                 `drain` (let the running step finish, skip the rest)"
            )),
        }
    }
}

/// Checks a pipeline, stage or action name. `what` is "pipeline", "stage" or "action".
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!(
            "{what} name is empty; give it a name of letters, digits, `-`, `_` or `.`"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        let shown = if bad == ' ' {
            "a space".to_string()
        } else {
            format!("`{bad}`")
        };
        return Err(format!(
            "{what} name `{name}` contains {shown}; use only letters, digits, `-`, `_` and `.`"
        ));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(format!(
            "{what} name `{name}` is longer than {MAX_NAME_LEN} characters; shorten it"
        ));
    }
    Ok(())
}

/// Parses a humantime duration (`30s`, `5m`, `1h30m`) for the key `key`.
///
/// Durations are kept in whole milliseconds, the unit of the protobuf form.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let bad = || format!("`{key}: {trimmed}` is not a duration; {DURATION_HINT}");
    if trimmed.is_empty() {
        return Err(format!("`{key}` has no value; {DURATION_HINT}"));
    }
    if trimmed.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`{key}: {trimmed}` has no unit; write `{trimmed}s` for seconds or `{trimmed}m` for minutes"
        ));
    }
    let d = humantime::parse_duration(trimmed).map_err(|_| bad())?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!(
            "`{key}: {trimmed}` is finer than a millisecond; Baton counts durations in whole milliseconds"
        ));
    }
    Ok(d)
}

/// Checks an action's `timeout`: none, or longer than zero.
pub fn check_timeout(timeout: Duration) -> Result<(), String> {
    if timeout.is_zero() {
        return Err("`timeout` must be longer than 0; leave `timeout` out for no limit".into());
    }
    Ok(())
}

/// Checks an action's run order: 1 or more.
pub fn check_run_order(run_order: u32) -> Result<(), String> {
    if run_order == 0 {
        return Err(
            "`run_order` starts at 1; use 1 for the first actions, 2 for those after them".into(),
        );
    }
    Ok(())
}

/// Checks one shell step: not empty.
pub fn check_step(step: &str) -> Result<(), String> {
    if step.trim().is_empty() {
        return Err("empty step; every item under `run` must be a shell command (remove the empty `-` line)".into());
    }
    Ok(())
}

/// Checks an environment variable name: a shell name, not reserved for Baton.
pub fn check_env_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`{key}` is not an environment variable name; use letters, digits and `_`, not starting with a digit"
        ));
    }
    if key.starts_with(RESERVED_ENV_PREFIX) {
        return Err(format!(
            "`{key}` is set by Baton for every job; variables starting with {RESERVED_ENV_PREFIX} cannot be set in `env`"
        ));
    }
    Ok(())
}

/// Checks `retry.lost`: how often a job lost with its worker is tried again.
pub fn check_retry_lost(lost: u32) -> Result<(), String> {
    if lost > MAX_RETRY_LOST {
        return Err(format!(
            "`retry.lost: {lost}` is too many; at most {MAX_RETRY_LOST} (a job lost that often points at the job, not the workers)"
        ));
    }
    Ok(())
}

/// Checks a worker label's key: letters, digits, `-`, `_`, `.` and `/`.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if !valid {
        return Err(format!(
            "label `{key}` is not a valid label key; use letters, digits, `-`, `_`, `.` and `/`"
        ));
    }
    Ok(())
}

impl ActionSpec {
    /// Checks every rule of an action that does not involve its neighbours.
    pub fn validate(&self) -> Result<(), String> {
        let ctx = |e: String| format!("action `{}`: {e}", self.name);
        check_name("action", &self.name)?;
        check_run_order(self.run_order).map_err(ctx)?;
        if let Some(approval) = &self.approval {
            if !self.steps.is_empty() {
                return Err(ctx(
                    "has both steps and an approval; an action is one or the other".into(),
                ));
            }
            return check_timeout(approval.timeout).map_err(ctx);
        }
        if self.steps.is_empty() {
            return Err(ctx(
                "has no steps; add `run:` with at least one shell command".into(),
            ));
        }
        self.steps
            .iter()
            .try_for_each(|s| check_step(s))
            .map_err(ctx)?;
        if let Some(t) = self.timeout {
            check_timeout(t).map_err(ctx)?;
        }
        check_retry_lost(self.retry.lost).map_err(ctx)?;
        self.labels
            .keys()
            .try_for_each(|k| check_label_key(k))
            .map_err(ctx)?;
        self.env
            .keys()
            .try_for_each(|k| check_env_key(k))
            .map_err(ctx)
    }
}

impl StageSpec {
    /// Checks the stage and its actions (names unique within the stage).
    pub fn validate(&self) -> Result<(), String> {
        check_name("stage", &self.name)?;
        if self.actions.is_empty() {
            return Err(format!(
                "stage `{}` has no actions; add at least one",
                self.name
            ));
        }
        let mut seen = HashSet::new();
        for action in &self.actions {
            action
                .validate()
                .map_err(|e| format!("stage `{}`: {e}", self.name))?;
            if !seen.insert(action.name.as_str()) {
                return Err(format!(
                    "stage `{}` has two actions named `{}`; action names must be unique in a stage",
                    self.name, action.name
                ));
            }
        }
        Ok(())
    }
}

impl PipelineSpec {
    /// Checks every rule of a pipeline definition: the same rules the pipeline file enforces,
    /// without positions. Used for definitions that arrive in protobuf form.
    pub fn validate(&self) -> Result<(), String> {
        check_name("pipeline", &self.name)?;
        if self.stages.is_empty() {
            return Err(format!(
                "pipeline `{}` has no stages; add at least one",
                self.name
            ));
        }
        for (rule, cond) in [
            ("queued", &self.auto_cancel.queued),
            ("running", &self.auto_cancel.running),
        ] {
            if let Some(cond) = cond {
                condition::check(&cond.expr)
                    .map_err(|e| format!("auto_cancel.{rule}: {}", e.message))?;
            }
        }
        let mut seen = HashSet::new();
        for stage in &self.stages {
            stage.validate()?;
            super::stage_options::check_stage_options(stage, stage.effective_mode(self.mode))
                .map_err(|e| format!("stage `{}`: {e}", stage.name))?;
            if !seen.insert(stage.name.as_str()) {
                return Err(format!(
                    "pipeline `{}` has two stages named `{}`; stage names must be unique",
                    self.name, stage.name
                ));
            }
        }
        Ok(())
    }
}
