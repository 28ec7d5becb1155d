//! Real `baton-worker` processes for fleet tests: spawned from the binary cargo builds, killed
//! with real signals, and waited on through `ListWorkers`.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use baton_proto::v1 as pb;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{DEADLINE, TestCluster};

/// Leases short enough for tests: heartbeat 100 ms, lease 800 ms, lost margin 600 ms.
pub fn short_leases(config: &mut baton_coordinator::CoordinatorConfig) {
    config.heartbeat_interval = Duration::from_millis(100);
    config.lease = Duration::from_millis(800);
    config.lost_margin = Duration::from_millis(600);
}

/// The `baton-worker` binary of this build profile, built once per test process.
pub fn worker_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| workspace_binary("baton-worker", "baton-worker"))
}

/// Binary `bin` of workspace package `package`, in this build profile.
///
/// A test crate cannot name another crate's binary (`CARGO_BIN_EXE_*` exists only in the
/// binary's own crate), so this asks cargo to build it (a no-op when it is up to date) and
/// finds it next to the test executable: `target/<profile>/deps/<test>` →
/// `target/<profile>/<bin>`.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "--quiet", "-p", package, "--bin", bin]);
    // The variables cargo sets for the test crate itself would leak into build scripts
    // that watch them (ring watches CARGO_PKG_*) and rebuild half the tree on every test
    // run, and again for the next `cargo test`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&name.as_ref())
        {
            build.env_remove(name.as_ref());
        }
    }
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .unwrap_or_else(|e| panic!("run cargo build for {bin}: {e}"));
    assert!(status.success(), "cargo build of {bin} failed");
    let binary = profile_dir.join(bin);
    assert!(binary.exists(), "no {bin} at {}", binary.display());
    binary
}

/// A `baton-worker` process connected to a test cluster. Killed when dropped.
pub struct WorkerProcess {
    /// Its worker name.
    pub name: String,
    /// Where its stdout and stderr go (for a failing test's post-mortem).
    pub log: PathBuf,
    child: tokio::process::Child,
}

impl WorkerProcess {
    /// Starts `baton-worker --name NAME --label K=V ... --slots 1` against `cluster`.
    pub fn spawn(cluster: &TestCluster, name: &str, labels: &[(&str, &str)]) -> WorkerProcess {
        let dir = cluster.scratch.path().join("procs").join(name);
        std::fs::create_dir_all(&dir).expect("worker dir");
        let log = dir.join("worker.log");
        let out = std::fs::File::create(&log).expect("worker log");
        let err = out.try_clone().expect("worker log");
        let mut cmd = tokio::process::Command::new(worker_binary());
        cmd.arg("--coordinator")
            .arg(&cluster.addr)
            .args(["--name", name, "--slots", "1", "--work-dir"])
            .arg(dir.join("work"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        for (k, v) in labels {
            cmd.arg("--label").arg(format!("{k}={v}"));
        }
        let child = cmd.spawn().expect("spawn baton-worker");
        WorkerProcess {
            name: name.to_string(),
            log,
            child,
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("worker still running") as i32;
        kill(Pid::from_raw(pid), signal).expect("signal the worker");
    }

    /// SIGKILL: the worker dies without a word; its jobs' process groups live on until the
    /// test ends (they are orphans now, as on a crashed machine).
    pub fn kill(&self) {
        self.signal(Signal::SIGKILL);
    }

    /// SIGTERM: the worker drains (a second one abandons).
    pub fn terminate(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> ExitStatus {
        tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("worker exits in time")
            .expect("wait for worker")
    }

    /// What it logged so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl TestCluster {
    /// Waits until `ListWorkers` shows worker `name` in `state`; returns it.
    pub async fn wait_worker(&self, name: &str, state: pb::WorkerState) -> pb::WorkerInfo {
        let mut client = self.client().await;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        // There is no worker-watch stream; ask again on a short interval until the deadline.
        loop {
            let found = client
                .list_workers(pb::ListWorkersRequest {})
                .await
                .ok()
                .and_then(|r| {
                    r.into_inner()
                        .workers
                        .into_iter()
                        .find(|w| w.name == name && w.state == state as i32)
                });
            if let Some(w) = found {
                return w;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "worker {name} never became {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Taking workers away, for tests of what the coordinator does when they do not come back.
impl TestCluster {
    /// Abandons and stops every worker (their jobs are killed) and waits until they are gone.
    /// Stop the coordinator first for workers that vanish without a word.
    pub async fn stop_workers(&mut self) {
        for (shutdown, _) in &self.workers {
            shutdown.abandon.cancel();
            shutdown.drain.cancel();
        }
        for (_, handle) in self.workers.drain(..) {
            let _ = tokio::time::timeout(DEADLINE, handle).await;
        }
    }
}
