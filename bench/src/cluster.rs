//! A real coordinator process and real worker processes on loopback, started from the binaries
//! that sit next to `baton-bench` (build them together: `cargo build --release -p baton-bench
//! -p baton-coordinator -p baton-worker`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use baton_proto::v1::{self as pb, pipeline_service_client::PipelineServiceClient};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::transport::{Channel, Endpoint};

/// How long the cluster may take to come up before the bench gives up.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// A coordinator with its workers; every process is stopped when this is dropped.
pub struct Cluster {
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// Scratch space: the store, worker dirs, job marks, process logs.
    pub dir: tempfile::TempDir,
    bin_dir: PathBuf,
    coordinator: Child,
    workers: Vec<Child>,
    /// One HTTP/2 connection every client shares, as a long-lived client would (a new
    /// connection per call would put TCP and HTTP/2 set-up into every figure).
    channel: tokio::sync::OnceCell<Channel>,
    /// Extra flags for every worker started from now on.
    worker_args: Vec<String>,
}

/// Where the coordinator and worker binaries are: the directory named by `BATON_BENCH_BIN_DIR`
/// (to measure another build of them, e.g. `bench/pgo.sh`'s) or, by default, next to this one.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let (dir, hint) = match std::env::var_os("BATON_BENCH_BIN_DIR") {
        Some(dir) => (
            PathBuf::from(dir),
            "BATON_BENCH_BIN_DIR names that directory; bench/pgo.sh fills target/pgo/bin",
        ),
        None => {
            let exe =
                std::env::current_exe().context("cannot find the baton-bench binary's path")?;
            let dir = exe
                .parent()
                .context("the baton-bench binary has no parent directory")?
                .to_path_buf();
            (
                dir,
                "looked next to baton-bench; build them together: cargo build --release \
                 -p baton-bench -p baton-coordinator -p baton-worker",
            )
        }
    };
    for bin in ["baton-coordinator", "baton-worker"] {
        if !dir.join(bin).exists() {
            bail!("{} not found ({hint})", dir.join(bin).display());
        }
    }
    // As `/proc/PID/exe` names the processes started from it (see `page_out`).
    Ok(dir.canonicalize().unwrap_or(dir))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<Stdio> {
    let file = std::fs::File::create(dir.join(format!("{name}.log")))
        .with_context(|| format!("cannot create the log file for {name}"))?;
    Ok(Stdio::from(file))
}

/// The `RUST_LOG` filter of the coordinator and workers: `BATON_BENCH_LOG`, else `warn`
/// (with `BATON_BENCH_KEEP` set, their logs stay in the kept temp dir for profiling).
fn log_filter() -> String {
    std::env::var("BATON_BENCH_LOG").unwrap_or_else(|_| "warn".to_string())
}

/// True when the worker whose work dir is `dir` has the next job's directory made.
fn at_rest(dir: &std::path::Path) -> bool {
    let named = |dir: &std::path::Path, prefix: &str| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.strip_prefix(prefix)
                    .is_some_and(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
                    && (prefix != ".standby-" || e.path().join("work").is_dir())
            })
        })
    };
    named(&dir.join(".baton-jobs"), ".standby-") || named(dir, ".baton-spare-")
}

impl Cluster {
    /// Pages out the file-backed memory of the cluster's processes (`--page-out`, see
    /// `page_out.rs`).
    pub fn page_out(&self) -> anyhow::Result<u64> {
        let pids = crate::page_out::cluster_pids(&self.bin_dir, self.dir.path());
        crate::page_out::drop_job_shells();
        crate::page_out::page_out(&pids).context(
            "--page-out: process_madvise(MADV_PAGEOUT) was refused; it needs CAP_SYS_NICE (run as root)",
        )
    }

    /// Starts a coordinator (durable sled store in a temp dir) and waits until it answers.
    pub async fn start() -> anyhow::Result<Cluster> {
        let bin_dir = bin_dir()?;
        let keep = std::env::var_os("BATON_BENCH_KEEP").is_some();
        let dir = tempfile::Builder::new()
            .prefix("baton-bench")
            .disable_cleanup(keep)
            .tempdir()
            .context("cannot create a temp dir")?;
        if keep {
            eprintln!("keeping {} (BATON_BENCH_KEEP)", dir.path().display());
        }
        let port = free_port()?;
        let coordinator = Command::new(bin_dir.join("baton-coordinator"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path().join("store"))
            .args([
                "--lease",
                "15s",
                "--heartbeat-interval",
                "5s",
                "--http-addr",
                "",
                // The fleet scenario defines 10,000 pipelines, above the default limit.
                "--max-pipelines",
                "1000000",
            ])
            .env("RUST_LOG", log_filter())
            .stdout(log_file(dir.path(), "coordinator")?)
            .stderr(log_file(dir.path(), "coordinator.err")?)
            .spawn()
            .context("cannot start baton-coordinator")?;
        let cluster = Cluster {
            addr: format!("http://127.0.0.1:{port}"),
            dir,
            bin_dir,
            coordinator,
            workers: Vec::new(),
            channel: tokio::sync::OnceCell::new(),
            worker_args: Vec::new(),
        };
        let started = Instant::now();
        loop {
            if let Ok(mut client) = cluster.client().await
                && client
                    .list_pipelines(pb::ListPipelinesRequest {})
                    .await
                    .is_ok()
            {
                return Ok(cluster);
            }
            if started.elapsed() > STARTUP_DEADLINE {
                bail!(
                    "the coordinator did not answer within {STARTUP_DEADLINE:?}; see {}",
                    cluster.dir.path().join("coordinator.err.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The coordinator's process id (for CPU and memory readings).
    pub fn coordinator_pid(&self) -> u32 {
        self.coordinator.id()
    }

    /// Workers started from now on get `args` as extra flags.
    pub fn worker_args(&mut self, args: &[&str]) {
        self.worker_args = args.iter().map(|a| a.to_string()).collect();
    }

    /// A client on the cluster's shared connection (made on first use).
    pub async fn client(&self) -> anyhow::Result<PipelineServiceClient<Channel>> {
        Ok(PipelineServiceClient::new(self.channel().await?)
            .max_decoding_message_size(64 * 1024 * 1024))
    }

    /// The cluster's shared connection (made on first use).
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(self
            .channel
            .get_or_try_init(|| async {
                Endpoint::from_shared(self.addr.clone())?
                    .connect_timeout(Duration::from_secs(5))
                    .connect()
                    .await
                    .map_err(anyhow::Error::from)
            })
            .await?
            .clone())
    }

    /// Starts a `baton-worker` process and waits until the coordinator lists it as connected.
    pub async fn add_worker(
        &mut self,
        name: &str,
        labels: &BTreeMap<&str, &str>,
        slots: u32,
    ) -> anyhow::Result<()> {
        let mut cmd = Command::new(self.bin_dir.join("baton-worker"));
        cmd.args(["--coordinator", &self.addr, "--name", name])
            .args(&self.worker_args)
            .args(["--slots", &slots.to_string()])
            .arg("--work-dir")
            .arg(self.dir.path().join("work").join(name))
            .env("RUST_LOG", log_filter())
            .stdout(log_file(self.dir.path(), name)?)
            .stderr(log_file(self.dir.path(), &format!("{name}.err"))?);
        for (k, v) in labels {
            cmd.args(["--label", &format!("{k}={v}")]);
        }
        let child = cmd.spawn().context("cannot start baton-worker")?;
        self.workers.push(child);
        self.wait_worker(name).await
    }

    /// Waits, at most `limit`, until every worker started here is at rest between jobs: its
    /// standby supervisor has made the next job's directory (`.baton-jobs/.standby-<pid>/work`),
    /// or, with jobs in the worker, the next job's own directory is made
    /// (`.baton-spare-<pid>`). A worker that just ended a job is still starting those. True
    /// when they all are; false at the limit (the first job of a worker in the worker finds
    /// no spare yet).
    pub async fn workers_at_rest(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let work = self.dir.path().join("work");
            let all = std::fs::read_dir(&work)
                .map(|dirs| dirs.filter_map(Result::ok).all(|d| at_rest(&d.path())))
                .unwrap_or(true);
            if all {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits until the coordinator lists worker `name` as connected.
    pub async fn wait_worker(&self, name: &str) -> anyhow::Result<()> {
        let mut client = self.client().await?;
        let started = Instant::now();
        loop {
            let workers = client
                .list_workers(pb::ListWorkersRequest {})
                .await?
                .into_inner()
                .workers;
            if workers
                .iter()
                .any(|w| w.name == name && w.state == pb::WorkerState::Connected as i32)
            {
                return Ok(());
            }
            if started.elapsed() > STARTUP_DEADLINE {
                bail!("worker {name} did not connect within {STARTUP_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Puts a pipeline from YAML text; the error says why the coordinator refused it.
    pub async fn put_pipeline(&self, yaml: &str) -> anyhow::Result<()> {
        self.client()
            .await?
            .put_pipeline(pb::PutPipelineRequest {
                definition_yaml: yaml.to_string(),
                source_name: "bench".to_string(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        Ok(())
    }
}

/// How long a process of the cluster gets to exit after SIGTERM before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

impl Drop for Cluster {
    /// Asks every worker, then the coordinator, to exit (SIGTERM: an idle worker drains at
    /// once, the coordinator closes its store), and kills what is still there after
    /// [`EXIT_GRACE`]. A process that exits on its own runs its exit handlers, so binaries
    /// built to record a profile (`bench/pgo.sh`) write it.
    fn drop(&mut self) {
        let workers = self.workers.iter_mut().collect::<Vec<_>>();
        stop_gracefully(workers);
        stop_gracefully(vec![&mut self.coordinator]);
    }
}

/// SIGTERM to each child, then waits for all of them, killing those still running at the
/// deadline.
fn stop_gracefully(children: Vec<&mut Child>) {
    for child in &children {
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + EXIT_GRACE;
    for child in children {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                // No way to wait on a child with a deadline in std; exit is quick.
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// CPU time (user + system) and memory of a process, read from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// CPU seconds used so far.
    pub cpu_seconds: f64,
    /// Resident set size now, in MiB.
    pub rss_mib: f64,
    /// Peak resident set size, in MiB.
    pub peak_rss_mib: f64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status`.
pub fn proc_stats(pid: u32) -> anyhow::Result<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: f64 = fields
        .get(11..13)
        .context("short /proc stat")?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(ProcStats {
        cpu_seconds: ticks / hz,
        rss_mib: kib("VmRSS:") / 1024.0,
        peak_rss_mib: kib("VmHWM:") / 1024.0,
    })
}
