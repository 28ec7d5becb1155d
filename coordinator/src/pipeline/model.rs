//! The pipeline definition as the coordinator uses it: plain, validated data.
//!
//! Built by [`super::file`] from a pipeline file, or from the stored protobuf form. Never
//! holds anything that has not passed validation.

use std::collections::BTreeMap;
use std::time::Duration;

/// How executions share a stage (DESIGN.md "Rules").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One execution holds the stage; one waits in front; a newer arrival supersedes the waiting one.
    #[default]
    Superseded,
    /// One execution holds the stage; arrivals wait in FIFO order.
    Queued,
    /// No lock: executions run independently.
    Parallel,
}

/// A whole pipeline: ordered stages.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSpec {
    /// Unique pipeline name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// The pipeline's mode. Default: SUPERSEDED.
    pub mode: Mode,
    /// Stages, run in this order; at least one.
    pub stages: Vec<StageSpec>,
}

/// One stage: a set of actions behind one lock.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    /// Unique within the pipeline.
    pub name: String,
    /// Overrides the pipeline's mode when set. Default: the pipeline's.
    pub mode: Option<Mode>,
    /// At least one action.
    pub actions: Vec<ActionSpec>,
}

/// One `run` action: steps run in order on one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionSpec {
    /// Unique within the stage.
    pub name: String,
    /// Actions with the same run order run in parallel, lower orders first. Default: 1.
    pub run_order: u32,
    /// Shell commands, each run with `sh -c`; at least one.
    pub steps: Vec<String>,
    /// Labels a worker must offer. Default: none (any worker).
    pub labels: BTreeMap<String, String>,
    /// Whole-job time limit. Default: none.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when the job is abandoned. Default: 10 s.
    pub grace: Duration,
    /// Extra environment for every step. Default: none.
    pub env: BTreeMap<String, String>,
    /// What to do when a job of this action is lost with its worker. Default: fail.
    pub retry: RetryPolicy,
    /// The signal an abandon (or timeout) sends first, before SIGKILL after `grace`, as the
    /// name without `SIG`. Default: `TERM`.
    pub cancel_signal: CancelSignal,
}

/// Signals a job may be asked to stop with (`cancel_signal:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CancelSignal {
    /// SIGTERM (default).
    #[default]
    Term,
    /// SIGINT, as Ctrl-C would.
    Int,
    /// SIGQUIT.
    Quit,
    /// SIGHUP.
    Hup,
    /// SIGUSR1.
    Usr1,
    /// SIGUSR2.
    Usr2,
}

impl CancelSignal {
    /// Every accepted signal.
    pub const ALL: [CancelSignal; 6] = [
        CancelSignal::Term,
        CancelSignal::Int,
        CancelSignal::Quit,
        CancelSignal::Hup,
        CancelSignal::Usr1,
        CancelSignal::Usr2,
    ];

    /// The name without `SIG`, as written in a pipeline file and sent to workers.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelSignal::Term => "TERM",
            CancelSignal::Int => "INT",
            CancelSignal::Quit => "QUIT",
            CancelSignal::Hup => "HUP",
            CancelSignal::Usr1 => "USR1",
            CancelSignal::Usr2 => "USR2",
        }
    }

    /// Parses `TERM`, `SIGTERM`, `term`...; `""` is the default.
    pub fn parse(text: &str) -> Result<CancelSignal, String> {
        if text.is_empty() {
            return Ok(CancelSignal::Term);
        }
        let upper = text.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        CancelSignal::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = CancelSignal::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "`cancel_signal: {text}` is not a signal Baton sends; use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// When a job is tried again (`retry:` in the pipeline file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    /// How many times a job lost with its worker is tried again on another worker (a new
    /// attempt) before the action fails. Default: 0 (a lost job fails the action).
    pub lost: u32,
}

/// Largest `retry.lost` accepted.
pub const MAX_RETRY_LOST: u32 = 10;

/// Default abandon grace period (Buildkite's).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

impl StageSpec {
    /// The stage's effective mode, given its pipeline's.
    pub fn effective_mode(&self, pipeline_mode: Mode) -> Mode {
        self.mode.unwrap_or(pipeline_mode)
    }

    /// The distinct run orders of the stage's actions, ascending.
    pub fn run_orders(&self) -> Vec<u32> {
        let mut orders: Vec<u32> = self.actions.iter().map(|a| a.run_order).collect();
        orders.sort_unstable();
        orders.dedup();
        orders
    }
}

impl PipelineSpec {
    /// The stage index with this name.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }
}
