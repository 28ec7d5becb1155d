//! A real `baton-coordinator` process for tests that kill it, back it up or time it.
//!
//! The binary is the one Cargo built for this package (`CARGO_BIN_EXE_baton-coordinator`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use baton_proto::v1::{self as pb, pipeline_service_client::PipelineServiceClient};
use tonic::transport::Channel;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_baton-coordinator");

/// How long a coordinator may take to answer after it was started.
pub const READY_DEADLINE: Duration = Duration::from_secs(60);

/// A free port on 127.0.0.1 (bound, then released for the coordinator).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A coordinator process on a fixed port and data dir, which can be killed and started again.
pub struct Coordinator {
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Extra flags.
    pub flags: Vec<String>,
    port: u16,
    child: Option<Child>,
}

impl Coordinator {
    /// A coordinator (not started yet) for `data_dir` on a free port.
    pub fn new(data_dir: &Path, flags: &[&str]) -> Coordinator {
        let port = free_port();
        Coordinator {
            addr: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            port,
            child: None,
        }
    }

    /// Starts the process and waits until it answers gRPC calls.
    pub async fn start(&mut self) {
        let child = Command::new(BIN)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            // Tests run in parallel: no HTTP port (it would be the same default for all).
            .args(["--http-addr", ""])
            .args(&self.flags)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn baton-coordinator");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + READY_DEADLINE;
        loop {
            if let Ok(mut client) = PipelineServiceClient::connect(self.addr.clone()).await
                && client
                    .list_pipelines(pb::ListPipelinesRequest {})
                    .await
                    .is_ok()
            {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("baton-coordinator exited at start: {status}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "baton-coordinator did not answer within {READY_DEADLINE:?}"
            );
            // The process gives no readiness signal other than answering; ask again shortly.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A client.
    pub async fn client(&self) -> PipelineServiceClient<Channel> {
        PipelineServiceClient::connect(self.addr.clone())
            .await
            .expect("connect")
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `baton-coordinator ARGS` to completion.
pub fn run_bin(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run baton-coordinator")
}
