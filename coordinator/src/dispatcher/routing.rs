//! What the fleet can take: telling a pipeline when no connected worker could ever run one
//! of its queued jobs (instead of leaving it waiting silently), and draining a worker.

use std::collections::BTreeMap;

use actix::prelude::*;
use baton_proto::v1::{self as pb, coordinator_message::Msg as ToWorker};

use super::{Dispatcher, DrainWorkerNamed, JobEvent, JobEventKind, ListWorkers, WorkerView};

/// Why no connected worker can take a job with `labels`, or `None` when one could (maybe
/// later, once a slot frees). `offered` are the labels of the workers that take jobs.
pub fn unmatched_reason<'a>(
    labels: &BTreeMap<String, String>,
    mut offered: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> Option<String> {
    if offered.any(|w| labels.iter().all(|(k, v)| w.get(k) == Some(v))) {
        return None;
    }
    let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Some(if wanted.is_empty() {
        "no connected worker takes new jobs (none is connected, or all are draining)".to_string()
    } else {
        format!("no connected worker offers {}", wanted.join(", "))
    })
}

impl Dispatcher {
    /// Tells pipelines which queued jobs no connected worker can take, and when that changes.
    pub(super) fn report_unmatched(&mut self) {
        let offered: Vec<&BTreeMap<String, String>> = self
            .workers
            .values()
            .filter(|w| w.tx.is_some() && !w.draining && !w.lost)
            .map(|w| &w.labels)
            .collect();
        let mut now_unmatched = std::collections::HashMap::new();
        for job in &self.queue {
            let id = &job.spec.job_id;
            let reason = unmatched_reason(&job.labels, offered.iter().copied());
            let told = self.unmatched.get(id);
            if reason.as_ref() != told {
                job.route.do_send(JobEvent {
                    job_id: id.clone(),
                    kind: JobEventKind::Waiting {
                        message: reason.clone().unwrap_or_default(),
                    },
                });
            }
            if let Some(reason) = reason {
                now_unmatched.insert(id.clone(), reason);
            }
        }
        self.unmatched = now_unmatched;
    }
}

impl Handler<DrainWorkerNamed> for Dispatcher {
    type Result = Option<WorkerView>;
    fn handle(&mut self, msg: DrainWorkerNamed, ctx: &mut Context<Self>) -> Option<WorkerView> {
        let w = self.workers.get_mut(&msg.0)?;
        w.draining = true;
        self.send(&msg.0, ToWorker::DrainWorker(pb::DrainWorker {}));
        tracing::info!(worker = %msg.0, "draining worker on request");
        // Offers it has not answered go elsewhere; it would refuse them anyway.
        self.take_back_offers(&msg.0, ctx);
        self.dispatch(ctx);
        let list = <Self as Handler<ListWorkers>>::handle(self, ListWorkers, ctx).0;
        list.into_iter().find(|v| v.name == msg.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_job_no_worker_matches_says_which_labels_are_missing() {
        let linux = labels(&[("os", "linux"), ("queue", "build")]);
        let want = labels(&[("os", "windows")]);
        assert_eq!(
            unmatched_reason(&want, [&linux].into_iter()).as_deref(),
            Some("no connected worker offers os=windows")
        );
        assert_eq!(
            unmatched_reason(&labels(&[("os", "linux")]), [&linux].into_iter()),
            None
        );
        assert_eq!(
            unmatched_reason(&BTreeMap::new(), std::iter::empty()).as_deref(),
            Some("no connected worker takes new jobs (none is connected, or all are draining)")
        );
    }
}
