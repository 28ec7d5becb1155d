//! The worker's state between connections: the jobs it runs, whether it is draining, and the
//! translation of coordinator messages into job actions and of job reports into wire messages.
//!
//! Nothing here touches the network: [`Agent`] returns the messages to send and `session.rs`
//! sends them. Jobs outlive connections; they are owned by the agent's `JoinSet`, and a dropped
//! agent aborts them (each step's group guard then kills its processes).

use std::collections::HashMap;
use std::time::Duration;

use baton_proto::v1::coordinator_message::Msg as CMsg;
use baton_proto::v1::worker_message::Msg;
use baton_proto::v1::{
    CoordinatorMessage, Goodbye, JobFinished, JobSpec, JobStarted, OfferReply, Register, SignalAck,
    SignalKind, StepFinished, WorkerLog, WorkerMessage,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use std::sync::Arc;

use crate::WorkerConfig;
use crate::runner::{JobContext, JobControl, JobEvent, Report};
use crate::seams::JobLauncher;

/// Signals a job may have queued before it reads them.
const CONTROL_QUEUE: usize = 8;

/// A job this worker holds.
struct Held {
    control: mpsc::Sender<JobControl>,
    /// Bytes of its log reported so far: the offset of the next chunk in the job's log.
    log_offset: u64,
    /// Its offer is accepted but the acceptance not sent yet: it goes out with the job's first
    /// report (see [`Agent::on_offer`]).
    unanswered: bool,
}

/// The worker's jobs and mode.
pub(crate) struct Agent {
    config: WorkerConfig,
    jobs: HashMap<String, Held>,
    tasks: JoinSet<()>,
    reports: mpsc::Sender<Report>,
    launcher: Arc<dyn JobLauncher>,
    /// No new jobs; leave once the running ones are reported.
    pub draining: bool,
    /// The running jobs were told to abandon.
    pub abandoning: bool,
    /// Identifies this worker process: report sequence numbers restart with it.
    incarnation: String,
    /// The lease from the last `Registered`, handed to jobs (a supervised job waits that long
    /// for a new worker process once this one is gone).
    pub lease: Option<Duration>,
}

impl Agent {
    /// An agent whose jobs report on `reports` and run through `launcher`.
    pub fn new(
        config: WorkerConfig,
        reports: mpsc::Sender<Report>,
        launcher: Arc<dyn JobLauncher>,
    ) -> Self {
        Self {
            config,
            jobs: HashMap::new(),
            tasks: JoinSet::new(),
            reports,
            launcher,
            draining: false,
            abandoning: false,
            incarnation: format!(
                "{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ),
            lease: None,
        }
    }

    /// Follows again the jobs a previous process of this worker left running (or ended but
    /// not yet applied by the coordinator); the next `Register` lists them.
    pub fn reattach(&mut self) {
        let found = self
            .launcher
            .left_behind(&self.config.work_dir, self.reports.clone());
        for job in found {
            let held = Held {
                control: job.control,
                log_offset: 0,
                unanswered: false,
            };
            self.jobs.insert(job.job_id, held);
            self.tasks.spawn(job.run);
        }
    }

    /// The coordinator applied the job's end: nothing about it needs keeping any more.
    pub fn acknowledged(&self, job_id: &str) {
        self.launcher.forget(&self.config.work_dir, job_id);
    }

    /// The first message of every session. `ended` are jobs whose end the coordinator may not
    /// have applied yet: they are listed as running too, so that the coordinator waits for
    /// their end (sent right after) instead of taking them to be lost.
    pub fn register(&self, ended: impl IntoIterator<Item = String>) -> WorkerMessage {
        let mut running_jobs: Vec<String> = self.jobs.keys().cloned().chain(ended).collect();
        running_jobs.sort();
        running_jobs.dedup();
        wire(Msg::Register(Register {
            name: self.config.name.clone(),
            labels: self.config.labels.clone().into_iter().collect(),
            slots: self.config.slots,
            token: self.config.token.clone(),
            running_jobs,
            version: env!("CARGO_PKG_VERSION").to_string(),
            incarnation: self.incarnation.clone(),
        }))
    }

    /// True once a draining worker has nothing left running.
    pub fn finished(&self) -> bool {
        (self.draining || self.abandoning) && self.jobs.is_empty()
    }

    /// Jobs still running (their final report may not have been sent yet).
    pub fn running(&self) -> usize {
        self.jobs.len()
    }

    /// Stop taking jobs.
    pub fn drain(&mut self) {
        if !self.draining {
            tracing::info!(
                running = self.jobs.len(),
                "draining: finishing running jobs"
            );
        }
        self.draining = true;
    }

    /// Tells the coordinator this worker drains (on a local SIGTERM), so it offers no more jobs.
    pub fn draining_notice(&self) -> WorkerMessage {
        ack("", SignalKind::DrainWorker)
    }

    /// Abandon every running job (with its own grace) and stop taking jobs.
    pub fn abandon_all(&mut self, why: &str) {
        self.draining = true;
        self.abandoning = true;
        self.abandon_jobs(why);
    }

    /// Abandon every running job (with its own grace); keep taking new ones.
    pub fn abandon_jobs(&self, why: &str) {
        tracing::warn!(running = self.jobs.len(), why, "abandoning running jobs");
        for held in self.jobs.values() {
            let _ = held.control.try_send(JobControl::Abandon { grace: None });
        }
    }

    /// The goodbye a leaving worker sends.
    pub fn goodbye(&self) -> WorkerMessage {
        let reason = if self.abandoning {
            "abandoned"
        } else {
            "drained"
        };
        wire(Msg::Goodbye(Goodbye {
            reason: reason.into(),
        }))
    }

    /// Acts on one coordinator message; returns what to send back, in order.
    pub fn on_message(&mut self, message: CoordinatorMessage) -> Vec<WorkerMessage> {
        let Some(msg) = message.msg else {
            tracing::warn!("empty message from the coordinator");
            return Vec::new();
        };
        match msg {
            CMsg::Registered(_) => {
                tracing::warn!("unexpected second Registered");
                Vec::new()
            }
            CMsg::Offer(offer) => match offer.job {
                Some(job) => self.on_offer(job),
                None => {
                    tracing::warn!("job offer without a job");
                    Vec::new()
                }
            },
            CMsg::Withdraw(w) => {
                self.control(&w.job_id, JobControl::Withdraw);
                Vec::new()
            }
            CMsg::Abandon(a) => {
                tracing::trace!(target: "baton::hop", "worker-abandon");
                let ack = ack(&a.job_id, SignalKind::Abandon);
                let grace = (a.grace_ms > 0).then(|| Duration::from_millis(a.grace_ms));
                self.control(&a.job_id, JobControl::Abandon { grace });
                vec![ack]
            }
            CMsg::Drain(d) => {
                let ack = ack(&d.job_id, SignalKind::Drain);
                self.control(&d.job_id, JobControl::Drain);
                vec![ack]
            }
            CMsg::DrainWorker(_) => {
                self.drain();
                vec![ack("", SignalKind::DrainWorker)]
            }
            // The session keeps the re-send buffer; nothing for the jobs here.
            CMsg::Applied(_) => Vec::new(),
        }
    }

    /// Takes or refuses an offer. A refusal is answered at once; an accepted job is started
    /// and its acceptance goes out with its first report (its first step's header, made once
    /// that step has started, or its end), so that the coordinator's bookkeeping for it does
    /// not compete with the job's start for the CPU where both share a machine.
    fn on_offer(&mut self, job: JobSpec) -> Vec<WorkerMessage> {
        tracing::trace!(target: "baton::hop", "worker-offer");
        let job_id = job.job_id.clone();
        let reply = |accepted: bool, reason: &str| offer_reply(&job_id, accepted, reason);
        if let Some(held) = self.jobs.get(&job_id) {
            // A repeated offer (our reply was lost): accept again, do not start twice. One not
            // answered yet is answered with the job's first report, as the first was to be.
            if held.unanswered {
                return Vec::new();
            }
            return vec![reply(true, "")];
        }
        if job_id.is_empty() {
            tracing::warn!("job offer without a job id");
            return vec![reply(false, "invalid: empty job id")];
        }
        if self.draining {
            return vec![reply(false, "draining")];
        }
        if self.jobs.len() >= self.config.slots as usize {
            return vec![reply(false, "full")];
        }
        tracing::info!(job_id, steps = job.steps.len(), "starting job");
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let held = Held {
            control,
            log_offset: 0,
            unanswered: true,
        };
        self.jobs.insert(job_id.clone(), held);
        let ctx = JobContext {
            work_dir: self.config.work_dir.clone(),
            worker_name: self.config.name.clone(),
            coordinator: self.config.coordinator.clone(),
            lease: self.lease,
            shell: self.config.shell_words(),
        };
        let reports = self.reports.clone();
        let mut run = self.launcher.launch(job, ctx, reports, control_rx);
        // Run it here up to its first wait (the job's first step started, or its supervisor
        // handed the job) instead of waking another thread for it: 0.06 ms sooner. The task
        // polls it again at once, so nothing waits on the no-op waker used here.
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        if run.as_mut().poll(&mut cx).is_pending() {
            self.tasks.spawn(run);
        }
        Vec::new()
    }

    fn control(&self, job_id: &str, control: JobControl) {
        match self.jobs.get(job_id) {
            Some(held) => {
                if held.control.try_send(control).is_err() {
                    tracing::warn!(job_id, "job is not taking signals");
                }
            }
            None => tracing::debug!(job_id, ?control, "signal for a job not running here"),
        }
    }

    /// Books a job report and turns it into its wire messages: the job's acceptance first if
    /// this is its first report, then the report (none for a withdrawn job).
    pub fn on_report(&mut self, report: Report) -> Vec<WorkerMessage> {
        let job_id = report.job_id;
        let mut out = Vec::new();
        let first = self
            .jobs
            .get_mut(&job_id)
            .is_some_and(|held| std::mem::take(&mut held.unanswered));
        if first && report.event != JobEvent::Withdrawn {
            out.push(offer_reply(&job_id, true, ""));
            out.push(wire(Msg::JobStarted(JobStarted {
                job_id: job_id.clone(),
            })));
        }
        let msg = match report.event {
            JobEvent::Log { step, stream, data } => {
                let offset = self.jobs.get_mut(&job_id).map(|held| {
                    let at = held.log_offset;
                    held.log_offset += data.len() as u64;
                    at
                });
                Msg::Log(WorkerLog {
                    job_id,
                    step,
                    stream: stream as i32,
                    data,
                    offset,
                })
            }
            JobEvent::StepFinished { step, exit_code } => Msg::StepFinished(StepFinished {
                job_id,
                step,
                exit_code,
            }),
            JobEvent::Finished(end) => {
                tracing::info!(job_id, outcome = ?end.outcome, end.exit_code, "job ended");
                self.jobs.remove(&job_id);
                while self.tasks.try_join_next().is_some() {}
                Msg::JobFinished(JobFinished {
                    job_id,
                    outcome: end.outcome as i32,
                    exit_code: end.exit_code,
                    message: end.message,
                    steps_done: end.steps_done,
                })
            }
            JobEvent::Withdrawn => {
                tracing::info!(job_id, "offer withdrawn before the job started");
                self.jobs.remove(&job_id);
                self.acknowledged(&job_id);
                return out;
            }
        };
        out.push(wire(msg));
        out
    }
}

fn offer_reply(job_id: &str, accepted: bool, reason: &str) -> WorkerMessage {
    wire(Msg::OfferReply(OfferReply {
        job_id: job_id.into(),
        accepted,
        reason: reason.into(),
    }))
}

fn ack(job_id: &str, kind: SignalKind) -> WorkerMessage {
    wire(Msg::SignalAck(SignalAck {
        job_id: job_id.into(),
        kind: kind as i32,
    }))
}

/// Wraps a message in the envelope.
pub(crate) fn wire(msg: Msg) -> WorkerMessage {
    WorkerMessage {
        msg: Some(msg),
        seq: 0,
    }
}
