//! Lost workers: a worker silent past its lease is lost. Its jobs are not given up at once:
//! the worker kills its own jobs once it has been cut off for its lease, so the coordinator
//! takes them to be gone only when the worker says so (it reconnects without them, or reports
//! them ended) or when the lost margin has passed too. Only then does the job end Lost, and
//! only then can its pipeline retry it or release the stage lock.
//!
//! Also here: which reports a worker re-sent after a broken stream were applied already
//! (sequence numbers per worker incarnation), so each is applied exactly once.

use actix::prelude::*;

use super::{Dispatcher, JobEventKind};
use crate::store::records::JobStatus;

impl Dispatcher {
    /// Declares a worker lost: its offers go back to the queue; its jobs end Lost once the
    /// lost margin has passed, unless the worker confirms earlier that they are gone.
    pub(super) fn lose(&mut self, worker: &str, ctx: &mut Context<Self>) {
        if let Some(w) = self.workers.get_mut(worker) {
            w.lost = true;
            w.tx = None;
        }
        self.take_back_offers(worker, ctx);
        let margin = self.timing.lost_margin;
        for id in self.running_on(worker) {
            let Some(run) = self.running.get_mut(&id) else {
                continue;
            };
            if run.lost {
                continue;
            }
            run.lost = true;
            tracing::warn!(job_id = %id, %worker, ?margin, "worker lost; job ends Lost after the margin");
            let (job_id, name) = (id.clone(), worker.to_string());
            ctx.run_later(margin, move |act, ctx| {
                let still_lost = act.running.get(&job_id).is_some_and(|r| r.lost);
                if still_lost {
                    act.finish_lost(
                        &job_id,
                        format!("worker {name} went silent past its lease (and the lost margin)"),
                    );
                    act.dispatch(ctx);
                }
            });
        }
        self.dispatch(ctx);
    }

    /// Ends a job whose worker was lost.
    pub(super) fn finish_lost(&mut self, job_id: &str, message: String) {
        self.finish(
            job_id,
            JobEventKind::Finished {
                status: JobStatus::Lost,
                exit_code: -1,
                steps_done: 0,
                message,
            },
        );
    }

    /// Where worker `name` (this `incarnation` of it) resumes: the last report applied from it.
    /// A new incarnation (a restarted worker process) starts again at 0.
    pub(super) fn resume_point(&mut self, name: &str, incarnation: &str) -> u64 {
        let entry = self
            .applied
            .entry(name.to_string())
            .or_insert_with(|| (incarnation.to_string(), 0));
        if entry.0 != incarnation {
            *entry = (incarnation.to_string(), 0);
        }
        entry.1
    }

    /// Records report `seq` from `worker`; false when it was applied before (a re-send).
    /// Unsequenced messages (0) always count.
    pub(super) fn first_time(&mut self, worker: &str, seq: u64) -> bool {
        if seq == 0 {
            return true;
        }
        let entry = self
            .applied
            .entry(worker.to_string())
            .or_insert_with(|| (String::new(), 0));
        if seq <= entry.1 {
            return false;
        }
        entry.1 = seq;
        true
    }

    /// Declares lost every worker silent for longer than its lease.
    pub(super) fn check_leases(&mut self, ctx: &mut Context<Self>) {
        let now = self.clock.now_ms();
        let lease = self.timing.lease.as_millis() as i64;
        let expired: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.lost && now - w.last_seen_ms > lease)
            .map(|(n, _)| n.clone())
            .collect();
        for worker in expired {
            self.lose(&worker, ctx);
        }
    }
}
