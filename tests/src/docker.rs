//! The compose cluster for Docker tests: `docker-compose.yml` brought up under a unique project
//! name, driven through the published port, and removed (containers, network, volume) when the
//! guard drops, even when the test fails. Tests run one at a time ([`ComposeCluster::up`] holds
//! a lock) and the first one sweeps anything a crashed earlier run left behind.
//!
//! Gated by `BATON_DOCKER_TESTS=1` (set by `.ci/run` after `deploy/build-images.sh --debug`).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use baton_proto::v1::{self as pb, pipeline_service_client::PipelineServiceClient};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::DEADLINE;

/// Prefix of every project (and so container, network and volume) the tests create.
const PREFIX: &str = "batontest";
static SEQ: AtomicUsize = AtomicUsize::new(0);
static ONE_AT_A_TIME: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

/// True when Docker tests should run; otherwise a test prints why it skipped.
pub fn enabled(test: &str) -> bool {
    let on = std::env::var("BATON_DOCKER_TESTS").is_ok_and(|v| v == "1");
    if !on {
        eprintln!(
            "{test}: skipped (set BATON_DOCKER_TESTS=1 after deploy/build-images.sh --debug)"
        );
    }
    on
}

/// Runs `docker ARGS`; panics with its output when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    checked(&format!("docker {}", args.join(" ")), out)
}

fn checked(what: &str, out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Removes every container, network and volume of a test run that is no longer running: names
/// are `PREFIX<pid>x<n>`, and a run whose process is alive (another `cargo test`) is left alone.
fn sweep() {
    let list = |args: &[&str]| -> Vec<String> {
        Command::new("docker")
            .args(args)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let stale = |name: &str| {
        let pid = name
            .trim_start_matches('/')
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('x').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    let filter = format!("name={PREFIX}");
    for (kind, names) in [
        (
            "container",
            list(&["ps", "-a", "--format", "{{.Names}}", "--filter", &filter]),
        ),
        (
            "network",
            list(&[
                "network",
                "ls",
                "--format",
                "{{.Name}}",
                "--filter",
                &filter,
            ]),
        ),
        (
            "volume",
            list(&["volume", "ls", "--format", "{{.Name}}", "--filter", &filter]),
        ),
    ] {
        for name in names.iter().filter(|n| stale(n)) {
            let rm: &[&str] = match kind {
                "container" => &["rm", "-f", "-v", name],
                "network" => &["network", "rm", name],
                _ => &["volume", "rm", "-f", name],
            };
            let _ = Command::new("docker").args(rm).output();
        }
    }
}

/// A compose project of the repository's `docker-compose.yml`.
pub struct ComposeCluster {
    /// Unique project name.
    pub project: String,
    /// `http://127.0.0.1:PORT` of the coordinator's published port.
    pub addr: String,
    /// The lease the coordinator was given.
    pub lease: Duration,
    env: Vec<(String, String)>,
    _turn: tokio::sync::MutexGuard<'static, bool>,
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

impl ComposeCluster {
    /// Brings the cluster up with a short lease and fast reconnects, and waits for its three
    /// workers to register.
    pub async fn up(lease: Duration) -> ComposeCluster {
        let mut turn = ONE_AT_A_TIME.lock().await;
        if !*turn {
            sweep();
            *turn = true;
        }
        let image = std::env::var("BATON_IMAGE").unwrap_or_else(|_| "baton:local".into());
        let present = Command::new("docker")
            .args(["image", "inspect", &image])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            present,
            "the image {image} is missing: run deploy/build-images.sh --debug first"
        );
        let project = format!(
            "{PREFIX}{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let env = vec![
            ("BATON_PUBLISH".into(), "127.0.0.1:0".into()),
            ("BATON_LEASE".into(), ms(lease)),
            ("BATON_HEARTBEAT_INTERVAL".into(), ms(lease / 6)),
            ("BATON_RECONNECT_BACKOFF".into(), "200ms".into()),
            ("BATON_KEEPALIVE_INTERVAL".into(), ms(lease / 3)),
            ("BATON_KEEPALIVE_TIMEOUT".into(), ms(lease / 3)),
        ];
        let mut cluster = ComposeCluster {
            project,
            addr: String::new(),
            lease,
            env,
            _turn: turn,
        };
        cluster.compose(&["up", "-d", "--no-build"]);
        cluster.refresh_addr();
        cluster.wait_for_workers(3).await;
        cluster
    }

    /// Runs a compose command for this project.
    pub fn compose(&self, args: &[&str]) -> String {
        let file = repo_root().join("docker-compose.yml");
        let file = file.display().to_string();
        let mut base = vec!["-p", &self.project, "-f", &file];
        base.extend_from_slice(args);
        let out = compose_command()
            .args(&base)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run docker compose");
        checked(&format!("compose {}", args.join(" ")), out)
    }

    /// Re-reads the published port (it changes when the coordinator container restarts).
    pub fn refresh_addr(&mut self) {
        let port = self.compose(&["port", "coordinator", "7411"]);
        self.addr = format!("http://{}", port.trim());
    }

    /// The container id of `service`.
    pub fn container(&self, service: &str) -> String {
        self.compose(&["ps", "-q", service])
    }

    /// The project's private network.
    pub fn network(&self) -> String {
        format!("{}_baton", self.project)
    }

    /// A client of the pipeline API.
    pub async fn client(&self) -> PipelineServiceClient<Channel> {
        PipelineServiceClient::connect(self.addr.clone())
            .await
            .expect("connect to the compose coordinator")
    }

    /// Connected workers by name, from ListWorkers (empty when the coordinator is unreachable).
    pub async fn connected(&self) -> Vec<String> {
        let Ok(mut client) = PipelineServiceClient::connect(self.addr.clone()).await else {
            return Vec::new();
        };
        let workers = client.list_workers(pb::ListWorkersRequest {}).await;
        workers
            .map(|r| r.into_inner().workers)
            .unwrap_or_default()
            .into_iter()
            .filter(|w| w.state == pb::WorkerState::Connected as i32)
            .map(|w| w.name)
            .collect()
    }

    /// Waits until at least `n` workers are connected. There is no worker-watch stream, so
    /// this asks again every 100 ms until the deadline.
    pub async fn wait_for_workers(&self, n: usize) {
        self.wait_for(&format!("{n} workers"), || async {
            self.connected().await.len() >= n
        })
        .await;
    }

    /// Asks `check` every 100 ms until it holds or the deadline passes (for Docker's own state,
    /// which has no event stream we can use).
    pub async fn wait_for<F, Fut>(&self, what: &str, check: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !check().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Applies a pipeline file's text.
    pub async fn apply(&self, yaml: &str) {
        self.client()
            .await
            .put_pipeline(pb::PutPipelineRequest {
                definition_yaml: yaml.to_string(),
                source_name: "docker-test.yaml".into(),
            })
            .await
            .expect("put pipeline");
    }

    /// Starts an execution; returns its id.
    pub async fn start(&self, pipeline: &str, commit: &str) -> String {
        self.client()
            .await
            .start_pipeline_execution(pb::StartPipelineExecutionRequest {
                pipeline: pipeline.into(),
                revision: Some(pb::SourceRevision {
                    branch: "main".into(),
                    commit: commit.into(),
                    message: String::new(),
                    trigger: "docker-test".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("start execution")
            .into_inner()
            .execution_id
    }

    /// One execution.
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

    /// Waits on WatchPipeline until `check` holds for execution `id`.
    pub async fn wait_until(
        &self,
        pipeline: &str,
        id: &str,
        what: &str,
        check: impl Fn(&pb::PipelineExecution) -> bool,
    ) -> pb::PipelineExecution {
        let wait = async {
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
                "timed out waiting for {what}: {:#?}",
                self.execution(id).await
            ),
        }
    }
}

impl Drop for ComposeCluster {
    fn drop(&mut self) {
        let file = repo_root().join("docker-compose.yml").display().to_string();
        let _ = compose_command()
            .args([
                "-p",
                &self.project,
                "-f",
                &file,
                "down",
                "-v",
                "--remove-orphans",
                "-t",
                "1",
            ])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output();
        // Whatever `down` missed (a container detached from the project by a failed test).
        let filter = format!("name={}", self.project);
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("docker").args(["rm", "-f", "-v", id]).output();
            }
        }
    }
}

/// `docker compose` (v2 plugin) when present, else `docker-compose` (v1).
fn compose_command() -> Command {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if v2 {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new("docker-compose")
    }
}
