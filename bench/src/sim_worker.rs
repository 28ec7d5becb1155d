//! Simulated workers: Session streams held by the benchmark itself, with no processes behind
//! them. They register, heartbeat at the interval the coordinator asks for, and either refuse
//! every offer (a fleet at rest) or take each one and report it finished at once (to measure
//! the coordinator's own job throughput rather than the machine's process start-up).

use std::collections::BTreeMap;
use std::time::Duration;

use baton_proto::v1::{
    self as pb, agent_service_client::AgentServiceClient, worker_message::Msg as FromWorker,
};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// What a simulated worker does with an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimJobs {
    /// Refuses it.
    Refuse,
    /// Accepts it, reports its one step and the job finished, succeeded.
    Succeed,
}

/// One simulated worker.
#[derive(Debug, Clone)]
pub struct SimWorker {
    /// Its name.
    pub name: String,
    /// The labels it offers.
    pub labels: BTreeMap<String, String>,
    /// Its slots.
    pub slots: u32,
    /// What it does with offers.
    pub jobs: SimJobs,
}

impl SimWorker {
    /// Holds the session until the stream ends (or the task is aborted).
    pub async fn run(self, channel: Channel) {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::WorkerMessage>(1024);
        let register = message(FromWorker::Register(pb::Register {
            name: self.name.clone(),
            labels: self.labels.clone().into_iter().collect(),
            slots: self.slots,
            ..Default::default()
        }));
        if tx.send(register).await.is_err() {
            return;
        }
        let Ok(reply) = AgentServiceClient::new(channel)
            .session(ReceiverStream::new(rx))
            .await
        else {
            return;
        };
        let mut inbound = reply.into_inner();
        let mut interval = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                msg = inbound.next() => match msg {
                    Some(Ok(pb::CoordinatorMessage { msg: Some(m), .. })) => match m {
                        pb::coordinator_message::Msg::Registered(r) if r.heartbeat_interval_ms > 0 => {
                            interval = tokio::time::interval(Duration::from_millis(r.heartbeat_interval_ms));
                        }
                        pb::coordinator_message::Msg::Offer(offer) => {
                            let job_id = offer.job.map(|j| j.job_id).unwrap_or_default();
                            for reply in self.answer(job_id) {
                                if tx.send(reply).await.is_err() {
                                    return;
                                }
                            }
                        }
                        _ => {}
                    },
                    Some(Ok(_)) => {}
                    _ => return,
                },
                _ = interval.tick() => {
                    let beat = message(FromWorker::Heartbeat(pb::Heartbeat::default()));
                    if tx.send(beat).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// What this worker says to an offer of `job_id`.
    fn answer(&self, job_id: String) -> Vec<pb::WorkerMessage> {
        match self.jobs {
            SimJobs::Refuse => vec![message(FromWorker::OfferReply(pb::OfferReply {
                job_id,
                accepted: false,
                reason: "simulated worker".into(),
            }))],
            SimJobs::Succeed => vec![
                message(FromWorker::OfferReply(pb::OfferReply {
                    job_id: job_id.clone(),
                    accepted: true,
                    reason: String::new(),
                })),
                message(FromWorker::StepFinished(pb::StepFinished {
                    job_id: job_id.clone(),
                    step: 0,
                    exit_code: 0,
                })),
                message(FromWorker::JobFinished(pb::JobFinished {
                    job_id,
                    outcome: pb::JobOutcome::Succeeded as i32,
                    exit_code: 0,
                    message: String::new(),
                    steps_done: 1,
                })),
            ],
        }
    }
}

/// A worker message; other fields (added by later protocol versions) keep their defaults.
#[allow(clippy::needless_update)]
fn message(msg: FromWorker) -> pb::WorkerMessage {
    pb::WorkerMessage {
        msg: Some(msg),
        ..Default::default()
    }
}
