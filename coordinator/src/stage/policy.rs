//! A stage's policy as the rules see it: the mode and every option of the pipeline file that
//! decides who enters and when, resolved against the pipeline's defaults.

use crate::pipeline::{Mode, PipelineSpec, QueueOrder, StageSpec, WhenBusy};

/// A debounce window in milliseconds (see [`crate::pipeline::Settle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleMs {
    /// An inbound execution enters only once no newer one arrived for this long.
    pub window_ms: i64,
    /// ... and never later than this after the first waiter of the burst.
    pub max_wait_ms: i64,
}

/// Everything the rules need to know about one stage's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagePolicy {
    /// SUPERSEDED, QUEUED or PARALLEL.
    pub mode: Mode,
    /// Who of the line enters next (QUEUED).
    pub order: QueueOrder,
    /// How many executions may hold the stage (QUEUED; 1 otherwise).
    pub capacity: usize,
    /// What a newer arrival does when the stage is held (SUPERSEDED).
    pub when_busy: WhenBusy,
    /// Debounce (SUPERSEDED).
    pub settle: Option<SettleMs>,
}

impl Default for StagePolicy {
    fn default() -> Self {
        Self::of_mode(Mode::Superseded)
    }
}

impl StagePolicy {
    /// The plain policy of a mode: FIFO, capacity 1, supersede, no settle.
    pub fn of_mode(mode: Mode) -> Self {
        Self {
            mode,
            order: QueueOrder::Fifo,
            capacity: 1,
            when_busy: WhenBusy::Supersede,
            settle: None,
        }
    }

    /// The policy of `stage` in `pipeline`.
    pub fn of(pipeline: &PipelineSpec, stage: &StageSpec) -> Self {
        let mode = stage.effective_mode(pipeline.mode);
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self {
            mode,
            order: stage.order.unwrap_or_default(),
            capacity: stage.capacity.map_or(1, |c| c.max(1) as usize),
            when_busy: stage.when_busy,
            settle: stage.settle.map(|s| SettleMs {
                window_ms: ms(s.window),
                max_wait_ms: ms(s.max_wait),
            }),
        }
    }

    /// How many executions may hold the stage at once.
    pub fn room(&self) -> usize {
        match self.mode {
            Mode::Parallel => usize::MAX,
            Mode::Queued => self.capacity.max(1),
            Mode::Superseded => 1,
        }
    }
}
