//! The safety check: no two jobs of one stage lock act at once, and no job acts once a newer
//! fence token of its lock has been entered (from then on its token is stale: CheckFence
//! would refuse it).

use std::collections::BTreeMap;

use crate::job::Act;

/// The coordinator entered `token` into `lock` (durably) at `at_ms`, as seen in its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `pipeline/stage/lane`.
    pub lock: String,
    /// The fence token of that entry.
    pub token: u64,
    /// Simulated ms when the store first showed it.
    pub at_ms: i64,
}

/// Every breach of the rule in `acts`; an act still running counts as acting until `end_ms`.
///
/// A stage with several actions would have several jobs per token: the scenario uses one
/// action per stage, so any two overlapping acts of one lock are a breach.
pub fn violations(acts: &[Act], entries: &[Entry], end_ms: i64) -> Vec<String> {
    let mut found = Vec::new();
    let mut by_lock: BTreeMap<&str, Vec<&Act>> = BTreeMap::new();
    for act in acts {
        by_lock.entry(act.lock.as_str()).or_default().push(act);
    }
    for (lock, acts) in &by_lock {
        for a in acts {
            let a_end = a.end_ms.unwrap_or(end_ms);
            // Acting with a token that is no longer valid.
            let newer = entries
                .iter()
                .filter(|e| e.lock == *lock && e.token > a.token)
                .map(|e| e.at_ms)
                .min();
            if let Some(entered) = newer.filter(|at| a_end > *at) {
                found.push(format!(
                    "{lock}: job {} on {} acted with token {} until {a_end} ms, but a newer \
                     token was entered at {entered} ms",
                    a.job_id, a.worker, a.token
                ));
            }
            // Two jobs acting at once, whatever their tokens.
            for b in acts.iter().filter(|b| b.job_id > a.job_id) {
                let b_end = b.end_ms.unwrap_or(end_ms);
                if a.start_ms < b_end && b.start_ms < a_end {
                    found.push(format!(
                        "{lock}: job {} on {} (token {}, {}..{a_end} ms) and job {} on {} \
                         (token {}, {}..{b_end} ms) acted at once",
                        a.job_id,
                        a.worker,
                        a.token,
                        a.start_ms,
                        b.job_id,
                        b.worker,
                        b.token,
                        b.start_ms
                    ));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::ActEnd;

    fn act(id: &str, token: u64, start: i64, end: Option<i64>) -> Act {
        Act {
            job_id: id.into(),
            worker: "w".into(),
            lock: "p/deploy/".into(),
            token,
            start_ms: start,
            end_ms: end,
            ended: end.map(|_| ActEnd::Finished),
        }
    }

    fn entry(token: u64, at: i64) -> Entry {
        Entry {
            lock: "p/deploy/".into(),
            token,
            at_ms: at,
        }
    }

    #[test]
    fn a_clean_handover_passes() {
        let acts = [act("a", 1, 0, Some(100)), act("b", 2, 150, None)];
        assert!(violations(&acts, &[entry(1, 0), entry(2, 120)], 500).is_empty());
    }

    #[test]
    fn acting_past_a_newer_entry_is_caught_even_before_the_newer_job_starts() {
        let acts = [act("a", 1, 0, Some(200)), act("b", 2, 300, None)];
        let found = violations(&acts, &[entry(1, 0), entry(2, 120)], 500);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("token 1 until 200"), "{found:?}");
    }

    #[test]
    fn two_jobs_of_one_token_acting_at_once_are_caught() {
        let acts = [act("a", 3, 0, None), act("b", 3, 50, Some(90))];
        let found = violations(&acts, &[entry(3, 0)], 500);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("acted at once"), "{found:?}");
    }
}
