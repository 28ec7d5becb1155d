//! Simulated jobs: a deploy that "acts" (holds its side effect) from its start until it ends,
//! and a ledger of every such act for the checker. No process is spawned.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use baton_proto::v1::{JobOutcome, JobSpec, LogStream};
use baton_worker::{JobContext, JobControl, JobEnd, JobEvent, JobLauncher, Report};
use futures::future::BoxFuture;
use tokio::sync::mpsc;

/// How an act ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActEnd {
    /// The job ran to its end.
    Finished,
    /// The worker abandoned it (told by the coordinator, or self-fenced).
    Abandoned,
    /// Its host crashed (the job's future was dropped).
    Killed,
}

/// One job's time holding its stage, as the job itself saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Act {
    /// The job id.
    pub job_id: String,
    /// The worker host it ran on.
    pub worker: String,
    /// `pipeline/stage/lane` of the lock it acts under.
    pub lock: String,
    /// Its fence token.
    pub token: u64,
    /// Simulated ms when it started acting.
    pub start_ms: i64,
    /// Simulated ms when it stopped; `None` while it still acts.
    pub end_ms: Option<i64>,
    /// How it ended.
    pub ended: Option<ActEnd>,
}

/// Every act of a simulation, and the simulation's "now" as the step loop last set it.
#[derive(Debug, Default)]
pub struct Ledger {
    now_ms: AtomicI64,
    acts: Mutex<Vec<Act>>,
}

impl Ledger {
    /// Sets the simulated time (the step loop calls this before every step).
    pub fn set_now(&self, ms: i64) {
        self.now_ms.store(ms, Ordering::SeqCst);
    }

    /// The simulated time.
    pub fn now(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    /// A copy of every act so far.
    pub fn acts(&self) -> Vec<Act> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Act>> {
        self.acts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self, act: Act) -> usize {
        let mut acts = self.lock();
        acts.push(act);
        acts.len() - 1
    }

    fn end(&self, index: usize, how: ActEnd) {
        let now = self.now();
        if let Some(act) = self.lock().get_mut(index).filter(|a| a.end_ms.is_none()) {
            act.end_ms = Some(now);
            act.ended = Some(how);
        }
    }
}

/// Ends an act when the job's future is dropped without ending it (its host crashed).
struct Acting {
    ledger: Arc<Ledger>,
    index: usize,
}

impl Drop for Acting {
    fn drop(&mut self) {
        self.ledger.end(self.index, ActEnd::Killed);
    }
}

/// Runs every job as a simulated deploy recorded in the ledger.
pub struct SimLauncher {
    /// Where acts are recorded.
    pub ledger: Arc<Ledger>,
    /// The worker host's name.
    pub worker: String,
}

/// How long a job with `token` acts: 2 to 14 s (longer than a lease), varied by token.
pub fn act_ms(token: u64) -> u64 {
    2_000 + (token.wrapping_mul(7_919) % 12_000)
}

/// The lock a job acts under: the stage, and the lane (its branch) for a `lanes` pipeline.
fn lock_of(job: &JobSpec) -> String {
    let lane = match job.env.get("SIM_LANE_BY_BRANCH").map(String::as_str) {
        Some("1") => job.env.get("BATON_BRANCH").cloned().unwrap_or_default(),
        _ => String::new(),
    };
    format!("{}/{}/{}", job.pipeline, job.stage, lane)
}

impl JobLauncher for SimLauncher {
    fn launch(
        &self,
        job: JobSpec,
        _ctx: JobContext,
        reports: mpsc::Sender<Report>,
        mut control: mpsc::Receiver<JobControl>,
    ) -> BoxFuture<'static, ()> {
        let ledger = self.ledger.clone();
        let worker = self.worker.clone();
        Box::pin(async move {
            let job_id = job.job_id.clone();
            let report = |event| Report {
                job_id: job_id.clone(),
                event,
            };
            // As the real runner: signals that came before the first step.
            while let Ok(ctl) = control.try_recv() {
                match ctl {
                    JobControl::Withdraw => {
                        let _ = reports.send(report(JobEvent::Withdrawn)).await;
                        return;
                    }
                    JobControl::Abandon { .. } => {
                        let end = JobEnd {
                            outcome: JobOutcome::Abandoned,
                            exit_code: 0,
                            message: "abandoned before step 1".into(),
                            steps_done: 0,
                        };
                        let _ = reports.send(report(JobEvent::Finished(end))).await;
                        return;
                    }
                    JobControl::Drain => {}
                }
            }
            let index = ledger.begin(Act {
                job_id: job_id.clone(),
                worker,
                lock: lock_of(&job),
                token: job.fence_token,
                start_ms: ledger.now(),
                end_ms: None,
                ended: None,
            });
            let acting = Acting {
                ledger: ledger.clone(),
                index,
            };
            let line = format!("deploying with fence {}\n", job.fence_token);
            let _ = reports
                .send(report(JobEvent::Log {
                    step: 0,
                    stream: LogStream::Stdout,
                    data: line.into_bytes(),
                }))
                .await;
            let done =
                tokio::time::sleep(std::time::Duration::from_millis(act_ms(job.fence_token)));
            tokio::pin!(done);
            let outcome = loop {
                tokio::select! {
                    biased;
                    () = &mut done => break JobOutcome::Succeeded,
                    ctl = control.recv() => match ctl {
                        Some(JobControl::Abandon { .. }) => break JobOutcome::Abandoned,
                        // One step: a drain lets it finish; a withdrawal after the start is
                        // ignored, as by the real runner.
                        Some(JobControl::Drain | JobControl::Withdraw) => {}
                        None => std::future::pending::<()>().await,
                    },
                }
            };
            let how = match outcome {
                JobOutcome::Succeeded => ActEnd::Finished,
                _ => ActEnd::Abandoned,
            };
            ledger.end(index, how);
            drop(acting);
            let exit_code = if how == ActEnd::Finished { 0 } else { 143 };
            let _ = reports
                .send(report(JobEvent::StepFinished { step: 0, exit_code }))
                .await;
            let end = JobEnd {
                outcome,
                exit_code,
                message: String::new(),
                steps_done: u32::from(how == ActEnd::Finished),
            };
            let _ = reports.send(report(JobEvent::Finished(end))).await;
        })
    }
}
