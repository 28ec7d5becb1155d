//! The worker against a fake coordinator on `127.0.0.1:0`: register, take an offer, report the
//! job in protocol order, refuse when full, drain on request and say goodbye.

#![allow(clippy::unwrap_used)]

use std::pin::Pin;
use std::time::Duration;

use baton_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use baton_proto::v1::coordinator_message::Msg as CMsg;
use baton_proto::v1::worker_message::Msg;
use baton_proto::v1::{
    CoordinatorMessage, DrainWorker, JobOffer, JobOutcome, JobSpec, LogStream, Registered,
    SignalKind, WorkerMessage,
};
use baton_worker::{Shutdown, WorkerConfig};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

const TEST_LIMIT: Duration = Duration::from_secs(30);

type Outbound = Pin<Box<dyn Stream<Item = Result<CoordinatorMessage, Status>> + Send>>;

/// Hands each session's two directions to the test.
struct Fake {
    sessions: mpsc::Sender<(Streaming<WorkerMessage>, mpsc::Sender<CoordinatorMessage>)>,
}

#[tonic::async_trait]
impl AgentService for Fake {
    type SessionStream = Outbound;

    async fn session(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let (tx, rx) = mpsc::channel(16);
        self.sessions
            .try_send((request.into_inner(), tx))
            .map_err(|_| Status::unavailable("test not listening"))?;
        let stream = ReceiverStream::new(rx).map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }
}

struct Session {
    inbound: Streaming<WorkerMessage>,
    outbound: mpsc::Sender<CoordinatorMessage>,
}

impl Session {
    /// Next message that is not a heartbeat.
    async fn next(&mut self) -> Msg {
        loop {
            let msg = tokio::time::timeout(TEST_LIMIT, self.inbound.message())
                .await
                .expect("worker went quiet")
                .expect("stream error")
                .expect("worker closed the stream");
            match msg.msg.expect("empty envelope") {
                Msg::Heartbeat(_) => {}
                other => return other,
            }
        }
    }

    async fn send(&self, msg: CMsg) {
        self.outbound
            .send(CoordinatorMessage { msg: Some(msg) })
            .await
            .expect("send to worker");
    }
}

/// A tonic AgentService on 127.0.0.1:0 whose sessions the test drives by hand.
struct FakeCoordinator {
    addr: std::net::SocketAddr,
    sessions: mpsc::Receiver<(Streaming<WorkerMessage>, mpsc::Sender<CoordinatorMessage>)>,
}

impl FakeCoordinator {
    async fn start() -> (
        Self,
        tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (sessions_tx, sessions) = mpsc::channel(4);
        let fake = Fake {
            sessions: sessions_tx,
        };
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AgentServiceServer::new(fake))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        (Self { addr, sessions }, server)
    }

    fn config(&self, work: &tempfile::TempDir) -> WorkerConfig {
        WorkerConfig {
            coordinator: format!("http://{}", self.addr),
            name: "w1".into(),
            slots: 1,
            token: "secret".into(),
            work_dir: work.path().to_path_buf(),
            reconnect_backoff: Duration::from_millis(20),
            ..WorkerConfig::default()
        }
    }

    async fn session(&mut self) -> Session {
        let (inbound, outbound) = tokio::time::timeout(TEST_LIMIT, self.sessions.recv())
            .await
            .expect("worker never connected")
            .expect("server gone");
        Session { inbound, outbound }
    }
}

/// Waits for the worker task to return, and asserts that it returned `Ok`.
async fn returns_ok(worker: tokio::task::JoinHandle<Result<(), baton_worker::WorkerError>>) {
    let result = tokio::time::timeout(TEST_LIMIT, worker)
        .await
        .expect("worker did not return")
        .expect("worker task");
    assert!(result.is_ok(), "{result:?}");
}

/// Drains the worker through its `Shutdown` with nothing left running: the drain notice, then
/// Goodbye ("drained"), then the worker returns `Ok`.
async fn drained_on_shutdown(
    mut s: Session,
    shutdown: &Shutdown,
    worker: tokio::task::JoinHandle<Result<(), baton_worker::WorkerError>>,
) {
    shutdown.drain.cancel();
    let Msg::SignalAck(notice) = s.next().await else {
        panic!("expected the drain notice")
    };
    assert_eq!(notice.kind, SignalKind::DrainWorker as i32);
    let Msg::Goodbye(bye) = s.next().await else {
        panic!("expected Goodbye")
    };
    assert_eq!(bye.reason, "drained");
    drop(s);
    returns_ok(worker).await;
}

/// The next two messages accept the offer of `job_id` and say the job started.
async fn accepted(s: &mut Session, job_id: &str) {
    let Msg::OfferReply(reply) = s.next().await else {
        panic!("expected OfferReply")
    };
    assert!(reply.accepted && reply.job_id == job_id, "{reply:?}");
    let Msg::JobStarted(started) = s.next().await else {
        panic!("expected JobStarted")
    };
    assert_eq!(started.job_id, job_id);
}

async fn register(s: &mut Session) -> baton_proto::v1::Register {
    let Msg::Register(reg) = s.next().await else {
        panic!("first message must be Register");
    };
    s.send(CMsg::Registered(Registered {
        heartbeat_interval_ms: 50,
        // This fake applied everything it was sent: nothing to re-send.
        resume_after: u64::MAX,
        lease_ms: 5_000,
    }))
    .await;
    reg
}

fn offer(id: &str, steps: &[&str]) -> CMsg {
    CMsg::Offer(JobOffer {
        job: Some(JobSpec {
            job_id: id.into(),
            steps: steps.iter().map(|s| s.to_string()).collect(),
            ..JobSpec::default()
        }),
    })
}

#[tokio::test]
async fn worker_registers_runs_an_offered_job_and_drains_on_request() {
    let (mut fake, server) = FakeCoordinator::start().await;
    let work = tempfile::tempdir().expect("temp dir");
    let config = fake.config(&work);
    let worker = tokio::spawn(baton_worker::run(config, Shutdown::new()));
    let mut s = fake.session().await;

    let Msg::Register(reg) = s.next().await else {
        panic!("first message must be Register");
    };
    assert_eq!(
        (reg.name.as_str(), reg.slots, reg.token.as_str()),
        ("w1", 1, "secret")
    );
    assert_eq!(reg.labels.get("os").map(String::as_str), Some("linux"));
    assert!(reg.running_jobs.is_empty());
    s.send(CMsg::Registered(Registered {
        heartbeat_interval_ms: 50,
        // This fake applied everything it was sent: nothing to re-send.
        resume_after: u64::MAX,
        lease_ms: 5_000,
    }))
    .await;

    // Step 1 waits for a file, so the second offer and the repeated one meet a busy worker.
    s.send(offer(
        "j1",
        &[
            "while [ ! -e go ]; do sleep 0.01; done; echo hello",
            "exit 0",
        ],
    ))
    .await;
    accepted(&mut s, "j1").await;

    s.send(offer("j2", &["true"])).await;
    s.send(offer("j1", &["true"])).await;
    let mut replies = Vec::new();
    let mut logs = String::new();
    while replies.len() < 2 {
        match s.next().await {
            Msg::OfferReply(r) => replies.push((r.job_id, r.accepted, r.reason)),
            Msg::Log(l) => logs.push_str(&String::from_utf8_lossy(&l.data)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        replies,
        vec![
            ("j2".to_string(), false, "full".to_string()),
            ("j1".to_string(), true, String::new())
        ]
    );

    // The job's directory may not exist yet on a busy machine; the step waits for the file.
    std::fs::create_dir_all(work.path().join("j1")).expect("job dir");
    std::fs::write(work.path().join("j1").join("go"), b"").expect("create go");
    let mut steps = Vec::new();
    let finished = loop {
        match s.next().await {
            Msg::Log(l) => {
                assert_eq!(l.job_id, "j1");
                if l.stream == LogStream::Stdout as i32 {
                    assert_eq!(l.step, 0);
                }
                logs.push_str(&String::from_utf8_lossy(&l.data));
            }
            Msg::StepFinished(f) => steps.push((f.step, f.exit_code)),
            Msg::JobFinished(f) => break f,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(finished.outcome, JobOutcome::Succeeded as i32);
    assert_eq!(finished.steps_done, 2);
    assert_eq!(steps, vec![(0, 0), (1, 0)]);
    assert!(
        logs.contains("==> step 1/2") && logs.contains("hello"),
        "{logs}"
    );

    s.send(CMsg::DrainWorker(DrainWorker {})).await;
    let Msg::SignalAck(ack) = s.next().await else {
        panic!("expected SignalAck")
    };
    assert_eq!(ack.kind, SignalKind::DrainWorker as i32);
    s.send(offer("j3", &["true"])).await;
    // The worker has nothing running: it may say goodbye before it sees the offer.
    let goodbye = match s.next().await {
        Msg::OfferReply(r) => {
            assert_eq!((r.accepted, r.reason.as_str()), (false, "draining"));
            s.next().await
        }
        other => other,
    };
    let Msg::Goodbye(bye) = goodbye else {
        panic!("expected Goodbye, got {goodbye:?}")
    };
    assert_eq!(bye.reason, "drained");
    drop(s);

    returns_ok(worker).await;
    server.abort();
}

#[tokio::test]
async fn worker_reattaches_after_a_broken_stream_and_abandons_on_request() {
    let (mut fake, server) = FakeCoordinator::start().await;
    let work = tempfile::tempdir().expect("temp dir");
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(baton_worker::run(fake.config(&work), shutdown.clone()));

    let mut s = fake.session().await;
    register(&mut s).await;
    let script = "echo $$ > pid; trap '' TERM; echo started; while true; do sleep 0.01; done";
    s.send(offer("j1", &[script, "touch never"])).await;
    loop {
        // Stdout only: the step header (system stream) quotes the command, "started" included.
        if let Msg::Log(l) = s.next().await
            && l.stream == baton_proto::v1::LogStream::Stdout as i32
            && String::from_utf8_lossy(&l.data).contains("started")
        {
            break;
        }
    }
    // The coordinator side breaks the stream; the job keeps running.
    drop(s);

    let mut s = fake.session().await;
    let reg = register(&mut s).await;
    assert_eq!(reg.running_jobs, vec!["j1".to_string()]);

    s.send(CMsg::Abandon(baton_proto::v1::AbandonJob {
        job_id: "j1".into(),
        grace_ms: 100,
    }))
    .await;
    let mut acked = false;
    let finished = loop {
        match s.next().await {
            Msg::SignalAck(a) => {
                assert_eq!(
                    (a.job_id.as_str(), a.kind),
                    ("j1", SignalKind::Abandon as i32)
                );
                acked = true;
            }
            Msg::JobFinished(f) => break f,
            _ => {}
        }
    };
    assert!(acked, "SignalAck must come before JobFinished");
    assert_eq!(finished.outcome, JobOutcome::Abandoned as i32);
    let pid: i32 = std::fs::read_to_string(work.path().join("j1").join("pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(baton_worker::proc_group::live_members(pid).is_empty());
    assert!(!work.path().join("j1").join("never").exists());

    drained_on_shutdown(s, &shutdown, worker).await;
    server.abort();
}

#[tokio::test]
async fn worker_abandons_its_jobs_when_the_lease_runs_out_while_disconnected() {
    let (mut fake, server) = FakeCoordinator::start().await;
    let work = tempfile::tempdir().expect("temp dir");
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(baton_worker::run(fake.config(&work), shutdown.clone()));

    let mut s = fake.session().await;
    let Msg::Register(_) = s.next().await else {
        panic!("expected Register")
    };
    s.send(CMsg::Registered(Registered {
        heartbeat_interval_ms: 50,
        lease_ms: 200,
        // This fake applied everything it was sent: nothing to re-send.
        resume_after: u64::MAX,
    }))
    .await;
    let script = "echo $$ > pid; trap '' TERM; echo started; while true; do sleep 0.01; done";
    let CMsg::Offer(mut job) = offer("j1", &[script]) else {
        unreachable!()
    };
    if let Some(spec) = job.job.as_mut() {
        spec.grace_ms = 100;
    }
    s.send(CMsg::Offer(job)).await;
    loop {
        // Stdout only: the step header (system stream) quotes the command, "started" included.
        if let Msg::Log(l) = s.next().await
            && l.stream == baton_proto::v1::LogStream::Stdout as i32
            && String::from_utf8_lossy(&l.data).contains("started")
        {
            break;
        }
    }
    drop(s);

    // The next session gets no answer to Register, so the worker stays disconnected.
    let mut s = fake.session().await;
    let Msg::Register(reg) = s.next().await else {
        panic!("expected Register")
    };
    assert_eq!(reg.running_jobs, vec!["j1".to_string()]);
    let pid: i32 = std::fs::read_to_string(work.path().join("j1").join("pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    // Waiting on a condition (the group is gone), with a failsafe; not a guess at timing.
    let gone = async {
        while !baton_worker::proc_group::live_members(pid).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(TEST_LIMIT, gone)
        .await
        .expect("job not killed after its lease");

    s.send(CMsg::Registered(Registered {
        heartbeat_interval_ms: 50,
        lease_ms: 200,
        // This fake applied everything it was sent: nothing to re-send.
        resume_after: u64::MAX,
    }))
    .await;
    let finished = loop {
        if let Msg::JobFinished(f) = s.next().await {
            break f;
        }
    };
    assert_eq!(
        finished.outcome,
        JobOutcome::Abandoned as i32,
        "{finished:?}"
    );

    drained_on_shutdown(s, &shutdown, worker).await;
    server.abort();
}

/// Jobs that report nothing until the test opens their gate, then their first step's header
/// and a successful end.
struct GatedLauncher {
    gate: std::sync::Arc<tokio::sync::Notify>,
}

impl baton_worker::JobLauncher for GatedLauncher {
    fn launch(
        &self,
        job: JobSpec,
        _ctx: baton_worker::JobContext,
        reports: mpsc::Sender<baton_worker::Report>,
        _control: mpsc::Receiver<baton_worker::JobControl>,
    ) -> futures::future::BoxFuture<'static, ()> {
        let gate = self.gate.clone();
        Box::pin(async move {
            gate.notified().await;
            let report = |event| baton_worker::Report {
                job_id: job.job_id.clone(),
                event,
            };
            let header = baton_worker::JobEvent::Log {
                step: 0,
                stream: LogStream::System,
                data: b"==> step 1/1: true\n".to_vec(),
            };
            let _ = reports.send(report(header)).await;
            let end = baton_worker::JobEnd {
                outcome: JobOutcome::Succeeded,
                exit_code: 0,
                message: String::new(),
                steps_done: 1,
            };
            let _ = reports
                .send(report(baton_worker::JobEvent::Finished(end)))
                .await;
        })
    }
}

#[tokio::test]
async fn an_accepted_offer_is_answered_with_the_jobs_first_report_not_before() {
    let (mut fake, server) = FakeCoordinator::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let seams = baton_worker::Seams {
        launcher: std::sync::Arc::new(GatedLauncher { gate: gate.clone() }),
        connector: None,
    };
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(baton_worker::run_with(
        fake.config(&work),
        shutdown.clone(),
        seams,
    ));
    let mut s = fake.session().await;
    register(&mut s).await;

    s.send(offer("j1", &["true"])).await;
    // The same offer again (as if our reply were lost) is not answered before the job
    // reports either.
    s.send(offer("j1", &["true"])).await;
    // The worker reads its messages in order: an abandon of a job it does not hold is
    // acknowledged at once, so an acceptance sent at once would come before this ack.
    s.send(CMsg::Abandon(baton_proto::v1::AbandonJob {
        job_id: "elsewhere".into(),
        grace_ms: 0,
    }))
    .await;
    let Msg::SignalAck(ack) = s.next().await else {
        panic!("the job has not reported: only the ack may come")
    };
    assert_eq!(ack.job_id, "elsewhere");

    gate.notify_one();
    accepted(&mut s, "j1").await;
    let Msg::Log(header) = s.next().await else {
        panic!("expected the step header")
    };
    assert_eq!(header.data, b"==> step 1/1: true\n");
    let Msg::JobFinished(end) = s.next().await else {
        panic!("expected JobFinished")
    };
    assert_eq!(end.outcome, JobOutcome::Succeeded as i32);

    drained_on_shutdown(s, &shutdown, worker).await;
    server.abort();
}
