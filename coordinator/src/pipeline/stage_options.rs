//! The stage options that decide who enters a stage and when (`order`, `capacity`,
//! `when_busy`, `settle`/`max_wait`, `lane`) and the pipeline's `lanes`: their spelling in a
//! pipeline file and the rules they follow, shared by the YAML parser and the protobuf form.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::model::{LaneScope, Lanes, Mode, QueueOrder, StageSpec, WhenBusy};

/// Parses one of `choices` for the key `key`.
fn keyword<T: Copy>(key: &str, text: &str, choices: &[(&str, T)]) -> Result<T, String> {
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == text) {
        return Ok(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let lower = text.to_ascii_lowercase().replace('-', "_");
    let hint = match choices.iter().find(|(n, _)| *n == lower) {
        Some((n, _)) => format!(" (write `{n}`)"),
        None => String::new(),
    };
    Err(format!(
        "unknown {key} `{text}`; expected one of {}{hint}",
        names.join(", ")
    ))
}

macro_rules! spelled {
    ($ty:ty, $key:literal, [$(($name:literal, $value:expr)),+ $(,)?]) => {
        impl $ty {
            /// The pipeline-file spelling.
            pub fn as_str(self) -> &'static str {
                $(if self == $value { return $name; })+
                unreachable!()
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                keyword($key, s, &[$(($name, $value)),+])
            }
        }
    };
}

spelled!(
    QueueOrder,
    "order",
    [
        ("fifo", QueueOrder::Fifo),
        ("newest_first", QueueOrder::NewestFirst),
        ("newest_ready_first", QueueOrder::NewestReadyFirst),
    ]
);
spelled!(
    WhenBusy,
    "when_busy",
    [
        ("supersede", WhenBusy::Supersede),
        ("pause", WhenBusy::Pause),
        ("cancel_running", WhenBusy::CancelRunning),
    ]
);
spelled!(
    Lanes,
    "lanes",
    [("single", Lanes::Single), ("branch", Lanes::Branch)]
);
spelled!(
    LaneScope,
    "lane",
    [
        ("per_lane", LaneScope::PerLane),
        ("shared", LaneScope::Shared)
    ]
);

/// `capacity`: 1 or more, QUEUED stages only.
pub fn check_capacity(capacity: u32, mode: Mode) -> Result<(), String> {
    if capacity == 0 {
        return Err(
            "`capacity` starts at 1 (the number of executions the stage holds at once)".into(),
        );
    }
    queued_only("capacity", mode)
}

/// `order`: QUEUED stages only.
pub fn check_order(mode: Mode) -> Result<(), String> {
    queued_only("order", mode)
}

fn queued_only(key: &str, mode: Mode) -> Result<(), String> {
    if mode != Mode::Queued {
        return Err(format!(
            "`{key}` applies to queued stages only, and this stage is {mode}; add `mode: queued` \
             to the stage or remove `{key}`"
        ));
    }
    Ok(())
}

/// `when_busy`: anything but the default needs a SUPERSEDED stage.
pub fn check_when_busy(when_busy: WhenBusy, mode: Mode) -> Result<(), String> {
    if when_busy != WhenBusy::Supersede && mode != Mode::Superseded {
        return Err(format!(
            "`when_busy: {when_busy}` applies to superseded stages only, and this stage is \
             {mode}; remove `when_busy` or make the stage `mode: superseded`"
        ));
    }
    Ok(())
}

/// `settle` and `max_wait`: a SUPERSEDED stage, a window longer than 0, `max_wait >= settle`,
/// and not with `when_busy: pause`.
pub fn check_settle(
    window: Duration,
    max_wait: Duration,
    mode: Mode,
    when_busy: WhenBusy,
) -> Result<(), String> {
    if mode != Mode::Superseded {
        return Err(format!(
            "`settle` requires a superseded stage (one waiting execution that newer ones \
             replace), and this stage is {mode}; remove `settle` or make the stage \
             `mode: superseded`"
        ));
    }
    if window.is_zero() {
        return Err("`settle` must be longer than 0; leave it out for no settle window".into());
    }
    if when_busy == WhenBusy::Pause {
        return Err(
            "`settle` cannot be combined with `when_busy: pause`: a paused execution \
                    waits for a person, not for a quiet period"
                .into(),
        );
    }
    if max_wait < window {
        return Err(format!(
            "`max_wait` ({}) is shorter than `settle` ({}); `max_wait` bounds the whole wait, so \
             make it at least `settle`",
            humantime::format_duration(max_wait),
            humantime::format_duration(window)
        ));
    }
    Ok(())
}

/// Every stage option of `stage`, given its effective mode (positions are the parser's job).
pub fn check_stage_options(stage: &StageSpec, mode: Mode) -> Result<(), String> {
    if let Some(c) = stage.capacity {
        check_capacity(c, mode)?;
    }
    if stage.order.is_some() {
        check_order(mode)?;
    }
    check_when_busy(stage.when_busy, mode)?;
    if let Some(s) = stage.settle {
        check_settle(s.window, s.max_wait, mode, stage.when_busy)?;
    }
    Ok(())
}
