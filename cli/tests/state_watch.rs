//! `baton state PIPELINE --watch` on a real pseudo-terminal: it redraws in place, in colour,
//! as WatchPipeline events arrive, and shows an execution being superseded.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use baton_proto::v1 as pb;
use baton_tests::{DEADLINE, TestCluster, stage_is};

/// Everything the child wrote to the terminal so far, read as it arrives.
struct Screen {
    text: String,
    chunks: mpsc::Receiver<Vec<u8>>,
}

impl Screen {
    /// Reads until `needle` has appeared after byte `from`; returns where it ends.
    fn wait_for(&mut self, needle: &str, from: usize) -> usize {
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            if let Some(at) = self.text[from..].find(needle) {
                return from + at + needle.len();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match tokio::task::block_in_place(|| self.chunks.recv_timeout(left)) {
                Ok(chunk) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => panic!(
                    "the terminal never showed {needle:?}; it shows:\n{}",
                    self.text
                ),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_on_a_terminal_shows_an_execution_superseded() {
    let cluster = TestCluster::start(1).await;
    cluster.apply(&cluster.gated_pipeline("web")).await;
    let first = cluster.start_execution("web", "main", "c1").await;
    cluster.wait_job_running("web", &first, "build").await;
    let second = cluster.start_execution("web", "main", "c2").await;
    cluster
        .wait_until("web", &second, "c2 waiting in front of build", |e| {
            stage_is(e, "build", pb::StageStatus::Waiting)
        })
        .await;

    let size = nix::pty::Winsize {
        ws_row: 40,
        ws_col: 200,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).expect("open a pseudo-terminal");
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .env("BATON_ADDR", &cluster.addr)
        .env_remove("RUST_LOG")
        .args(["state", "web", "--watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(pty.slave.try_clone().expect("dup pty")))
        .stderr(Stdio::from(pty.slave))
        .spawn()
        .expect("run baton state --watch");
    let (tx, chunks) = mpsc::channel();
    let mut master = std::fs::File::from(pty.master);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Ends with EIO once the child is gone and the terminal closes.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = Screen {
        text: String::new(),
        chunks,
    };

    let shown = screen.wait_for("waiting: #2", 0);
    let third = cluster.start_execution("web", "main", "c3").await;
    // Redrawn in place: the screen is cleared, and #3 now waits where #2 did.
    let redrawn = screen.wait_for("superseded by #3", shown);
    let after = &screen.text[shown..redrawn];
    assert!(
        after.contains("\x1b[H\x1b[2J"),
        "redraws in place: {after:?}"
    );
    screen.wait_for("waiting: #3", shown);
    assert!(
        screen.text.contains("\x1b[33m    waiting:"),
        "colours on a terminal: {:?}",
        screen.text
    );

    let _ = child.kill();
    let _ = child.wait();
    cluster.open_gate("c1");
    cluster.open_gate("c3");
    cluster
        .wait_status("web", &third, pb::ExecutionStatus::Succeeded)
        .await;
    cluster.shutdown().await;
}
