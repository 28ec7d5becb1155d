//! The dispatcher: worker sessions, ready jobs, and matching one to the other.
//!
//! Assignment is two-phase: a job is offered to a worker with a free slot whose labels match,
//! and becomes Running only when the worker accepts. An offer left unanswered is taken back and
//! offered again. Reports from workers are routed to the job's pipeline; reports about a job a
//! worker does not hold are dropped. A worker silent past its lease loses its jobs.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use baton_proto::v1::{self as pb, coordinator_message::Msg as ToWorker};
use tokio::sync::mpsc::UnboundedSender;

use crate::clock::SharedClock;
use crate::logs::LogHub;

mod lost;
mod messages;
mod reports;
mod routing;

pub use messages::*;

struct Session {
    labels: BTreeMap<String, String>,
    slots: u32,
    tx: Option<UnboundedSender<pb::CoordinatorMessage>>,
    session: u64,
    draining: bool,
    lost: bool,
    last_seen_ms: i64,
}

struct Offer {
    worker: String,
    job: Enqueue,
    timer: SpawnHandle,
}

struct Running {
    worker: String,
    route: Recipient<JobEvent>,
    /// Its worker was declared lost: nothing it reports about the job counts any more, and
    /// the job ends Lost when the worker confirms it is gone or the lost margin runs out.
    lost: bool,
}

/// Timing the dispatcher works with.
#[derive(Debug, Clone, Copy)]
pub struct DispatchTiming {
    /// How long an offer may stay unanswered.
    pub offer_timeout: Duration,
    /// How long a silent worker keeps its jobs.
    pub lease: Duration,
    /// How long after a worker is declared lost its jobs are still taken to be running (the
    /// worker kills its own jobs once it has been cut off for its lease).
    pub lost_margin: Duration,
}

/// Matches ready jobs to workers and routes worker reports.
pub struct Dispatcher {
    timing: DispatchTiming,
    clock: SharedClock,
    logs: Arc<LogHub>,
    workers: BTreeMap<String, Session>,
    queue: VecDeque<Enqueue>,
    offers: HashMap<String, Offer>,
    running: HashMap<String, Running>,
    next_session: u64,
    /// Queued jobs no connected worker can take, with the message their pipeline was told.
    unmatched: HashMap<String, String>,
    /// Per worker name: its incarnation and the last report sequence number applied from it.
    applied: HashMap<String, (String, u64)>,
}

impl Dispatcher {
    /// A dispatcher with no workers.
    pub fn new(timing: DispatchTiming, clock: SharedClock, logs: Arc<LogHub>) -> Self {
        Self {
            timing,
            clock,
            logs,
            workers: BTreeMap::new(),
            queue: VecDeque::new(),
            offers: HashMap::new(),
            running: HashMap::new(),
            next_session: 0,
            unmatched: HashMap::new(),
            applied: HashMap::new(),
        }
    }

    fn busy(&self, worker: &str) -> usize {
        self.running.values().filter(|r| r.worker == worker).count()
            + self.offers.values().filter(|o| o.worker == worker).count()
    }

    fn send(&self, worker: &str, msg: ToWorker) -> bool {
        tracing::trace!(target: "baton::hop", "dispatcher-send");
        self.workers
            .get(worker)
            .and_then(|w| w.tx.as_ref())
            .is_some_and(|tx| tx.send(pb::CoordinatorMessage { msg: Some(msg) }).is_ok())
    }

    /// Offers queued jobs, oldest first, to matching workers with a free slot.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        let mut still_queued = VecDeque::new();
        while let Some(job) = self.queue.pop_front() {
            let candidate = self
                .workers
                .iter()
                .filter(|(_, w)| w.tx.is_some() && !w.draining && !w.lost)
                .filter(|(_, w)| job.labels.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
                .map(|(name, w)| ((w.slots as usize).saturating_sub(self.busy(name)), name))
                .filter(|(free, _)| *free > 0)
                .max_by_key(|(free, _)| *free)
                .map(|(_, name)| name.clone());
            match candidate {
                Some(worker) => self.offer(worker, job, ctx),
                None => still_queued.push_back(job),
            }
        }
        self.queue = still_queued;
        self.report_unmatched();
    }

    fn offer(&mut self, worker: String, job: Enqueue, ctx: &mut Context<Self>) {
        let job_id = job.spec.job_id.clone();
        let _span = tracing::info_span!(
            "job",
            job_id = %job_id,
            execution_id = %job.spec.execution_id,
            stage = %job.spec.stage
        )
        .entered();
        tracing::debug!(worker = %worker, "offering job");
        if !self.send(
            &worker,
            ToWorker::Offer(pb::JobOffer {
                job: Some(job.spec.clone()),
            }),
        ) {
            self.queue.push_back(job);
            return;
        }
        let id = job_id.clone();
        let timer = ctx.run_later(self.timing.offer_timeout, move |act, ctx| {
            if let Some(offer) = act.offers.remove(&id) {
                tracing::info!(job_id = %id, worker = %offer.worker, "offer unanswered; taking it back");
                act.send(&offer.worker, ToWorker::Withdraw(pb::WithdrawOffer { job_id: id.clone() }));
                act.queue.push_front(offer.job);
                act.dispatch(ctx);
            }
        });
        self.offers.insert(job_id, Offer { worker, job, timer });
    }

    fn finish(&mut self, job_id: &str, kind: JobEventKind) {
        if let Some(run) = self.running.remove(job_id) {
            self.logs.finish(job_id);
            run.route.do_send(JobEvent {
                job_id: job_id.to_string(),
                kind,
            });
        }
    }

    /// Ids of the jobs `worker` runs.
    fn running_on(&self, worker: &str) -> Vec<String> {
        self.running
            .iter()
            .filter(|(_, r)| r.worker == worker)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Puts every job offered to `worker` back at the front of the queue.
    fn take_back_offers(&mut self, worker: &str, ctx: &mut Context<Self>) {
        let offered: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.worker == worker)
            .map(|(id, _)| id.clone())
            .collect();
        for id in offered {
            if let Some(o) = self.offers.remove(&id) {
                ctx.cancel_future(o.timer);
                self.queue.push_front(o.job);
            }
        }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        let tick = (self.timing.lease / 4).max(Duration::from_millis(20));
        ctx.run_interval(tick, |act, ctx| act.check_leases(ctx));
    }
}

impl Handler<Enqueue> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) {
        self.queue.push_back(msg);
        self.dispatch(ctx);
    }
}

impl Handler<Adopt> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Adopt, _: &mut Context<Self>) {
        let now = self.clock.now_ms();
        self.workers
            .entry(msg.worker.clone())
            .or_insert_with(|| Session {
                labels: BTreeMap::new(),
                slots: 0,
                tx: None,
                session: 0,
                draining: false,
                lost: false,
                last_seen_ms: now,
            });
        self.running.insert(
            msg.job_id,
            Running {
                worker: msg.worker,
                route: msg.route,
                lost: false,
            },
        );
    }
}

impl Handler<Cancel> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Cancel, ctx: &mut Context<Self>) {
        self.queue.retain(|j| j.spec.job_id != msg.0);
        if let Some(o) = self.offers.remove(&msg.0) {
            ctx.cancel_future(o.timer);
            self.send(
                &o.worker,
                ToWorker::Withdraw(pb::WithdrawOffer { job_id: msg.0 }),
            );
        } else if let Some(run) = self.running.get(&msg.0) {
            // Accepted just before the cancel arrived: it must not go on. It keeps its slot
            // until the worker confirms it has ended.
            self.send(
                &run.worker,
                ToWorker::Abandon(pb::AbandonJob {
                    job_id: msg.0,
                    grace_ms: 0,
                }),
            );
        }
    }
}

impl Handler<Signal> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Signal, _: &mut Context<Self>) {
        let Some(run) = self.running.get(&msg.job_id) else {
            return;
        };
        let worker = run.worker.clone();
        let job_id = msg.job_id;
        let out = match msg.signal {
            JobSignal::Abandon { grace_ms } => {
                ToWorker::Abandon(pb::AbandonJob { job_id, grace_ms })
            }
            JobSignal::Drain => ToWorker::Drain(pb::DrainJob { job_id }),
        };
        if !self.send(&worker, out) {
            tracing::warn!(%worker, "signal not delivered: worker not connected");
        }
    }
}

impl Handler<Connected> for Dispatcher {
    type Result = u64;
    fn handle(&mut self, msg: Connected, ctx: &mut Context<Self>) -> u64 {
        self.next_session += 1;
        let session = self.next_session;
        let reg = msg.register;
        let name = reg.name.clone();
        let resume_after = self.resume_point(&name, &reg.incarnation);
        let mut registered = msg.registered;
        registered.resume_after = resume_after;
        // Registered goes first: nothing else may precede it on the stream.
        let _ = msg.tx.send(pb::CoordinatorMessage {
            msg: Some(ToWorker::Registered(registered)),
        });
        let still_running: HashSet<String> = reg.running_jobs.iter().cloned().collect();
        self.workers.insert(
            name.clone(),
            Session {
                labels: reg.labels.into_iter().collect(),
                slots: reg.slots.max(1),
                tx: Some(msg.tx),
                session,
                draining: false,
                lost: false,
                last_seen_ms: self.clock.now_ms(),
            },
        );
        // Jobs we think it runs but it no longer does died with its previous process (or it
        // killed them itself when its lease ran out): the worker confirms they are gone.
        let gone: Vec<(String, bool)> = self
            .running
            .iter()
            .filter(|(id, r)| r.worker == name && !still_running.contains(*id))
            .map(|(id, r)| (id.clone(), r.lost))
            .collect();
        for (id, was_lost) in gone {
            let message = if was_lost {
                format!("worker {name} was lost; it came back without this job")
            } else {
                format!("worker {name} reconnected without this job")
            };
            self.finish_lost(&id, message);
        }
        for id in still_running {
            // Accepted, but the acceptance was lost with the old stream and the offer taken
            // back: it runs there, so it is that worker's job.
            if let Some(at) = self.queue.iter().position(|j| j.spec.job_id == id)
                && let Some(job) = self.queue.remove(at)
            {
                job.route.do_send(JobEvent {
                    job_id: id.clone(),
                    kind: JobEventKind::Accepted {
                        worker: name.clone(),
                    },
                });
                let (worker, route) = (name.clone(), job.route);
                self.running.insert(
                    id,
                    Running {
                        worker,
                        route,
                        lost: false,
                    },
                );
                continue;
            }
            let lost = self.running.get(&id).map(|r| r.lost);
            // Unknown here, or given up as lost: it must not go on. A lost one ends once the
            // worker confirms its processes are gone.
            if lost != Some(false) {
                self.send(
                    &name,
                    ToWorker::Abandon(pb::AbandonJob {
                        job_id: id,
                        grace_ms: 0,
                    }),
                );
            }
        }
        tracing::info!(worker = %name, session, "worker registered");
        self.dispatch(ctx);
        session
    }
}

impl Handler<Disconnected> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: Disconnected, ctx: &mut Context<Self>) {
        let Some(w) = self.workers.get_mut(&msg.worker) else {
            return;
        };
        if w.session != msg.session {
            return;
        }
        w.tx = None;
        let idle = !self.running.values().any(|r| r.worker == msg.worker);
        // Offers to it go elsewhere now; its running jobs wait out the lease.
        self.take_back_offers(&msg.worker, ctx);
        if idle {
            self.workers.remove(&msg.worker);
        }
        tracing::info!(worker = %msg.worker, "worker session ended");
        self.dispatch(ctx);
    }
}

impl Handler<ListWorkers> for Dispatcher {
    type Result = MessageResult<ListWorkers>;
    fn handle(&mut self, _: ListWorkers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.workers
                .iter()
                .map(|(name, w)| WorkerView {
                    name: name.clone(),
                    labels: w.labels.clone(),
                    slots: w.slots,
                    slots_in_use: self.busy(name) as u32,
                    running_jobs: self.running_on(name),
                    state: if w.lost {
                        pb::WorkerState::Lost
                    } else if w.tx.is_none() {
                        pb::WorkerState::Disconnected
                    } else if w.draining {
                        pb::WorkerState::Draining
                    } else {
                        pb::WorkerState::Connected
                    },
                    last_seen_ms: w.last_seen_ms,
                })
                .collect(),
        )
    }
}
