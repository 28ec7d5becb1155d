//! A running coordinator keeps its code locked in memory (`lock_code`, on by default), so a
//! host that pages out idle memory cannot make the first request after a quiet spell read the
//! request path back from disk; `--lock-code false` leaves it to the kernel.

mod common;

use common::Coordinator;

/// Locked KiB of the process's executable code mappings that are in memory (`smaps`).
fn locked_code_kib(pid: u32) -> u64 {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
    let exe = exe.to_str().expect("utf-8 path");
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    let mut in_code = false;
    let mut locked = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            let perms = line.split_whitespace().nth(1).unwrap_or("");
            in_code = line.ends_with(exe) && perms.starts_with("r-x");
        } else if in_code && let Some(kib) = line.strip_prefix("Locked:") {
            locked += kib
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .expect("Locked: N kB");
        }
    }
    locked
}

/// True when the process may lock any amount: root (CAP_IPC_LOCK) or an unlimited memlock limit.
fn unlimited(pid: u32) -> bool {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let memlock_unlimited = limits
        .lines()
        .any(|l| l.starts_with("Max locked memory") && l.contains("unlimited"));
    memlock_unlimited || status_field(pid, "Uid").split_whitespace().nth(1) == Some("0")
}

/// A field of `/proc/PID/status` as text.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::to_string)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinators_code_stays_locked_in_memory() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut coordinator = Coordinator::new(data.path(), &[]);
    coordinator.start().await;
    let pid = coordinator.pid().expect("running");
    // VmLck counts each locked mapping whole; of its code, the pages it has run are in memory
    // and locked. Under a memlock limit smaller than the binary (not root, no CAP_IPC_LOCK)
    // only a first part is locked, and the coordinator says so in a warning.
    let locked = baton_resident::locked_kib(pid).expect("VmLck");
    assert!(locked > 0, "nothing locked");
    if unlimited(pid) {
        let exe_size = std::fs::metadata(common::BIN).expect("binary").len() / 1024;
        assert!(
            locked >= exe_size / 2,
            "VmLck {locked} KiB for a {exe_size} KiB binary"
        );
        assert!(
            locked_code_kib(pid) > 0,
            "none of the code run so far is locked"
        );
    }

    coordinator.kill();
    let mut unlocked = Coordinator::new(data.path(), &["--lock-code", "false"]);
    unlocked.start().await;
    let pid = unlocked.pid().expect("running");
    assert_eq!(baton_resident::locked_kib(pid).expect("VmLck"), 0);
    assert_eq!(locked_code_kib(pid), 0);
}
