//! Reports from worker sessions: offer replies, step and job ends, log output, signal
//! acknowledgements, heartbeats and goodbyes. A report counts only when it comes on the
//! worker's current session, for a job that worker holds, and has not been applied before.

use actix::prelude::*;
use baton_proto::v1::{
    self as pb, coordinator_message::Msg as ToWorker, worker_message::Msg as FromWorker,
};

use super::{Dispatcher, FromSession, JobEvent, JobEventKind, Running};
use crate::store::records::JobStatus;

fn outcome_status(outcome: i32) -> JobStatus {
    match pb::JobOutcome::try_from(outcome) {
        Ok(pb::JobOutcome::Succeeded) => JobStatus::Succeeded,
        Ok(pb::JobOutcome::Abandoned) => JobStatus::Abandoned,
        Ok(pb::JobOutcome::Stopped) => JobStatus::Stopped,
        _ => JobStatus::Failed,
    }
}

impl Handler<FromSession> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: FromSession, ctx: &mut Context<Self>) {
        let worker = msg.worker;
        match self.workers.get_mut(&worker) {
            Some(w) if w.session == msg.session => w.last_seen_ms = self.clock.now_ms(),
            // A message from a replaced session: that connection is stale.
            _ => return,
        }
        if !self.first_time(&worker, msg.seq) {
            tracing::debug!(%worker, seq = msg.seq, "report already applied; dropped");
            return;
        }
        // Whether this worker holds the job: reports about any other job are dropped.
        let holds = |act: &Self, job_id: &str| {
            act.running
                .get(job_id)
                .is_some_and(|r| r.worker == worker && !r.lost)
        };
        match msg.msg {
            FromWorker::OfferReply(reply) => {
                let offer = match self.offers.remove(&reply.job_id) {
                    Some(o) if o.worker == worker => o,
                    Some(o) => {
                        self.offers.insert(reply.job_id, o);
                        return;
                    }
                    None => {
                        if reply.accepted && !holds(self, &reply.job_id) {
                            // Withdrawn or cancelled meanwhile: it must not run.
                            self.send(
                                &worker,
                                ToWorker::Abandon(pb::AbandonJob {
                                    job_id: reply.job_id,
                                    grace_ms: 0,
                                }),
                            );
                        }
                        return;
                    }
                };
                ctx.cancel_future(offer.timer);
                if reply.accepted {
                    offer.job.route.do_send(JobEvent {
                        job_id: reply.job_id.clone(),
                        kind: JobEventKind::Accepted {
                            worker: worker.clone(),
                        },
                    });
                    self.running.insert(
                        reply.job_id,
                        Running {
                            worker,
                            route: offer.job.route,
                            lost: false,
                        },
                    );
                } else {
                    tracing::info!(job_id = %reply.job_id, %worker, reason = %reply.reason, "offer refused");
                    if reply.reason == "draining"
                        && let Some(w) = self.workers.get_mut(&worker)
                    {
                        w.draining = true;
                    }
                    self.queue.push_front(offer.job);
                }
                self.dispatch(ctx);
            }
            FromWorker::StepFinished(step) => {
                if let Some(run) = self
                    .running
                    .get(&step.job_id)
                    .filter(|r| r.worker == worker && !r.lost)
                {
                    run.route.do_send(JobEvent {
                        job_id: step.job_id,
                        kind: JobEventKind::StepFinished {
                            steps_done: step.step + 1,
                        },
                    });
                }
            }
            FromWorker::JobFinished(done) => {
                if holds(self, &done.job_id) {
                    self.finish(
                        &done.job_id,
                        JobEventKind::Finished {
                            status: outcome_status(done.outcome),
                            exit_code: done.exit_code,
                            steps_done: done.steps_done,
                            message: done.message,
                        },
                    );
                    self.dispatch(ctx);
                } else if self
                    .running
                    .get(&done.job_id)
                    .is_some_and(|r| r.worker == worker && r.lost)
                {
                    self.finish_lost(
                        &done.job_id,
                        format!(
                            "worker {worker} was lost; it confirmed the job's processes are gone"
                        ),
                    );
                    self.dispatch(ctx);
                } else {
                    tracing::warn!(job_id = %done.job_id, %worker, "dropped a report for a job this worker does not hold");
                }
            }
            FromWorker::Goodbye(bye) => {
                tracing::info!(%worker, reason = %bye.reason, "worker says goodbye");
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.draining = true;
                }
                // Offers it has not answered go elsewhere; queued jobs may now have no taker.
                self.take_back_offers(&worker, ctx);
                self.dispatch(ctx);
            }
            FromWorker::SignalAck(ack) => {
                if ack.kind == pb::SignalKind::DrainWorker as i32
                    && let Some(w) = self.workers.get_mut(&worker)
                {
                    w.draining = true;
                    self.take_back_offers(&worker, ctx);
                    self.dispatch(ctx);
                }
                tracing::debug!(job_id = %ack.job_id, %worker, kind = ack.kind, "signal acknowledged");
            }
            FromWorker::Heartbeat(_) => {
                let upto = self.applied.get(&worker).map_or(0, |(_, seq)| *seq);
                self.send(&worker, ToWorker::Applied(pb::ReportsApplied { upto }));
            }
            FromWorker::JobStarted(_) | FromWorker::Register(_) => {}
            FromWorker::Log(log) => {
                if holds(self, &log.job_id) {
                    self.logs
                        .append_at(&log.job_id, log.offset, log.step, log.stream, log.data);
                } else {
                    tracing::warn!(job_id = %log.job_id, %worker, "dropped log output of a job this worker does not hold");
                }
            }
        }
    }
}
