//! The connection to the coordinator: connect, register, then one loop that forwards job reports,
//! answers coordinator messages, heartbeats and watches for shutdown; and, between connections,
//! backoff, buffering and the lease.
//!
//! Reports produced while disconnected are buffered (up to [`PENDING_LIMIT`] messages; beyond that
//! the jobs' output blocks) and sent right after the next `Registered`. Every report carries a
//! sequence number and is kept until the coordinator says it applied it (`ReportsApplied`, on
//! heartbeats); after a reconnect, `Registered.resume_after` says where to resume, and what was
//! sent on the broken stream after that is sent again. The coordinator applies each number once.
//! A worker that stays disconnected past its lease abandons its jobs, as the coordinator will
//! assume them gone soon after.

use std::collections::VecDeque;
use std::time::Duration;

use baton_proto::v1::agent_service_client::AgentServiceClient;
use baton_proto::v1::coordinator_message::Msg as CMsg;
use baton_proto::v1::worker_message::Msg;
use baton_proto::v1::{CoordinatorMessage, Heartbeat, Registered, WorkerMessage};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Endpoint;

use crate::agent::{Agent, wire};
use crate::error::chain;
use crate::runner::Report;
use crate::seams::Seams;
use crate::{Shutdown, WorkerConfig, WorkerError};

/// Reports kept while disconnected.
pub const PENDING_LIMIT: usize = 1024;
/// Largest message either side sends.
const MESSAGE_LIMIT: usize = 4 * 1024 * 1024;
/// Messages waiting for the transport.
const OUTBOUND_QUEUE: usize = 64;
/// Heartbeat when `Registered` names none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// How long the coordinator has to answer `Register`.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the coordinator to close the stream after our goodbye.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(5);
/// Sent reports kept until the coordinator confirms them; beyond that the oldest are forgotten.
const UNACKED_LIMIT: usize = 4096;
/// Upper bound on the reconnect backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Everything that lives across connections.
pub(crate) struct Worker {
    pub agent: Agent,
    pub reports: mpsc::Receiver<Report>,
    pub pending: VecDeque<WorkerMessage>,
    pub shutdown: Shutdown,
    /// The lease from the last `Registered`.
    pub lease: Option<Duration>,
    /// First reconnect delay.
    pub backoff: Duration,
    /// Where the lease is counted from once the session is lost: the last time the
    /// coordinator was heard from; `None` while registered.
    pub lost_at: Option<Instant>,
    /// When the coordinator last sent us anything (it answers every heartbeat), so that a
    /// silent coordinator counts against the lease even before the connection is known dead.
    pub last_heard: Option<Instant>,
    /// The jobs were abandoned because the lease ran out during this disconnection.
    pub lease_expired: bool,
    /// The next report's sequence number.
    pub next_seq: u64,
    /// Reports sent but not yet confirmed applied, oldest first.
    pub unacked: VecDeque<WorkerMessage>,
    /// Sequence numbers of the `JobFinished` reports not yet confirmed applied, with their job:
    /// once applied, the job's spool can go.
    pub finished: VecDeque<(u64, String)>,
}

/// How a connection ended.
enum Ended {
    /// Goodbye said; the worker is done.
    Done,
    /// The stream broke or never opened; `registered` says whether we got as far as `Registered`.
    Lost { registered: bool, why: String },
}

/// The coordinator endpoint with keepalive and timeouts set.
pub(crate) fn endpoint(config: &WorkerConfig) -> Result<Endpoint, WorkerError> {
    let endpoint = Endpoint::from_shared(config.coordinator.clone()).map_err(|source| {
        WorkerError::Address {
            address: config.coordinator.clone(),
            source,
        }
    })?;
    let endpoint = match config.client_tls()? {
        Some(tls) => endpoint.tls_config(tls).map_err(|e| {
            WorkerError::Config(format!("TLS settings for {}: {e}", config.coordinator))
        })?,
        None => endpoint,
    };
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(config.keepalive_interval)
        .keep_alive_timeout(config.keepalive_timeout)
        .keep_alive_while_idle(true))
}

impl Worker {
    /// Connects, serves, reconnects, until the worker has drained or been abandoned.
    pub async fn run(mut self, endpoint: Endpoint, seams: &Seams) -> Result<(), WorkerError> {
        let first = self.backoff;
        let mut backoff = first;
        loop {
            match self.connect_and_serve(&endpoint, seams).await {
                Ok(Ended::Done) => return Ok(()),
                Ok(Ended::Lost { registered, why }) => {
                    tracing::warn!(%why, "lost the coordinator");
                    if registered {
                        backoff = first;
                    }
                }
                Err(WorkerError::Refused(status)) if self.agent.running() == 0 => {
                    return Err(WorkerError::Refused(status));
                }
                Err(err) => tracing::warn!(err = %chain(&err), "cannot reach the coordinator"),
            }
            // The coordinator counts the lease from the last word it had from us, which came
            // before its last answer: counting from that answer keeps us on the early side.
            let heard = self.last_heard;
            let since = *self
                .lost_at
                .get_or_insert_with(|| heard.unwrap_or_else(Instant::now));
            if self.wait_disconnected(backoff, since).await {
                return Ok(());
            }
            backoff = (backoff * 2).min(MAX_BACKOFF.max(first));
        }
    }

    async fn connect_and_serve(
        &mut self,
        endpoint: &Endpoint,
        seams: &Seams,
    ) -> Result<Ended, WorkerError> {
        // The lease and a shutdown keep running while we connect and wait for `Registered`.
        let handshake = handshake(seams.connect(endpoint.clone()), self.register());
        tokio::pin!(handshake);
        let lease_end = self.lost_at.zip(self.lease).map(|(at, lease)| at + lease);
        let (out, mut inbound, registered) = loop {
            tokio::select! {
                done = &mut handshake => break done?,
                () = sleep_until_opt(lease_end), if !self.lease_expired => self.expire_lease(),
                () = self.shutdown.abandon.cancelled(), if !self.agent.abandoning => {
                    self.agent.abandon_all("shutdown");
                    return Ok(Ended::Lost { registered: false, why: "abandoning".into() });
                }
            }
        };
        self.lease = (registered.lease_ms > 0).then(|| Duration::from_millis(registered.lease_ms));
        self.agent.lease = self.lease;
        let period = match registered.heartbeat_interval_ms {
            0 => DEFAULT_HEARTBEAT,
            ms => Duration::from_millis(ms),
        };
        tracing::info!(?period, lease = ?self.lease, running = self.agent.running(), "registered");
        self.lost_at = None;
        self.lease_expired = false;
        self.last_heard = Some(Instant::now());
        let lost = |why: String| {
            Ok(Ended::Lost {
                registered: true,
                why,
            })
        };
        if self.agent.draining {
            self.pending.push_front(self.agent.draining_notice());
        }
        // What the coordinator did not apply from the last stream goes again, in order.
        self.unacked.retain(|m| m.seq > registered.resume_after);
        self.applied(registered.resume_after);
        for msg in self.unacked.clone() {
            if out.send(msg).await.is_err() {
                return lost("stream closed while re-sending reports".into());
            }
        }
        while let Some(msg) = self.pending.pop_front() {
            let msg = self.stamp(msg);
            if out.send(msg).await.is_err() {
                return lost("stream closed while sending buffered reports".into());
            }
        }
        let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if self.agent.finished() {
                return Ok(self.goodbye(out, inbound).await);
            }
            let mut replies = Vec::new();
            let silent_until = self
                .last_heard
                .zip(self.lease)
                .map(|(at, lease)| at + lease);
            tokio::select! {
                msg = inbound.message() => {
                    if let Ok(Some(_)) = &msg {
                        self.last_heard = Some(Instant::now());
                    }
                    match msg {
                        Ok(Some(CoordinatorMessage { msg: Some(CMsg::Applied(a)) })) => {
                            self.unacked.retain(|m| m.seq > a.upto);
                            self.applied(a.upto);
                        }
                        Ok(Some(msg)) => {
                            let signal = matches!(msg.msg, Some(CMsg::Abandon(_) | CMsg::Drain(_)));
                            replies = self.agent.on_message(msg);
                            if signal {
                                // The job's runner was just woken with the signal, on this
                                // thread: it passes it on before the acknowledgement goes out.
                                tokio::task::yield_now().await;
                            }
                        }
                        Ok(None) => return lost("the coordinator closed the stream".into()),
                        Err(status) => return lost(format!("stream error: {status}")),
                    }
                }
                report = self.reports.recv() => {
                    // The worker holds a sender, so the channel never closes while we run.
                    if let Some(report) = report {
                        replies.extend(self.agent.on_report(report));
                    }
                }
                _ = heartbeat.tick() => replies.push(wire(Msg::Heartbeat(Heartbeat {}))),
                () = sleep_until_opt(silent_until) => {
                    // The stream may still look open (keepalive has not noticed yet), but the
                    // coordinator has not answered for a whole lease: it counts us lost.
                    self.expire_lease();
                    return lost("no word from the coordinator for a whole lease".into());
                }
                () = self.shutdown.drain.cancelled(), if !self.agent.draining => {
                    self.agent.drain();
                    replies.push(self.agent.draining_notice());
                }
                () = self.shutdown.abandon.cancelled(), if !self.agent.abandoning => {
                    self.agent.abandon_all("shutdown");
                }
            }
            for msg in replies {
                let msg = self.stamp(msg);
                if out.send(msg).await.is_err() {
                    return lost("stream closed".into());
                }
            }
        }
    }

    /// Sends `Goodbye`, closes our half and waits (briefly) for the coordinator to close its half,
    /// so that everything sent before is delivered.
    async fn goodbye(
        &mut self,
        out: mpsc::Sender<WorkerMessage>,
        mut inbound: Streaming<CoordinatorMessage>,
    ) -> Ended {
        tracing::info!("all jobs reported; saying goodbye");
        let bye = self.stamp(self.agent.goodbye());
        let _ = out.send(bye).await;
        drop(out);
        let closed = async {
            loop {
                match inbound.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => return true,
                    Err(_) => return false,
                }
            }
        };
        match tokio::time::timeout(GOODBYE_TIMEOUT, closed).await {
            // It closed its half after our goodbye: it has everything we sent.
            Ok(true) => self.applied(u64::MAX),
            Ok(false) => {}
            Err(_) => tracing::warn!("the coordinator did not close the stream after goodbye"),
        }
        Ended::Done
    }

    /// Between connections: waits `backoff` while buffering reports, honouring shutdown and the
    /// lease. True when the worker is done (nothing to run, nothing it could still deliver).
    async fn wait_disconnected(&mut self, backoff: Duration, since: Instant) -> bool {
        let retry_at = Instant::now() + backoff;
        let lease_end = self.lease.map(|l| since + l);
        loop {
            if self.agent.finished() && (self.pending.is_empty() || self.agent.abandoning) {
                if !self.pending.is_empty() {
                    tracing::warn!(
                        reports = self.pending.len(),
                        "leaving with undelivered reports"
                    );
                }
                return true;
            }
            let room = self.pending.len() < PENDING_LIMIT;
            tokio::select! {
                () = tokio::time::sleep_until(retry_at) => return false,
                report = self.reports.recv(), if room => {
                    if let Some(report) = report {
                        self.pending.extend(self.agent.on_report(report));
                    }
                }
                () = sleep_until_opt(lease_end), if !self.lease_expired => self.expire_lease(),
                () = self.shutdown.drain.cancelled(), if !self.agent.draining => self.agent.drain(),
                () = self.shutdown.abandon.cancelled(), if !self.agent.abandoning => {
                    self.agent.abandon_all("shutdown");
                }
            }
        }
    }
}

impl Worker {
    /// Numbers a report and keeps a copy until the coordinator confirms it; heartbeats and
    /// Register are not numbered.
    fn stamp(&mut self, mut msg: WorkerMessage) -> WorkerMessage {
        if matches!(
            msg.msg,
            Some(Msg::Heartbeat(_)) | Some(Msg::Register(_)) | None
        ) {
            return msg;
        }
        msg.seq = self.next_seq;
        self.next_seq += 1;
        if self.unacked.len() >= UNACKED_LIMIT {
            self.unacked.pop_front();
            tracing::warn!("too many unconfirmed reports; the oldest can no longer be re-sent");
        }
        self.unacked.push_back(msg.clone());
        if let Some(Msg::JobFinished(done)) = &msg.msg {
            self.finished.push_back((msg.seq, done.job_id.clone()));
        }
        msg
    }

    /// The coordinator has applied every report up to `upto`: jobs whose end is among them
    /// are forgotten.
    fn applied(&mut self, upto: u64) {
        while let Some((seq, _)) = self.finished.front()
            && *seq <= upto
        {
            if let Some((_, job_id)) = self.finished.pop_front() {
                self.agent.acknowledged(&job_id);
            }
        }
    }

    /// `Register`, listing with the running jobs those whose end is not confirmed applied yet
    /// (sent on the broken stream, or waiting to be sent).
    fn register(&self) -> WorkerMessage {
        let unconfirmed = self.finished.iter().map(|(_, job_id)| job_id.clone());
        let waiting = self.pending.iter().filter_map(|m| match &m.msg {
            Some(Msg::JobFinished(done)) => Some(done.job_id.clone()),
            _ => None,
        });
        self.agent.register(unconfirmed.chain(waiting))
    }

    /// The coordinator will soon assume our jobs dead: make that true.
    fn expire_lease(&mut self) {
        self.lease_expired = true;
        self.agent.abandon_jobs("lease expired while disconnected");
    }
}

/// The open half of a session: our sender, their stream, their `Registered`.
type Opened = (
    mpsc::Sender<WorkerMessage>,
    Streaming<CoordinatorMessage>,
    Registered,
);

/// Connects, sends `register` and waits for `Registered`.
async fn handshake(
    channel: impl std::future::Future<
        Output = Result<tonic::transport::Channel, tonic::transport::Error>,
    >,
    register: WorkerMessage,
) -> Result<Opened, WorkerError> {
    let channel = channel.await?;
    let mut client = AgentServiceClient::new(channel)
        .max_decoding_message_size(MESSAGE_LIMIT)
        .max_encoding_message_size(MESSAGE_LIMIT);
    let (out, out_rx) = mpsc::channel::<WorkerMessage>(OUTBOUND_QUEUE);
    let _ = out.send(register).await;
    let mut inbound = match client.session(ReceiverStream::new(out_rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Err(refusal(status)),
    };
    let registered = match tokio::time::timeout(REGISTER_TIMEOUT, inbound.message()).await {
        Err(_) => return Err(WorkerError::Protocol("no answer to Register".into())),
        Ok(Err(status)) => return Err(refusal(status)),
        Ok(Ok(None)) => {
            return Err(WorkerError::Protocol("stream closed after Register".into()));
        }
        Ok(Ok(Some(msg))) => match msg.msg {
            Some(CMsg::Registered(r)) => r,
            other => {
                let what = format!("first message was {other:?}, not Registered");
                return Err(WorkerError::Protocol(what));
            }
        },
    };
    Ok((out, inbound, registered))
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Auth failures are final; anything else is worth retrying.
fn refusal(status: tonic::Status) -> WorkerError {
    match status.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            WorkerError::Refused(status)
        }
        _ => WorkerError::Status(status),
    }
}
