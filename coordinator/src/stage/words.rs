//! Why an execution waits, in words a person reads in `baton state` and in events.

use super::rules::WaitWhy;

/// The time of day of a Unix-ms instant, `HH:MM:SS` UTC.
pub fn clock_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `why` in words; `label` names an execution ("#3 (abc1234)").
pub fn why_in_words(why: &WaitWhy, label: impl Fn(&str) -> String) -> String {
    match why {
        WaitWhy::Paused => "paused: waiting for a person to resume (baton resume)".into(),
        WaitWhy::TransitionDisabled { by, reason } => {
            let by = if by.is_empty() { "someone" } else { by };
            if reason.is_empty() {
                format!("transition disabled by {by}")
            } else {
                format!("transition disabled by {by}: {reason}")
            }
        }
        WaitWhy::Settling { until_ms } => format!("settling until {}", clock_time(*until_ms)),
        WaitWhy::QueuedBehind { execution_id } => format!("queued behind {}", label(execution_id)),
        WaitWhy::HoldingForNewer { number } => {
            format!("held for #{number}, a newer execution still in an earlier stage")
        }
        WaitWhy::Cancelling { execution_id } => {
            format!(
                "lock held by {}, which is being stopped for it",
                label(execution_id)
            )
        }
        WaitWhy::LockHeld { execution_ids } => {
            let names: Vec<String> = execution_ids.iter().map(|id| label(id)).collect();
            format!("lock held by {}", names.join(", "))
        }
        WaitWhy::Entering => "stage is free; entering".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_documented() {
        let label = |id: &str| format!("#{id}");
        let said = |why| why_in_words(&why, label);
        assert_eq!(
            said(WaitWhy::LockHeld {
                execution_ids: vec!["3".into()]
            }),
            "lock held by #3"
        );
        assert_eq!(
            said(WaitWhy::TransitionDisabled {
                by: "alice".into(),
                reason: "freeze".into()
            }),
            "transition disabled by alice: freeze"
        );
        assert_eq!(
            said(WaitWhy::Settling {
                until_ms: 43_384_000
            }),
            "settling until 12:03:04 UTC"
        );
        assert!(said(WaitWhy::Paused).starts_with("paused: waiting for a person to resume"));
        assert_eq!(
            said(WaitWhy::QueuedBehind {
                execution_id: "4".into()
            }),
            "queued behind #4"
        );
    }
}
