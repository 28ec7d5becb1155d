//! Running one job: its steps in order, each in its own process group, and the signals that can
//! end it early (ABANDON, DRAIN, a timeout, a withdrawn offer).
//!
//! [`run_job`] knows nothing about gRPC: it reports [`JobEvent`]s on a channel and takes
//! [`JobControl`]s from another, so it is tested with real processes and no coordinator. It never
//! reports a job ended while a live process of its current step's group remains.
//!
//! Step indices on the wire and in `BATON_STEP` count from 0 (an index into `JobSpec.steps`); the
//! log lines a person reads count from 1.

use std::path::PathBuf;
use std::time::Duration;

use baton_proto::v1::{JobOutcome, JobSpec, LogStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::step::{self, Step, StepSpec};
use nix::sys::signal::Signal;

/// Grace between SIGTERM and SIGKILL when neither the signal nor the job names one.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// What the worker tells a running job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobControl {
    /// SIGTERM the step's group, wait `grace` (default: the job's `grace_ms`, else 10 s), SIGKILL,
    /// wait for the group to be gone, report ABANDONED.
    Abandon {
        /// Time between SIGTERM and SIGKILL; `None` for the job's default.
        grace: Option<Duration>,
    },
    /// Let the running step finish, skip the rest, report STOPPED.
    Drain,
    /// The offer was taken back: if no step has started, end silently.
    Withdraw,
}

/// One thing a job reports, tagged with its job id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The job this is about.
    pub job_id: String,
    /// What happened.
    pub event: JobEvent,
}

/// What a job reports, in order: per step a SYSTEM header, output, `StepFinished`, a SYSTEM
/// footer; then exactly one `Finished` (or `Withdrawn`), always last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// A chunk of output (at most 64 KiB), or a line the worker writes itself (SYSTEM).
    Log {
        /// Step index, from 0.
        step: u32,
        /// STDOUT, STDERR or SYSTEM.
        stream: LogStream,
        /// The bytes, as the process wrote them.
        data: Vec<u8>,
    },
    /// A step's process ended (its group is gone).
    StepFinished {
        /// Step index, from 0.
        step: u32,
        /// Exit status, or 128 + signal number.
        exit_code: i32,
    },
    /// The job ended; nothing of it is left running.
    Finished(JobEnd),
    /// The offer was withdrawn before the first step started; nothing ran.
    Withdrawn,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    /// SUCCEEDED, FAILED, ABANDONED or STOPPED.
    pub outcome: JobOutcome,
    /// Exit code of the last step that ran (0 when none failed).
    pub exit_code: i32,
    /// Why, for a person (empty on success).
    pub message: String,
    /// Steps that finished with exit code 0.
    pub steps_done: u32,
}

/// What a job needs from the worker around it.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Jobs run in `work_dir/<job_id>` (created if missing).
    pub work_dir: PathBuf,
    /// Exported to steps as `BATON_WORKER`.
    pub worker_name: String,
    /// The coordinator's address, exported to steps as `BATON_ADDR` so that a step can run
    /// `baton fence check` (or any `baton` command) against the coordinator that sent it.
    pub coordinator: String,
    /// The worker's lease (from the coordinator): how long a supervised job waits for a
    /// worker process to take it over once its own is gone, before it abandons itself. `None`:
    /// 15 s. [`run_job`] does not use it.
    pub lease: Option<Duration>,
    /// The program and arguments that run each step, the step's text appended (the worker's
    /// `shell` setting); empty means `sh -c`.
    pub shell: Vec<String>,
}

/// Runs `spec` to its end and returns how it ended (`None` if withdrawn); the same end is the
/// last event sent on `events`. Send errors are ignored: the job runs to its end either way.
pub async fn run_job(
    spec: JobSpec,
    ctx: JobContext,
    events: mpsc::Sender<Report>,
    control: mpsc::Receiver<JobControl>,
) -> Option<JobEnd> {
    let grace = match spec.grace_ms {
        0 => DEFAULT_GRACE,
        ms => Duration::from_millis(ms),
    };
    let timeout = (spec.timeout_ms > 0).then(|| Duration::from_millis(spec.timeout_ms));
    let span = tracing::info_span!(
        "job",
        job_id = %spec.job_id,
        execution_id = %spec.execution_id,
        pipeline = %spec.pipeline,
        stage = %spec.stage,
        action = %spec.action
    );
    let mut job = Job {
        cancel_signal: cancel_signal(&spec.cancel_signal),
        deadline: timeout.map(|t| Instant::now() + t),
        timeout,
        grace,
        control: Some(control),
        draining: false,
        events,
        spec,
        ctx,
    };
    let end = tracing::Instrument::instrument(job.run(), span).await;
    let event = match &end {
        Some(end) => JobEvent::Finished(end.clone()),
        None => JobEvent::Withdrawn,
    };
    job.emit(event).await;
    end
}

/// The signal named by a job's `cancel_signal` (`TERM` when empty or unknown).
fn cancel_signal(name: &str) -> Signal {
    match name {
        "" | "TERM" => Signal::SIGTERM,
        "INT" => Signal::SIGINT,
        "QUIT" => Signal::SIGQUIT,
        "HUP" => Signal::SIGHUP,
        "USR1" => Signal::SIGUSR1,
        "USR2" => Signal::SIGUSR2,
        other => {
            tracing::warn!(signal = other, "unknown cancel signal; using SIGTERM");
            Signal::SIGTERM
        }
    }
}

/// How one step's process ended.
enum StepEnd {
    Exited(i32),
    Abandoned(i32),
    TimedOut(i32),
}

struct Job {
    spec: JobSpec,
    ctx: JobContext,
    events: mpsc::Sender<Report>,
    /// `None` once the sender is gone (no more signals can come).
    control: Option<mpsc::Receiver<JobControl>>,
    draining: bool,
    grace: Duration,
    /// Sent first on abandon and timeout; SIGKILL follows after `grace`.
    cancel_signal: Signal,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
}

impl Job {
    async fn run(&mut self) -> Option<JobEnd> {
        tracing::trace!(target: "baton::hop", "runner-run");
        let dir = self.ctx.work_dir.join(dir_name(&self.spec.job_id));
        // A few system calls: done here rather than on tokio's blocking pool (a thread hop
        // each way, 0.1 ms on the way to the first step).
        if let Err(err) = std::fs::create_dir_all(&dir) {
            return Some(end(
                JobOutcome::Failed,
                -1,
                format!("cannot create job directory {}: {err}", dir.display()),
                0,
            ));
        }
        let steps = self.spec.steps.clone();
        let total = steps.len();
        let mut steps_done = 0u32;
        for (i, command) in steps.iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            // Signals that came between steps.
            while let Some(ctl) = self.control.as_mut().and_then(|c| c.try_recv().ok()) {
                match ctl {
                    JobControl::Withdraw if i == 0 => return None,
                    JobControl::Withdraw => {}
                    JobControl::Drain => self.draining = true,
                    JobControl::Abandon { .. } => {
                        let msg = format!("abandoned before step {}", i + 1);
                        return Some(end(JobOutcome::Abandoned, 0, msg, steps_done));
                    }
                }
            }
            if self.draining {
                let msg = format!("drained: skipped {} of {total} steps", total - i);
                return Some(end(JobOutcome::Stopped, 0, msg, steps_done));
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Some(end(JobOutcome::Failed, -1, self.timed_out(), steps_done));
            }
            tracing::trace!(target: "baton::hop", "runner-step");
            let header = format!("==> step {}/{total}: {command}\n", i + 1);
            self.system(index, header).await;
            let started = Instant::now();
            let env = self.step_env(index);
            let spawned = step::spawn(
                StepSpec {
                    shell: &self.ctx.shell,
                    job_id: &self.spec.job_id,
                    index,
                    command,
                    cwd: &dir,
                    env,
                },
                &self.events,
            );
            let mut step = match spawned {
                Ok(step) => step,
                Err(err) => {
                    let msg = format!("cannot start step {}: {err}", i + 1);
                    self.system(index, format!("{msg}\n")).await;
                    return Some(end(JobOutcome::Failed, -1, msg, steps_done));
                }
            };
            let ended = self.supervise(&mut step, index).await;
            step.finish().await;
            let code = match ended {
                StepEnd::Exited(c) | StepEnd::Abandoned(c) | StepEnd::TimedOut(c) => c,
            };
            self.emit(JobEvent::StepFinished {
                step: index,
                exit_code: code,
            })
            .await;
            let took = started.elapsed().as_secs_f64();
            let footer = format!("<== step {} exited {code} ({took:.1}s)\n", i + 1);
            self.system(index, footer).await;
            match ended {
                StepEnd::Exited(0) => steps_done += 1,
                StepEnd::Exited(c) => {
                    let msg = format!("step {} exited {c}", i + 1);
                    return Some(end(JobOutcome::Failed, c, msg, steps_done));
                }
                StepEnd::Abandoned(c) => {
                    let msg = format!("abandoned during step {}", i + 1);
                    return Some(end(JobOutcome::Abandoned, c, msg, steps_done));
                }
                StepEnd::TimedOut(c) => {
                    return Some(end(JobOutcome::Failed, c, self.timed_out(), steps_done));
                }
            }
        }
        // A drain that arrived during the last step skipped nothing: the job succeeded.
        Some(end(JobOutcome::Succeeded, 0, String::new(), steps_done))
    }

    /// Waits for the step's process while taking signals and watching the deadline.
    async fn supervise(&mut self, step: &mut Step, index: u32) -> StepEnd {
        loop {
            let deadline = self.deadline;
            tokio::select! {
                status = step.child.wait() => {
                    let code = match status {
                        Ok(status) => step::exit_code(status),
                        Err(err) => {
                            tracing::warn!(%err, "cannot wait for step");
                            -1
                        }
                    };
                    // Background children must not outlive their step.
                    if step.alive() {
                        let line = "killing processes the step left running\n";
                        self.system(index, line.to_string()).await;
                        step.kill_all().await;
                    }
                    return StepEnd::Exited(code);
                }
                ctl = recv(&mut self.control) => match ctl {
                    Some(JobControl::Abandon { grace }) => {
                        let grace = grace.unwrap_or(self.grace);
                        let why = format!(
                            "abandon requested: {}, {} grace",
                            self.cancel_signal.as_str(),
                            fmt(grace)
                        );
                        let code = self.terminate(step, index, grace, why).await;
                        return StepEnd::Abandoned(code);
                    }
                    Some(JobControl::Drain) => {
                        if !self.draining {
                            let line = "drain requested: finishing this step, skipping the rest\n";
                            self.system(index, line.to_string()).await;
                        }
                        self.draining = true;
                    }
                    Some(JobControl::Withdraw) => {}
                    None => self.control = None,
                },
                () = until(deadline) => {
                    let why = format!(
                        "{}: {}, {} grace",
                        self.timed_out(),
                        self.cancel_signal.as_str(),
                        fmt(self.grace)
                    );
                    let code = self.terminate(step, index, self.grace, why).await;
                    return StepEnd::TimedOut(code);
                }
            }
        }
    }

    /// SIGTERM, grace, SIGKILL; returns the leader's exit code once the whole group is gone.
    async fn terminate(
        &mut self,
        step: &mut Step,
        index: u32,
        grace: Duration,
        why: String,
    ) -> i32 {
        self.system(index, format!("{why}\n")).await;
        if step.terminate(self.cancel_signal, grace).await {
            let line = format!("still running after {}: sent SIGKILL\n", fmt(grace));
            self.system(index, line).await;
        }
        match step.child.wait().await {
            Ok(status) => step::exit_code(status),
            Err(err) => {
                tracing::warn!(%err, "cannot reap step");
                -1
            }
        }
    }

    fn step_env(&self, index: u32) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("BATON_WORKER".into(), self.ctx.worker_name.clone()));
        env.push(("BATON_ADDR".into(), self.ctx.coordinator.clone()));
        env.push(("BATON_JOB_ID".into(), self.spec.job_id.clone()));
        env.push(("BATON_STEP".into(), index.to_string()));
        env
    }

    fn timed_out(&self) -> String {
        format!(
            "timed out after {}",
            self.timeout.map(fmt).unwrap_or_default()
        )
    }

    async fn system(&self, step: u32, line: String) {
        let data = line.into_bytes();
        let stream = LogStream::System;
        self.emit(JobEvent::Log { step, stream, data }).await;
    }

    async fn emit(&self, event: JobEvent) {
        let job_id = self.spec.job_id.clone();
        // A closed channel means nobody listens; the job still runs to its end.
        let _ = self.events.send(Report { job_id, event }).await;
    }
}

fn end(outcome: JobOutcome, exit_code: i32, message: String, steps_done: u32) -> JobEnd {
    JobEnd {
        outcome,
        exit_code,
        message,
        steps_done,
    }
}

/// Next signal; pends forever once the sender is gone and `None` was seen.
async fn recv(control: &mut Option<mpsc::Receiver<JobControl>>) -> Option<JobControl> {
    match control {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn fmt(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A job id as a single, harmless directory name (the id comes from the peer).
pub fn dir_name(job_id: &str) -> String {
    let name: String = job_id
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect();
    match name.trim_start_matches('.') {
        "" => format!("job_{name}"),
        _ if name.starts_with('.') => format!("_{name}"),
        _ => name,
    }
}
