//! The records Baton keeps, as stored (JSON in the store's trees).

use serde::{Deserialize, Serialize};

use crate::stage::rules::StageLock;

/// A pipeline's current definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineRecord {
    /// Pipeline name.
    pub name: String,
    /// Increases with every changed definition; starts at 1.
    pub version: u64,
    /// The YAML text of this version.
    pub yaml: String,
    /// Where the text came from.
    pub source_name: String,
    /// When this version was stored (Unix ms).
    pub updated_at_ms: i64,
}

/// Status of an execution (DESIGN.md spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionStatus {
    /// Running or waiting for a stage.
    InProgress,
    /// Stopped with wait: running jobs finish their step.
    Stopping,
    /// Stopped by a person.
    Stopped,
    /// Every stage succeeded.
    Succeeded,
    /// A stage failed.
    Failed,
    /// A newer execution took its place in front of a stage.
    Superseded,
    /// Ended by auto-cancel.
    Cancelled,
    /// Waits for a person to resume it.
    Paused,
}

impl ExecutionStatus {
    /// True once the execution can never change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Stopped | Self::Succeeded | Self::Failed | Self::Superseded | Self::Cancelled
        )
    }
}

/// Status of an execution in one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageStatus {
    /// Not reached yet.
    Pending,
    /// Waiting in front of the stage.
    Waiting,
    /// Inside the stage.
    InProgress,
    /// Every action succeeded.
    Succeeded,
    /// An action failed.
    Failed,
    /// Being stopped.
    Stopping,
    /// Stopped.
    Stopped,
    /// Superseded while waiting in front of the stage.
    Superseded,
    /// Cancelled by auto-cancel.
    Cancelled,
}

/// Status of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// Accepted by a worker.
    Running,
    /// Every step exited 0.
    Succeeded,
    /// A step failed, or the job timed out.
    Failed,
    /// Terminated by ABANDON; its process group is gone.
    Abandoned,
    /// Ended by DRAIN: the running step finished, the rest were skipped.
    Stopped,
    /// Its worker went silent past its lease.
    Lost,
}

impl JobStatus {
    /// True once the job has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// The source revision an execution is pinned to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// Branch name.
    pub branch: String,
    /// Commit id.
    pub commit: String,
    /// Commit message.
    pub message: String,
    /// What started it.
    pub trigger: String,
    /// The revision's order in its source of truth (higher is newer); 0 = not given.
    #[serde(default)]
    pub order: u64,
}

/// The execution a client request token started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestTokenRecord {
    /// The execution the first call started.
    pub execution_id: String,
    /// When the first call was made (Unix ms).
    pub at_ms: i64,
}

/// One execution's progress through one stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRun {
    /// Stage name.
    pub stage: String,
    /// Where the execution is with this stage.
    pub status: StageStatus,
    /// When it entered (Unix ms); 0 if it has not.
    pub started_at_ms: i64,
    /// When it left (Unix ms); 0 while inside.
    pub finished_at_ms: i64,
    /// The fence token it entered with; 0 if it has not.
    pub fence_token: u64,
    /// The run order whose jobs run now (or ran last).
    pub run_order: u32,
    /// Job ids, in creation order.
    pub jobs: Vec<String>,
}

/// One run of a pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// Unique id (UUID v7).
    pub id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Definition version it is pinned to.
    pub pipeline_version: u64,
    /// 1, 2, 3... per pipeline.
    pub number: u64,
    /// The source revision.
    pub revision: Revision,
    /// Current status.
    pub status: ExecutionStatus,
    /// Why it has its status.
    pub status_reason: String,
    /// Index of the stage it is in or in front of.
    pub stage_index: usize,
    /// One entry per stage of its definition.
    pub stages: Vec<StageRun>,
    /// Start (Unix ms).
    pub created_at_ms: i64,
    /// Last change (Unix ms).
    pub updated_at_ms: i64,
}

/// The stored state of one stage (its lock, who waits, its fence counter).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageRecord {
    /// Pipeline name.
    pub pipeline: String,
    /// Stage name.
    pub stage: String,
    /// The lock state the rules work on.
    pub lock: StageLock,
}

/// One attempt of one action on one worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// Unique id (UUID v7).
    pub id: String,
    /// Execution it belongs to.
    pub execution_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Stage name.
    pub stage: String,
    /// Action name.
    pub action: String,
    /// The action's run order.
    pub run_order: u32,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Current status.
    pub status: JobStatus,
    /// Worker running or that ran it.
    pub worker: String,
    /// Last exit code.
    pub exit_code: i32,
    /// Accepted by a worker (Unix ms).
    pub started_at_ms: i64,
    /// Ended (Unix ms).
    pub finished_at_ms: i64,
    /// Steps that finished.
    pub steps_done: u32,
    /// Steps in total.
    pub steps: Vec<String>,
    /// Labels asked of the worker.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Environment handed to every step.
    pub env: std::collections::BTreeMap<String, String>,
    /// Time limit in ms (0: none).
    pub timeout_ms: u64,
    /// Abandon grace in ms.
    pub grace_ms: u64,
    /// The stage's fence token this job carries.
    pub fence_token: u64,
    /// What happened, in words.
    pub message: String,
}
