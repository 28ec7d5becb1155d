//! The end-to-end harness: a real coordinator on `127.0.0.1:0` with a temporary sled store,
//! real in-process workers, and helpers that drive everything through the public gRPC API.
//!
//! Waiting is always on events (WatchPipeline, job logs), with a generous deadline only as a
//! safety net so that a broken build fails instead of hanging.

pub mod browser;
pub mod observe;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod docker;
pub mod secure;

use baton_proto::v1::{self as pb, pipeline_service_client::PipelineServiceClient};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub mod policies;
pub use policies::stage_lane;
mod execution_policies;
mod fleet;
mod proxy;
mod watch;
pub use fleet::{WorkerProcess, short_leases, worker_binary, workspace_binary};
pub use proxy::CutProxy;
pub use watch::{collect_until, is_execution_status, is_job_status};

/// How long any wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A running coordinator with its workers.
pub struct TestCluster {
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT` of the coordinator's dashboard and `/metrics`.
    pub http_addr: String,
    /// The coordinator's data directory (kept across restarts).
    pub data_dir: PathBuf,
    /// Scratch space for job gates and markers.
    pub scratch: tempfile::TempDir,
    _data: tempfile::TempDir,
    coordinator: Option<(CancellationToken, JoinHandle<()>)>,
    workers: Vec<(baton_worker::Shutdown, JoinHandle<()>)>,
    /// The coordinator's clock when a test injects one (see [`policies`]).
    clock: Option<baton_coordinator::clock::SharedClock>,
    /// Adjusts [`test_config`] for this cluster (kept across restarts).
    configure: fn(&mut baton_coordinator::CoordinatorConfig),
}

/// A fast coordinator configuration for tests.
pub fn test_config(data_dir: &Path) -> baton_coordinator::CoordinatorConfig {
    let mut config = baton_coordinator::CoordinatorConfig::new(data_dir);
    config.heartbeat_interval = Duration::from_millis(200);
    config.lease = Duration::from_secs(3);
    config.offer_timeout = Duration::from_secs(2);
    config.timer_tick = Duration::from_millis(20);
    config
}

impl TestCluster {
    /// Starts a coordinator and `workers` workers with one slot each and label `os=linux`.
    pub async fn start(workers: usize) -> TestCluster {
        Self::start_full(workers, None, |_| {}).await
    }

    /// [`Self::start`] with a coordinator configuration adjusted by `configure`.
    pub async fn start_with(
        workers: usize,
        configure: fn(&mut baton_coordinator::CoordinatorConfig),
    ) -> TestCluster {
        Self::start_full(workers, None, configure).await
    }

    /// [`Self::start`] with the coordinator on `clock` (the system clock when `None`).
    async fn start_on(
        workers: usize,
        clock: Option<baton_coordinator::clock::SharedClock>,
    ) -> TestCluster {
        Self::start_full(workers, clock, |_| {}).await
    }

    async fn start_full(
        workers: usize,
        clock: Option<baton_coordinator::clock::SharedClock>,
        configure: fn(&mut baton_coordinator::CoordinatorConfig),
    ) -> TestCluster {
        let data = tempfile::tempdir().expect("temp dir");
        let mut cluster = TestCluster {
            addr: String::new(),
            http_addr: String::new(),
            data_dir: data.path().join("store"),
            scratch: tempfile::tempdir().expect("temp dir"),
            _data: data,
            coordinator: None,
            workers: Vec::new(),
            clock,
            configure,
        };
        cluster.start_coordinator(None).await;
        for i in 0..workers {
            cluster.add_worker(&format!("w{}", i + 1)).await;
        }
        cluster
    }

    async fn start_coordinator(&mut self, port: Option<u16>) {
        let bind = format!("127.0.0.1:{}", port.unwrap_or(0));
        let listener = tokio::net::TcpListener::bind(&bind).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        self.addr = format!("http://{addr}");
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind http");
        self.http_addr = format!("http://{}", http.local_addr().expect("local addr"));
        let shutdown = CancellationToken::new();
        let mut config = test_config(&self.data_dir);
        let clock = self.clock.clone();
        if clock.is_some() {
            // A test clock moves in jumps of minutes; worker leases are not what it tests.
            config.lease = Duration::from_secs(24 * 3600);
        }
        (self.configure)(&mut config);
        let token = shutdown.clone();
        let handle = tokio::spawn(async move {
            let clock: baton_coordinator::clock::SharedClock = match clock {
                Some(clock) => clock,
                None => std::sync::Arc::new(baton_coordinator::clock::SystemClock),
            };
            let run =
                baton_coordinator::run_with_listeners(config, listener, Some(http), token, clock);
            if let Err(e) = run.await {
                panic!("coordinator failed: {e}");
            }
        });
        self.coordinator = Some((shutdown, handle));
        self.wait_serving().await;
    }

    /// Waits until the coordinator's gRPC health says SERVING.
    async fn wait_serving(&self) {
        wait_serving(&self.addr).await;
    }

    /// Starts one more worker named `name`.
    pub async fn add_worker(&mut self, name: &str) {
        let config = baton_worker::WorkerConfig {
            coordinator: self.addr.clone(),
            name: name.to_string(),
            labels: BTreeMap::from([("os".to_string(), "linux".to_string())]),
            slots: 1,
            token: String::new(),
            work_dir: self.scratch.path().join("work").join(name),
            reconnect_backoff: Duration::from_millis(100),
            ..baton_worker::WorkerConfig::default()
        };
        let shutdown = baton_worker::Shutdown::new();
        let s = shutdown.clone();
        let handle = tokio::spawn(async move {
            let _ = baton_worker::run(config, s).await;
        });
        self.workers.push((shutdown, handle));
        self.wait_for_workers(self.workers.len()).await;
    }

    /// Waits until `n` workers are connected.
    pub async fn wait_for_workers(&self, n: usize) {
        let mut client = self.client().await;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        // The coordinator has no worker-watch stream; registration is quick, so ask again
        // on a short interval until the deadline.
        loop {
            let listed = client.list_workers(pb::ListWorkersRequest {}).await;
            let connected = listed
                .map(|r| {
                    r.into_inner()
                        .workers
                        .iter()
                        .filter(|w| w.state == pb::WorkerState::Connected as i32)
                        .count()
                })
                .unwrap_or(0);
            if connected >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "workers did not connect"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the coordinator (workers keep trying to reconnect).
    pub async fn stop_coordinator(&mut self) {
        if let Some((shutdown, handle)) = self.coordinator.take() {
            shutdown.cancel();
            tokio::time::timeout(DEADLINE, handle)
                .await
                .expect("coordinator stops")
                .expect("coordinator task");
        }
    }

    /// Stops and starts the coordinator on the same data dir and port.
    pub async fn restart_coordinator(&mut self) {
        let port = self
            .addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        self.stop_coordinator().await;
        self.start_coordinator(Some(port)).await;
    }

    /// Drains every worker and stops the coordinator.
    pub async fn shutdown(mut self) {
        for (shutdown, _) in &self.workers {
            shutdown.abandon.cancel();
            shutdown.drain.cancel();
        }
        for (_, handle) in self.workers.drain(..) {
            let _ = tokio::time::timeout(DEADLINE, handle).await;
        }
        self.stop_coordinator().await;
    }

    /// A client of the pipeline API.
    pub async fn client(&self) -> PipelineServiceClient<Channel> {
        PipelineServiceClient::connect(self.addr.clone())
            .await
            .expect("connect to coordinator")
    }

    /// Applies a pipeline file's text.
    pub async fn apply(&self, yaml: &str) -> pb::Pipeline {
        self.client()
            .await
            .put_pipeline(pb::PutPipelineRequest {
                definition_yaml: yaml.to_string(),
                source_name: "test.yaml".into(),
            })
            .await
            .expect("put pipeline")
            .into_inner()
            .pipeline
            .expect("pipeline")
    }

    /// Starts an execution of `pipeline` for `branch`/`commit`; returns its id.
    pub async fn start_execution(&self, pipeline: &str, branch: &str, commit: &str) -> String {
        self.client()
            .await
            .start_pipeline_execution(pb::StartPipelineExecutionRequest {
                pipeline: pipeline.into(),
                revision: Some(pb::SourceRevision {
                    branch: branch.into(),
                    commit: commit.into(),
                    message: format!("commit {commit}"),
                    trigger: "test".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("start execution")
            .into_inner()
            .execution_id
    }

    /// Reads one execution.
    pub async fn execution(&self, id: &str) -> pb::PipelineExecution {
        self.client()
            .await
            .get_pipeline_execution(pb::GetPipelineExecutionRequest {
                execution_id: id.into(),
            })
            .await
            .expect("get execution")
            .into_inner()
    }

    /// Reads a pipeline's state.
    pub async fn state(&self, pipeline: &str) -> pb::PipelineState {
        self.client()
            .await
            .get_pipeline_state(pb::GetPipelineStateRequest {
                pipeline: pipeline.into(),
            })
            .await
            .expect("get state")
            .into_inner()
    }

    /// Waits, on the pipeline's event stream, until `check` holds for execution `id`.
    pub async fn wait_until(
        &self,
        pipeline: &str,
        id: &str,
        what: &str,
        check: impl Fn(&pb::PipelineExecution) -> bool,
    ) -> pb::PipelineExecution {
        let mut events = self
            .client()
            .await
            .watch_pipeline(pb::WatchPipelineRequest {
                pipeline: pipeline.into(),
                since: None,
            })
            .await
            .expect("watch")
            .into_inner();
        let wait = async {
            loop {
                let exec = self.execution(id).await;
                if check(&exec) {
                    return exec;
                }
                match events.next().await {
                    Some(Ok(_)) => {}
                    other => panic!("watch ended while waiting for {what}: {other:?}"),
                }
            }
        };
        match tokio::time::timeout(DEADLINE, wait).await {
            Ok(exec) => exec,
            Err(_) => panic!(
                "timed out waiting for {what}; execution is {:#?}",
                self.execution(id).await
            ),
        }
    }

    /// Waits until pipeline `pipeline` has an execution numbered `number` (started by someone
    /// else, e.g. a CLI process) and returns its id.
    pub async fn wait_for_execution_number(&self, pipeline: &str, number: u64) -> String {
        let mut client = self.client().await;
        let mut events = client
            .watch_pipeline(pb::WatchPipelineRequest {
                pipeline: pipeline.into(),
                since: None,
            })
            .await
            .expect("watch")
            .into_inner();
        let wait = async {
            loop {
                let listed = client
                    .list_pipeline_executions(pb::ListPipelineExecutionsRequest {
                        pipeline: pipeline.into(),
                        ..Default::default()
                    })
                    .await
                    .expect("list executions")
                    .into_inner();
                if let Some(e) = listed.executions.iter().find(|e| e.number == number) {
                    return e.execution_id.clone();
                }
                match events.next().await {
                    Some(Ok(_)) => {}
                    other => panic!("watch ended while waiting for #{number}: {other:?}"),
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for execution #{number} of {pipeline}"))
    }

    /// Waits until execution `id` has `status`.
    pub async fn wait_status(
        &self,
        pipeline: &str,
        id: &str,
        status: pb::ExecutionStatus,
    ) -> pb::PipelineExecution {
        self.wait_until(pipeline, id, &format!("{status:?}"), |e| {
            e.status == status as i32
        })
        .await
    }

    /// The whole stored log of job `job_id` as it is now (not followed), checking that chunk
    /// offsets are contiguous (no gap, no repeat) and that the closing message carries no bytes.
    pub async fn stored_log(&self, job_id: &str) -> String {
        let mut stream = self
            .client()
            .await
            .tail_job_log(pb::TailJobLogRequest {
                job_id: job_id.into(),
                follow: false,
                offset: 0,
            })
            .await
            .expect("tail")
            .into_inner();
        let mut text = String::new();
        let mut next_offset = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("log chunk");
            if chunk.end.is_some() {
                // The closing message says how the job ended; it carries no bytes.
                assert!(chunk.data.is_empty(), "the closing message carries bytes");
                continue;
            }
            assert_eq!(chunk.offset, next_offset, "log offsets are contiguous");
            next_offset += chunk.data.len() as u64;
            text.push_str(&String::from_utf8_lossy(&chunk.data));
        }
        text
    }

    /// Waits until the job's log contains `needle` (following the live log).
    pub async fn wait_for_log(&self, job_id: &str, needle: &str) -> String {
        let mut stream = self
            .client()
            .await
            .tail_job_log(pb::TailJobLogRequest {
                job_id: job_id.into(),
                follow: true,
                offset: 0,
            })
            .await
            .expect("tail")
            .into_inner();
        let mut text = String::new();
        let wait = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.expect("log chunk");
                text.push_str(&String::from_utf8_lossy(&chunk.data));
                if text.contains(needle) {
                    return;
                }
            }
            panic!("log ended without {needle:?}: {text}");
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .expect("log wait timed out");
        text
    }

    /// Waits until the first job of execution `id` in `stage` is running; returns its id.
    pub async fn wait_job_running(&self, pipeline: &str, id: &str, stage: &str) -> String {
        let exec = self
            .wait_until(pipeline, id, &format!("a job running in {stage}"), |e| {
                job_in(e, stage).is_some_and(|j| j.status == pb::JobStatus::Running as i32)
            })
            .await;
        job_in(&exec, stage)
            .map(|j| j.job_id.clone())
            .unwrap_or_default()
    }

    /// A one-stage pipeline `name` (stage `build`) whose job marks `ran-COMMIT` in the scratch
    /// dir, then waits until the test opens the gate named after its commit.
    pub fn gated_pipeline(&self, name: &str) -> String {
        let gates = self.scratch.path().display();
        format!(
            r#"
name: {name}
stages:
  - name: build
    actions:
      - name: compile
        run: [ "touch {gates}/ran-$BATON_COMMIT; until [ -f {gates}/gate-$BATON_COMMIT ]; do sleep 0.02; done" ]
"#
        )
    }

    /// Whether the job of execution with `commit` ever started (see [`Self::gated_pipeline`]).
    pub fn ran(&self, commit: &str) -> bool {
        self.scratch.path().join(format!("ran-{commit}")).exists()
    }

    /// A gate file a job can wait on (`until [ -f GATE ]`).
    pub fn gate(&self, name: &str) -> PathBuf {
        self.scratch.path().join(format!("gate-{name}"))
    }

    /// Opens a gate.
    pub fn open_gate(&self, name: &str) {
        std::fs::write(self.gate(name), b"open").expect("open gate");
    }
}

/// Checks that a log written by a counting step (`echo line-1`, `line-2`, … then `last-N`)
/// holds every `line-1` to `line-N` exactly once and in order; returns N.
pub fn assert_counted_lines(text: &str) -> u64 {
    let numbers: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("line-")?.parse().ok())
        .collect();
    let last: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("last-")?.parse().ok())
        .expect("the counting step's last line");
    let expected: Vec<u64> = (1..=last).collect();
    assert!(
        numbers == expected,
        "log has {} numbered lines for 1..={last}; first difference at index {:?}",
        numbers.len(),
        numbers.iter().zip(&expected).position(|(a, b)| a != b)
    );
    last
}

/// The job of `execution` in `stage` (the first one).
pub fn job_in<'a>(exec: &'a pb::PipelineExecution, stage: &str) -> Option<&'a pb::Job> {
    exec.stages.iter().find(|s| s.stage == stage)?.jobs.first()
}

/// Whether the stage of `exec` named `stage` has `status`.
pub fn stage_is(exec: &pb::PipelineExecution, stage: &str, status: pb::StageStatus) -> bool {
    exec.stages
        .iter()
        .any(|s| s.stage == stage && s.status == status as i32)
}

/// Waits until the coordinator at `addr` (`http://HOST:PORT`) says SERVING on gRPC health: its
/// port answers at once, but every other call gets UNAVAILABLE until the store is loaded.
pub async fn wait_serving(addr: &str) {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let channel = tonic::transport::Endpoint::from_shared(addr.to_string())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to coordinator");
    let mut statuses = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health watch")
        .into_inner();
    let serving = tokio::time::timeout(DEADLINE, async {
        while let Ok(Some(status)) = statuses.message().await {
            if status.status == ServingStatus::Serving as i32 {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(serving, Ok(true), "the coordinator never reported SERVING");
}
