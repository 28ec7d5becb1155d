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

/// Which execution of a QUEUED stage's line enters next (pipeline file `order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueOrder {
    /// Oldest arrival first; none overtakes another. The default.
    #[default]
    Fifo,
    /// Newest execution first, and the stage holds off while a newer execution of the same
    /// lane is still in an earlier stage (it will want in soon).
    NewestFirst,
    /// Newest execution among those already waiting in front of the stage.
    NewestReadyFirst,
}

/// What a newer execution does when it finds the stage held (pipeline file `when_busy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenBusy {
    /// It waits in the inbound slot and enters after the holder. The default.
    #[default]
    Supersede,
    /// It is Paused in front of the stage until a person resumes it.
    Pause,
    /// It stops the holder, then enters once the holder has left.
    CancelRunning,
}

/// How a pipeline's executions share stage locks (pipeline file `lanes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lanes {
    /// One set of stage locks for the whole pipeline. The default.
    #[default]
    Single,
    /// Each branch has its own stage locks (stages marked `lane: shared` excepted).
    Branch,
}

/// Whether a stage follows its pipeline's lanes (pipeline file `lane`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LaneScope {
    /// One lock per lane of the pipeline. The default.
    #[default]
    PerLane,
    /// One lock across every lane (a shared dev server).
    Shared,
}

/// A trailing-edge debounce in front of a stage (pipeline file `settle` and `max_wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settle {
    /// An execution enters only once no newer one arrived for this long.
    pub window: Duration,
    /// ... and never later than this after the first execution of the burst arrived.
    /// Default: five times `window`.
    pub max_wait: Duration,
}

/// How many times `settle` the default `max_wait` is.
pub const DEFAULT_MAX_WAIT_FACTOR: u32 = 5;

/// A whole pipeline: ordered stages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PipelineSpec {
    /// Unique pipeline name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// The pipeline's mode. Default: SUPERSEDED.
    pub mode: Mode,
    /// One set of stage locks, or one per branch. Default: [`Lanes::Single`].
    pub lanes: Lanes,
    /// Stages, run in this order; at least one.
    pub stages: Vec<StageSpec>,
    /// What a new execution cancels among older ones of the same concurrency key.
    /// Default: nothing (no auto-cancel).
    pub auto_cancel: AutoCancel,
    /// Which executions compete with each other for auto-cancel. Default: branch.
    pub concurrency_key: ConcurrencyKey,
}

/// One stage: a set of actions behind one lock.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StageSpec {
    /// Unique within the pipeline.
    pub name: String,
    /// Overrides the pipeline's mode when set. Default: the pipeline's.
    pub mode: Option<Mode>,
    /// Which waiting execution enters next (QUEUED stages only). Default: FIFO.
    pub order: Option<QueueOrder>,
    /// How many executions may hold the stage at once (QUEUED stages only). Default: 1.
    pub capacity: Option<u32>,
    /// What a newer arrival does when the stage is held (SUPERSEDED stages only).
    /// Default: [`WhenBusy::Supersede`].
    pub when_busy: WhenBusy,
    /// Debounce in front of the stage (SUPERSEDED stages only). Default: none.
    pub settle: Option<Settle>,
    /// Whether the stage has a lock per lane or one shared lock. Default: per lane.
    pub lane: LaneScope,
    /// At least one action.
    pub actions: Vec<ActionSpec>,
    /// True for stages auto-cancel must never interrupt (a deploy; `interruptible: false` in
    /// the file): an execution inside finishes the stage and is cancelled at the next
    /// boundary. Default: false (interruptible).
    pub uninterruptible: bool,
    /// How auto-cancel stops an execution inside this stage. Default: abandon.
    pub on_cancel: CancelStop,
}

/// One `run` action: steps run in order on one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionSpec {
    /// Unique within the stage.
    pub name: String,
    /// Actions with the same run order run in parallel, lower orders first. Default: 1.
    pub run_order: u32,
    /// Shell commands, each run with `sh -c`; at least one for a `run` action, none for an
    /// approval.
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
    /// Set for an `approval` action (a person approves or rejects; no steps, no worker).
    /// Default: none (a `run` action).
    pub approval: Option<ApprovalSpec>,
}

/// An approval action's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalSpec {
    /// How long the approval may stay pending before it fails. Default: 7 days.
    pub timeout: Duration,
    /// When a newer execution waits in front of the stage while this approval is pending,
    /// the approval moves to the newest one (the holder is superseded). Default: false.
    pub follow_latest: bool,
}

/// Default approval timeout (CodePipeline's): 7 days.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Auto-cancel: what a new execution ends among older executions of the same concurrency key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoCancel {
    /// Cancel older executions that wait in front of a stage (no job running), when the
    /// condition holds for the new execution. Default: off.
    pub queued: Option<Condition>,
    /// Also stop older executions inside a stage, when the condition holds. Default: off.
    pub running: Option<Condition>,
}

/// A `when` condition: a CEL expression over `branch`, `tag`, `pull_request` and `pipeline`,
/// checked when the pipeline is put. `true` when the file gives none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The expression's text.
    pub expr: String,
}

/// Which executions compete for auto-cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConcurrencyKey {
    /// Executions of the same branch. The default.
    #[default]
    Branch,
    /// Every execution of the pipeline, whatever its branch.
    Pipeline,
}

/// How auto-cancel stops an execution inside a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CancelStop {
    /// Running jobs are terminated (SIGTERM to the group, grace, SIGKILL). The default.
    #[default]
    Abandon,
    /// Running jobs finish their current step; the rest are skipped.
    Drain,
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
